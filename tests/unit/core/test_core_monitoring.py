from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.support.builders import ModelVersionBuilder

from kiln.api.model_version import ModelVersion
from kiln.api.monitoring import CaptureSpec, MonitoringSpec, MonitoringStatus, QualitySpec
from kiln.contract.monitoring import Baseline, Distribution, FeatureProfile
from kiln.core import monitoring as mon
from kiln.core import quality as ql
from kiln.core.canary import TrackObservation
from kiln.core.conditions import find

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, tzinfo=UTC)
UNIFORM = [0.25, 0.25, 0.25, 0.25]
BASELINE = Baseline(
    rows=1000,
    features=[
        FeatureProfile(name=n, kind="numeric",
                       distribution=Distribution(edges=[1, 2, 3], shares=UNIFORM, count=1000))
        for n in ("sepal_length", "petal_length")
    ],
)  # fmt: skip
CAPTURE = CaptureSpec(destination="s3://capture/iris")


def spec(**kw: object) -> MonitoringSpec:
    return MonitoringSpec.model_validate({"capture": CAPTURE.model_dump(), **kw})


def facts(**kw: object) -> mon.VersionFacts:
    base: dict[str, object] = {"name": "iris-v1", "metrics": {"accuracy": 0.96},
                               "classes": ["a", "b"], "baseline": BASELINE}  # fmt: skip
    return mon.VersionFacts(**{**base, **kw})  # type: ignore[arg-type]


def bins(**per_feature: dict[str, float]) -> mon.BinCounts:
    return mon.BinCounts("ok", per_feature)


def even(n: int) -> dict[str, float]:
    return {str(i): n / 4 for i in range(4)}


def joined(right: int, wrong: int) -> mon.JoinResult:
    pairs = [ql.Pair("a", "a", 5.0)] * right + [ql.Pair("a", "b", 7.0)] * wrong
    return mon.JoinResult(ql.Joined(pairs=pairs, captured=right + wrong + 10, labels=right + wrong))


def run(obs: mon.Observation, s: MonitoringSpec | None = None, conditions=()):  # type: ignore[no-untyped-def]
    return mon.evaluate(s or spec(), obs, list(conditions), T0, 3)


def status_of(result: mon.Evaluation, type_: str) -> tuple[str, str, str]:
    c = find(result.conditions, type_)
    assert c is not None
    return c.status, c.reason, c.message


def test_shifted_feature_drifts_and_is_named() -> None:
    obs = mon.Observation(
        facts(),
        bins(sepal_length=even(400), petal_length={"3": 400}),
        join=joined(100, 0),
    )
    result = run(obs)
    status, reason, message = status_of(result, "Drifting")
    assert (status, reason) == ("True", "DriftDetected")
    assert "petal_length PSI" in message and "sepal_length" not in message
    assert "300s" in message and "400 rows" in message
    drift = result.monitoring.drift
    assert drift is not None and drift.drifting_features == ["petal_length"]
    assert drift.version == "iris-v1" and drift.window == "300s" and drift.samples == 400
    assert result.monitoring.last_evaluated_time == T0
    assert find(result.conditions, "Drifting").observed_generation == 3  # type: ignore[union-attr]


def test_baseline_traffic_does_not_drift() -> None:
    result = run(mon.Observation(facts(), bins(sepal_length=even(400), petal_length=even(400))))
    status, reason, message = status_of(result, "Drifting")
    assert (status, reason) == ("False", "NoDrift")
    assert "highest PSI" in message and "2 of 2 features" in message


def test_too_few_samples_is_not_enough_data_never_no_drift() -> None:
    result = run(mon.Observation(facts(), bins(sepal_length={"3": 10}, petal_length={"3": 10})))
    assert status_of(result, "Drifting")[:2] == ("Unknown", "NotEnoughData")
    result = run(mon.Observation(facts(), mon.BinCounts("no_data", {}, "empty")))
    assert status_of(result, "Drifting")[:2] == ("Unknown", "NotEnoughData")


def test_prometheus_unreachable_or_refusing_is_unknown() -> None:
    result = run(mon.Observation(facts(), mon.BinCounts("unreachable", {}, "refused")))
    status, reason, message = status_of(result, "Drifting")
    assert (status, reason) == ("Unknown", "PrometheusUnavailable") and "refused" in message
    result = run(mon.Observation(facts(), mon.BinCounts("error", {}, "bad query")))
    assert status_of(result, "Drifting")[:2] == ("Unknown", "QueryFailed")
    result = run(mon.Observation(facts(), None))
    assert status_of(result, "Drifting")[:2] == ("Unknown", "PrometheusUnavailable")


def test_no_baseline() -> None:
    result = run(mon.Observation(facts(baseline=None)))
    assert status_of(result, "Drifting")[:2] == ("Unknown", "NoBaseline")
    problem = ("BaselineUnavailable", "sha256 mismatch")
    result = run(mon.Observation(facts(baseline=None, baseline_problem=problem)))
    assert status_of(result, "Drifting") == ("Unknown", *problem)


