"""`kiln promote|pause|resume|abort` and the `kiln canary` view (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kiln.api.model_deployment import AnalysisResult, ModelDeploymentStatus
from kiln.cli import rollout
from kiln.cli.main import build_parser

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("command", "status", "keys"),
    [
        ("pause", {}, {"kiln.dev/paused": "true"}),
        ("resume", {"phase": "Paused"}, {"kiln.dev/paused": None}),
        ("promote", {}, {"kiln.dev/promote": ...}),
        ("abort", {}, {"kiln.dev/abort": ...}),
        (
            "resume",
            {"phase": "RolledBack", "failedVersion": "iris-v2"},
            {"kiln.dev/paused": None, "kiln.dev/retry": ...},
        ),
    ],
)
def test_annotations_for(command: str, status: dict[str, str], keys: dict[str, object]) -> None:
    changes = rollout.annotations_for(command, status)
    assert set(changes) == set(keys)
    for key, value in keys.items():
        if value is ...:
            assert str(changes[key]).endswith("Z")
        else:
            assert changes[key] == value


def test_subcommands_are_registered() -> None:
    args = build_parser().parse_args(["promote", "iris", "-n", "prod"])
    assert (args.command, args.name, args.namespace) == ("promote", "iris", "prod")
    args = build_parser().parse_args(["canary", "iris", "--watch", "--until-done"])
    assert args.watch and args.until_done


def test_render_shows_weights_and_analysis_with_thresholds() -> None:
    status = ModelDeploymentStatus(
        phase="Progressing",
        stable_version="iris-v1",
        canary_version="iris-v2",
        canary_weight=50,
        step_weight=40,
        current_step=1,
        stable_replicas=2,
        canary_replicas=2,
        analysis=[
            AnalysisResult(
                check="error-rate",
                step=0,
                outcome="Successful",
                value=0.001,
                max=0.01,
                requests=120,
                time=datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC),
            )
        ],
    )
    view = rollout.render("iris", status, [10, 40, 80])
    assert "ModelDeployment iris: Progressing" in view
    assert "step 2/3  weight 50% (asked 40%)" in view
    assert "12:00:05 step 0 error-rate=0.001 [-inf, 0.01] Successful requests=120" in view
