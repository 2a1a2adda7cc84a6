"""`kiln monitor MD`: the monitoring view rendered from spec and status dicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kiln.cli import monitor
from kiln.cli.main import build_parser

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 10, tzinfo=UTC)

SPEC: dict[str, Any] = {
    "model": "iris",
    "followLatestApproved": True,
    "monitoring": {
        "windowSeconds": 300,
        "intervalSeconds": 60,
        "drift": {"psiThreshold": 0.2, "minSamples": 100},
        "quality": {"metric": "accuracy", "maxDrop": 0.05, "minLabelled": 50},
        "capture": {"destination": "s3://kiln-capture/iris", "sampleRate": 0.5},
    },
}


def evaluated_status(**monitoring: Any) -> dict[str, Any]:
    return {
        "stableVersion": "iris-v3",
        "phase": "Promoted",
        "monitoring": {
            "lastEvaluatedTime": "2026-03-01T12:09:18Z",
            "drift": {
                "version": "iris-v3",
                "window": "300s",
                "samples": 1200,
                "driftingFeatures": ["petal_length"],
                "features": [
                    {"feature": "petal_length", "psi": 1.2345, "samples": 1200, "drifting": True},
                    {"feature": "sepal_width", "psi": 0.0123, "samples": 1200},
                    {"feature": "colour", "psi": 0.05, "samples": 40},
                    {"feature": "empty", "samples": 0},
                ],
            },
            "quality": {
                "version": "iris-v3",
                "metric": "accuracy",
                "live": 0.71,
                "training": 0.95,
                "bound": 0.9,
                "labelled": 250,
                "captured": 1200,
                "labelDelaySeconds": 250,
            },
            "capture": {
                "state": "Degraded",
                "destination": "s3://kiln-capture/iris",
                "written": 1100,
                "dropped": 100,
            },
            **monitoring,
        },
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Serving"},
            {
                "type": "Drifting",
                "status": "True",
                "reason": "FeaturesDrifting",
                "message": "petal_length PSI 1.23 > 0.2 over 300s (1200 rows)",
                "lastTransitionTime": "2026-03-01T12:00:00Z",
            },
            {
                "type": "QualityDegraded",
                "status": "True",
                "reason": "BelowTraining",
                "message": "accuracy 0.71 < 0.9 (training 0.95, 250 labelled)",
            },
        ],
    }


def lines_with(view: str, text: str) -> list[str]:
    return [line for line in view.splitlines() if text in line]


def test_the_full_view() -> None:
    view = monitor.render("iris", SPEC, evaluated_status(), now=NOW)
    assert view.splitlines()[0] == "ModelDeployment iris: serving iris-v3"
    assert "window 300s, evaluated every 60s" in view
    assert "last evaluated 2026-03-01T12:09:18Z (42s ago)" in view
    # Conditions with reason and message.
    (drifting,) = lines_with(view, "FeaturesDrifting")
    assert drifting.split()[:3] == ["Drifting", "True", "FeaturesDrifting"]
    assert (
        "petal_length PSI 1.23 > 0.2" in drifting
        and "(since 2026-03-01T12:00:00Z, 10m00s ago)" in drifting
    )
    (degraded,) = lines_with(view, "BelowTraining")
    assert degraded.split()[:2] == ["QualityDegraded", "True"]
    # Drift per feature: PSI, samples, marker, the threshold.
    assert "drift of iris-v3 over 300s (1200 rows, threshold PSI 0.2):" in view
    (petal,) = lines_with(view, "petal_length  ")
    assert petal.split() == ["petal_length", "1.234", "1200", "DRIFTING"]
    (sepal,) = lines_with(view, "sepal_width")
    assert sepal.split() == ["sepal_width", "0.0123", "1200"]
    (colour,) = lines_with(view, "colour")
    assert colour.split()[:3] == ["colour", "0.05", "40"] and "not enough data (< 100)" in colour
    (empty,) = lines_with(view, "empty")
    assert empty.split() == ["empty", "-", "0", "no", "data"]
    assert "drifting: petal_length" in view
    # Live quality against training.
    assert "live quality of iris-v3:" in view
    (header,) = lines_with(view, "LABEL DELAY")
    assert header.split()[:5] == ["METRIC", "LIVE", "TRAINING", "BOUND", "LABELLED"]
    (accuracy,) = lines_with(view, "accuracy  ")
    assert accuracy.split() == [
        "accuracy",
        "0.71",
        "0.95",
        "0.9",
        "250",
        "1200",
        "4m10s",
        "DEGRADED",
    ]
    # Capture.
    assert (
        "capture: Degraded to s3://kiln-capture/iris (sample rate 0.5); in the window 1100 "
        "written, 100 dropped"
    ) in view


def test_not_configured() -> None:
    view = monitor.render("iris", {"model": "iris"}, {"stableVersion": "iris-v1"})
    assert view.splitlines() == [
        "ModelDeployment iris: serving iris-v1",
        "  monitoring is not configured: set spec.monitoring (drift, quality, capture; see "
        "docs/monitoring.md)",
    ]


def test_configured_but_not_evaluated_yet() -> None:
    view = monitor.render("iris", SPEC, {"stableVersion": "iris-v1"})
    assert "not evaluated yet" in view
    assert "Drifting" in view and "not set yet" in view
    waiting = {"stableVersion": "iris-v1", "monitoring": {"message": "no baseline for iris-v1"}}
    view = monitor.render("iris", SPEC, waiting)
    assert "not evaluated yet" in view and "no baseline for iris-v1" in view


def test_canary_in_progress_is_shown_beside_the_served_version() -> None:
    status = evaluated_status()
    status |= {"canaryVersion": "iris-v4", "canaryWeight": 25}
    first = monitor.render("iris", SPEC, status).splitlines()[0]
    assert first == "ModelDeployment iris: serving iris-v3 (canary iris-v4 at 25%)"


def test_quality_markers_follow_the_metric_direction() -> None:
    rmse = {"metric": "rmse", "live": 1.5, "training": 1.0, "bound": 1.2, "labelled": 80}
    view = monitor.render("m", SPEC, evaluated_status(quality=rmse))
    assert lines_with(view, "rmse  ")[0].split()[-1] == "DEGRADED"
    good = rmse | {"live": 1.1}
    view = monitor.render("m", SPEC, evaluated_status(quality=good))
    assert "DEGRADED" not in lines_with(view, "rmse  ")[0]
    few = rmse | {"labelled": 10}
    view = monitor.render("m", SPEC, evaluated_status(quality=few))
    assert "not enough labels (< 50)" in view
    none = {"metric": "accuracy", "labelled": 0}
    view = monitor.render("m", SPEC, evaluated_status(quality=none))
    assert lines_with(view, "accuracy  ")[0].split()[-2:] == ["no", "data"]


def test_parts_switched_off_or_not_measured() -> None:
    spec = {
        "model": "iris",
        "monitoring": {"drift": {"enabled": False}, "quality": {"enabled": True}},
    }
    status = {
        "stableVersion": "iris-v1",
        "monitoring": {"lastEvaluatedTime": "2026-03-01T12:00:00Z", "message": "all quiet"},
    }
    view = monitor.render("iris", spec, status)
    assert "drift: off (spec.monitoring.drift.enabled: false)" in view
    assert "live quality: not measured (needs spec.monitoring.capture)" in view
    assert "capture: off" in view
    assert view.splitlines()[-1] == "  all quiet"
    assert "(" not in lines_with(view, "last evaluated")[0]  # no `now`: no age


def test_an_invalid_monitoring_spec_is_said_not_hidden() -> None:
    view = monitor.render("iris", {"monitoring": {"windowSeconds": 1}}, {})
    assert "spec.monitoring is not valid" in view


def test_status_written_before_the_spec_lost_monitoring_still_shows() -> None:
    view = monitor.render("iris", {"model": "iris"}, evaluated_status())
    assert "drift of iris-v3 over 300s (1200 rows):" in view
    assert "capture: Degraded to s3://kiln-capture/iris; in the window" in view


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (59.4, "59s"), (61, "1m01s"), (3600, "1h00m"), (3 * 86400 + 7200, "3d02h")],
)
def test_durations(seconds: float, text: str) -> None:
    assert monitor._duration(seconds) == text


def test_the_subcommand_is_registered() -> None:
    args = build_parser().parse_args(["monitor", "iris", "-n", "prod", "--watch"])
    assert (args.name, args.namespace, args.watch, args.func) == (
        "iris",
        "prod",
        True,
        monitor._monitor,
    )


def test_the_command_reads_the_object_and_prints_the_view(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Api:
        def get_namespaced_custom_object(self, *args: str) -> dict[str, Any]:
            assert args == ("kiln.dev", "v1alpha1", "prod", "modeldeployments", "iris")
            return {"spec": SPEC, "status": evaluated_status()}

    monkeypatch.setattr(monitor, "_api", lambda kubeconfig: Api())
    args = build_parser().parse_args(["monitor", "iris", "-n", "prod"])
    assert args.func(args) == 0
    assert "DRIFTING" in capsys.readouterr().out


def test_capture_counts_extrapolated_by_prometheus_show_as_whole_records() -> None:
    status = evaluated_status()
    status["monitoring"]["capture"].update(written=729.014, dropped=0.4)
    view = monitor.render("iris", SPEC, status, now=NOW)
    assert "in the window 729 written, 0 dropped" in view