def test_disabled_checks_remove_their_conditions() -> None:
    s = spec(drift={"enabled": False}, quality={"enabled": False})
    before = run(mon.Observation(facts(), bins())).conditions
    result = mon.evaluate(s, mon.Observation(facts()), before, T0)
    assert find(result.conditions, "Drifting") is None
    assert find(result.conditions, "QualityDegraded") is None
    assert result.monitoring.drift is None and result.monitoring.quality is None
    assert mon.cleared(before) == []


def test_contradicting_labels_degrade_quality_with_numbers() -> None:
    result = run(mon.Observation(facts(), bins(), join=joined(10, 90)))
    status, reason, message = status_of(result, "QualityDegraded")
    assert (status, reason) == ("True", "BelowBound")
    assert "accuracy 0.1 live vs 0.96 training (bound 0.91)" in message
    assert "100 labelled of 110 captured" in message
    q = result.monitoring.quality
    assert q is not None
    assert (q.metric, q.live, q.training, q.bound, q.labelled, q.captured) == (
        "accuracy", 0.1, 0.96, 0.91, 100, 110)  # fmt: skip
    assert q.label_delay_seconds == 7.0
    assert result.live["accuracy"] == 0.1 and "f1_macro" in result.live


def test_good_labels_are_within_bound() -> None:
    result = run(mon.Observation(facts(), bins(), join=joined(99, 1)))
    assert status_of(result, "QualityDegraded")[:2] == ("False", "WithinBound")


def test_few_labels_are_not_enough_data() -> None:
    result = run(mon.Observation(facts(), bins(), join=joined(3, 3)))
    status, reason, message = status_of(result, "QualityDegraded")
    assert (status, reason) == ("Unknown", "NotEnoughData") and "6 labelled" in message


def test_capped_reads_are_said() -> None:
    join = joined(10, 90)
    capped = mon.JoinResult(join.joined, records_read=200_000, capped=True)
    assert "capped" in status_of(run(mon.Observation(facts(), join=capped)), "QualityDegraded")[2]


def test_quality_unknowns() -> None:
    no_capture = MonitoringSpec()
    assert status_of(run(mon.Observation(facts()), no_capture), "QualityDegraded")[1] == (
        "CaptureOff"
    )
    unreadable = mon.JoinResult(error="s3 down")
    status, reason, message = status_of(run(mon.Observation(facts(), join=unreadable)),
                                        "QualityDegraded")  # fmt: skip
    assert (status, reason) == ("Unknown", "CaptureUnavailable") and "s3 down" in message
    no_metric = facts(metrics={})
    assert status_of(run(mon.Observation(no_metric, join=joined(99, 1))), "QualityDegraded")[1] == (
        "NoTrainingMetric"
    )
    roc = spec(quality={"metric": "roc_auc"})
    assert status_of(run(mon.Observation(facts(), join=joined(99, 1)), roc),
                     "QualityDegraded")[1] == "MetricNotMeasured"  # fmt: skip


def test_absolute_minimum_and_regression_direction() -> None:
    s = spec(quality={"min": 0.5})
    result = run(mon.Observation(facts(metrics={}), join=joined(60, 40)), s)
    assert status_of(result, "QualityDegraded")[:2] == ("False", "WithinBound")
    pairs = [ql.Pair(1.0, 3.0, 1.0)] * 60  # rmse 2
    reg = mon.JoinResult(ql.Joined(pairs=pairs, captured=60, labels=60))
    regressor = facts(metrics={"rmse": 1.0, "r2": 0.8}, classes=None)
    result = run(mon.Observation(regressor, join=reg), spec(quality=QualitySpec().model_dump()))
    status, _, message = status_of(result, "QualityDegraded")
    assert status == "True" and "rmse 2 live vs 1 training (bound 1.05)" in message


def test_capture_state() -> None:
    counts = mon.CaptureCounts("ok", {"written": 100, "dropped": 2, "failed": 1})
    capture = run(mon.Observation(facts(), capture=counts)).monitoring.capture
    assert capture is not None and (capture.state, capture.written, capture.dropped) == (
        "Degraded", 100, 3)  # fmt: skip
    ok = run(mon.Observation(facts(), capture=mon.CaptureCounts("ok", {"written": 5})))
    assert ok.monitoring.capture is not None and ok.monitoring.capture.state == "Capturing"
    off = run(mon.Observation(facts()), MonitoringSpec()).monitoring.capture
    assert off is not None and off.state == "Off"
    down = run(mon.Observation(facts(), capture=mon.CaptureCounts("unreachable")))
    assert down.monitoring.capture is not None and down.monitoring.capture.written is None


def test_due_in() -> None:
    s = spec(interval_seconds=60)
    assert mon.due_in(s, None, "iris-v1", T0) == 0.0
    status = run(mon.Observation(facts(), bins())).monitoring
    assert mon.due_in(s, status, "iris-v1", T0 + timedelta(seconds=20)) == 40.0
    assert mon.due_in(s, status, "iris-v1", T0 + timedelta(seconds=90)) == 0.0
    assert mon.due_in(s, status, "iris-v2", T0 + timedelta(seconds=20)) == 0.0
    assert mon.due_in(s, MonitoringStatus(), "iris-v1", T0) == 0.0


def test_events_on_every_change_and_only_then() -> None:
    drifting = run(mon.Observation(facts(), bins(sepal_length=even(400), petal_length={"3": 400})))
    calm = run(mon.Observation(facts(), bins(sepal_length=even(400), petal_length=even(400)),
                               join=joined(99, 1)))  # fmt: skip
    bad = run(mon.Observation(facts(), bins(), join=joined(10, 90)), conditions=calm.conditions)

    first = mon.transition_events([], drifting.conditions)
    assert [(e.type, e.reason) for e in first] == [
        ("Warning", "DriftDetected"), ("Normal", "QualityUnknown")]  # fmt: skip
    # The same status again (a pass run twice): nothing.
    assert mon.transition_events(drifting.conditions, drifting.conditions) == []
    resolved = mon.transition_events(drifting.conditions, calm.conditions)
    assert [(e.type, e.reason) for e in resolved] == [
        ("Normal", "DriftResolved"), ("Normal", "QualityOK")]  # fmt: skip
    degraded = mon.transition_events(calm.conditions, bad.conditions)
    assert ("Warning", "QualityDegraded") in [(e.type, e.reason) for e in degraded]
    assert ("Normal", "DriftUnknown") in [(e.type, e.reason) for e in degraded]
    recovered = mon.transition_events(bad.conditions, calm.conditions)
    assert ("Normal", "QualityRecovered") in [(e.type, e.reason) for e in recovered]
    assert mon.transition_events([], calm.conditions)[0].reason == "NoDrift"
    # Gone conditions post nothing.
    assert mon.transition_events(calm.conditions, []) == []


def test_a_new_drifting_feature_is_announced_again() -> None:
    one = run(mon.Observation(facts(), bins(sepal_length=even(400), petal_length={"3": 400})))
    both = run(mon.Observation(facts(), bins(sepal_length={"0": 400}, petal_length={"3": 400})),
               conditions=one.conditions)  # fmt: skip
    events = mon.transition_events(one.conditions, both.conditions, one.monitoring,
                                   both.monitoring)  # fmt: skip
    assert [(e.type, e.reason) for e in events] == [("Warning", "DriftDetected")]
    assert mon.transition_events(one.conditions, one.conditions, one.monitoring,
                                 one.monitoring) == []  # fmt: skip


def test_any_number_of_features_and_categoricals() -> None:
    features = [
        FeatureProfile(name=f"c{i}", kind="categorical",
                       distribution=Distribution(labels=["x", "y", "__other__"],
                                                 shares=[0.5, 0.4, 0.1], count=10))
        for i in range(20)
    ]  # fmt: skip
    baseline = Baseline(rows=10, features=features)
    counts = {f"c{i}": {"x": 500, "y": 400, "__other__": 100} for i in range(20)}
    counts["c7"] = {"__other__": 1000}
    result = run(mon.Observation(facts(baseline=baseline), bins(**counts)))
    status, _, message = status_of(result, "Drifting")
    assert status == "True" and "1 of 20 features" in message and "c7 PSI" in message


def test_only_a_stable_track_that_serves_its_version_is_monitored() -> None:
    v1 = ModelVersion.model_validate(ModelVersionBuilder("iris", 1).obj())
    versions = {"iris-v1": v1}
    serving = TrackObservation(version="iris-v1", replicas=2, ready_replicas=1)
    assert mon.monitored_version("iris-v1", serving, versions) is v1
    assert mon.monitored_version(None, serving, versions) is None  # no stable version yet
    assert mon.monitored_version("iris-v2", serving, versions) is None  # not registered
    moving = TrackObservation(version="iris-v0", replicas=2, ready_replicas=2)
    assert mon.monitored_version("iris-v1", moving, versions) is None  # another version runs
    starting = TrackObservation(version="iris-v1", replicas=2, ready_replicas=0)
    assert mon.monitored_version("iris-v1", starting, versions) is None  # no pod ready


def test_a_failed_observation_is_evaluated_as_unknown_with_the_error() -> None:
    v1 = ModelVersion.model_validate(ModelVersionBuilder("iris", 1).metrics(accuracy=0.96).obj())
    observation = mon.failed_observation(v1, "RuntimeError: boom")
    assert observation.version.name == "iris-v1"
    assert observation.version.metrics == {"accuracy": 0.96}
    assert observation.version.baseline_problem == ("MonitoringError", "RuntimeError: boom")
    result = run(observation, spec(drift={}, quality={}))
    drifting, quality = status_of(result, "Drifting"), status_of(result, "QualityDegraded")
    assert drifting[:2] == ("Unknown", "MonitoringError") and "boom" in drifting[2]
    assert quality[0] == "Unknown" and "boom" in quality[2]
