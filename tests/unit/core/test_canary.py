"""The canary state machine: every transition, limit, deadline and manual command."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support.matchers import condition_reasons

from kiln.api.model_deployment import HandledCommand, ModelDeploymentSpec, ModelDeploymentStatus
from kiln.core import canary
from kiln.core.analysis import REQUESTS_KEY, QueryResult
from kiln.core.canary import (
    ApplyTrack,
    Commands,
    Observations,
    RemoveAnnotation,
    SetRouteWeights,
    Target,
    TrackObservation,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def spec(**overrides: Any) -> ModelDeploymentSpec:
    raw: dict[str, Any] = {
        "model": "iris",
        "followLatestApproved": True,
        "replicas": 4,
        "canary": {
            "steps": [25, 50],
            "intervalSeconds": 10,
            "minRequests": 20,
            "failureLimit": 1,
            "inconclusiveLimit": 2,
            "progressDeadlineSeconds": 600,
        },
    }
    if "canary" in overrides:
        canary_overrides = overrides.pop("canary")
        raw["canary"] = None if canary_overrides is None else {**raw["canary"], **canary_overrides}
    raw.update(overrides)
    return ModelDeploymentSpec.model_validate(raw)


def ready(version: str, replicas: int) -> TrackObservation:
    return TrackObservation(version=version, replicas=replicas, ready_replicas=replicas)


def obs(
    target: str | None = "iris-v2",
    *,
    stable: TrackObservation | None = None,
    canary_track: TrackObservation | None = None,
    commands: Commands | None = None,
    generation: int = 1,
    analysis: dict[str, QueryResult] | None = None,
) -> Observations:
    return Observations(
        namespace="prod",
        name="iris",
        generation=generation,
        target=Target(target) if target else Target(None, "NoApprovedVersion", "none yet"),
        stable=stable if stable is not None else ready("iris-v1", 4),
        canary=canary_track if canary_track is not None else TrackObservation(),
        commands=commands or Commands(),
        analysis=analysis,
    )


def serving_v1() -> ModelDeploymentStatus:
    """A deployment at rest serving iris-v1 on 4 replicas."""
    return ModelDeploymentStatus(
        observed_generation=1,
        phase="Promoted",
        stable_version="iris-v1",
        target_version="iris-v1",
        stable_replicas=4,
    )


def passing(requests: float = 100, error_rate: float = 0.0, p99: float = 0.01) -> dict[str, Any]:
    return {
        REQUESTS_KEY: QueryResult.of(requests),
        "canary/error-rate": QueryResult.of(error_rate),
        "canary/latency-p99": QueryResult.of(p99),
    }


def unreachable() -> dict[str, QueryResult]:
    down = QueryResult("unreachable", None, "connection refused")
    return {REQUESTS_KEY: down, "canary/error-rate": down, "canary/latency-p99": down}


def tracks(decision: canary.Decision) -> dict[str, tuple[str | None, int]]:
    return {a.track: (a.version, a.replicas) for a in decision.actions if isinstance(a, ApplyTrack)}


def reasons(decision: canary.Decision) -> list[str]:
    return [e.reason for e in decision.events]


class Rollout:
    """Drives `step` like the handler: observe, decide, run the queries asked for."""

    def __init__(self, md_spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> None:
        self.spec = md_spec
        self.status = status
        self.now = T0
        self.last: canary.Decision | None = None

    def canary_ready(self) -> TrackObservation:
        version = self.status.canary_version
        return ready(version, self.status.canary_replicas) if version else TrackObservation()

    def tick(
        self,
        seconds: float = 0,
        *,
        results: dict[str, QueryResult] | None = None,
        **kwargs: Any,
    ) -> canary.Decision:
        self.now += timedelta(seconds=seconds)
        kwargs.setdefault("canary_track", self.canary_ready())
        observed = obs(**kwargs)
        decision = canary.step(self.spec, self.status, observed, self.now)
        if decision.analysis is not None:
            assert results is not None, "an analysis was asked for but the test gave no results"
            decision = canary.step(
                self.spec, self.status, replace(observed, analysis=results), self.now
            )
            assert decision.analysis is None
        self.status = decision.status
        self.last = decision
        return decision


# -- replica ratio ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        (4, 0, (4, 0, 0)),
        (4, 10, (3, 1, 25)),
        (4, 25, (3, 1, 25)),
        (4, 50, (2, 2, 50)),
        (4, 60, (2, 2, 50)),
        (4, 99, (1, 3, 75)),
        (4, 100, (0, 4, 100)),
        (2, 10, (1, 1, 50)),
        (1, 10, (1, 1, 50)),
        (1, 100, (0, 1, 100)),
        (10, 10, (9, 1, 10)),
        (10, 35, (6, 4, 40)),
        (3, 50, (1, 2, 67)),
    ],
)
def test_replica_ratio_split(total: int, weight: int, expected: tuple[int, int, int]) -> None:
    chosen = canary.split(total, weight)
    assert (chosen.stable, chosen.canary, chosen.weight) == expected


def test_gateway_weights_are_exact_and_stable_keeps_its_pods() -> None:
    assert canary.split(4, 10, gateway=True) == canary.Split(4, 1, 10)
    assert canary.split(4, 60, gateway=True) == canary.Split(4, 3, 60)


@pytest.mark.parametrize(
    ("total", "weights"),
    [(1, [50, 100]), (2, [50, 100]), (4, [25, 50, 75, 100]), (5, [20, 40, 60, 80, 100])],
)
def test_achievable_weights(total: int, weights: list[int]) -> None:
    assert canary.achievable_weights(total) == weights


# -- inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, Commands()),
        ({"kiln.dev/paused": "true"}, Commands(paused=True)),
        ({"kiln.dev/paused": "false"}, Commands()),
        (
            {"kiln.dev/promote": "2026-01-01T00:00:00Z"},
            Commands(promote=True, present={"kiln.dev/promote": "2026-01-01T00:00:00Z"}),
        ),
        ({"kiln.dev/abort": ""}, Commands(abort=True, present={"kiln.dev/abort": ""})),
        (
            {"kiln.dev/retry": "x", "other": "y"},
            Commands(retry=True, present={"kiln.dev/retry": "x"}),
        ),
    ],
)
def test_commands_from_annotations(annotations: dict[str, str], expected: Commands) -> None:
    assert canary.commands_from_annotations(annotations) == expected


JSON_LOG = (
    '{"ts":"2026-01-01T00:00:00.000Z","level":"ERROR","logger":"kiln.server",'
    '"msg":"model not loaded; staying NotReady","reason":"IntegrityError: artifact sha256 '
    'abc does not match the expected def"}'
)


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ([], None),
        (["all good\nlistening"], None),
        ([JSON_LOG], ("IntegrityError", "IntegrityError: artifact sha256 abc does not match")),
        (["boom\nUntrustedArtifact: type os.system is not trusted"], ("UntrustedArtifact", "")),
        (["ModelError: estimator has no predict"], ("ModelError", "ModelError: estimator")),
        # Unavailable storage is transient: not a reason to fail the rollout.
        (['{"msg":"x","reason":"ArtifactUnavailable: connection refused"}'], None),
    ],
)
def test_load_failure(texts: list[str], expected: tuple[str, str] | None) -> None:
    found = canary.load_failure(texts)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert found[0] == expected[0]
        assert found[1].startswith(expected[1])


# -- first deployment and steady state --------------------------------------------------


def test_first_version_goes_straight_to_stable() -> None:
    decision = canary.step(
        spec(), ModelDeploymentStatus(), obs("iris-v1", stable=TrackObservation()), T0
    )
    st = decision.status
    assert (st.phase, st.stable_version, st.canary_version) == ("Progressing", "iris-v1", None)
    assert tracks(decision) == {"stable": ("iris-v1", 4), "canary": (None, 0)}
    assert condition_reasons(st)["Reconciling"] == ("True", "RollingOut")
    assert condition_reasons(st)["Ready"] == ("False", "RollingOut")
    assert "Deploying" in reasons(decision)
    assert decision.requeue_after == canary.WAIT_FOR_PODS_SECONDS
    assert st.observed_generation == 1

    later = canary.step(spec(), st, obs("iris-v1", stable=ready("iris-v1", 4)), T0)
    assert later.status.phase == "Promoted"
    assert condition_reasons(later.status) == {"Ready": ("True", "Serving")}
    assert reasons(later) == ["Serving"]
    assert later.requeue_after == canary.STEADY_RESYNC_SECONDS


def test_steady_state_is_quiet() -> None:
    decision = canary.step(spec(), serving_v1(), obs("iris-v1"), T0)
    assert decision.events == []
    assert decision.status.phase == "Promoted"
    assert tracks(decision) == {"stable": ("iris-v1", 4), "canary": (None, 0)}


def test_stable_that_cannot_load_fails_with_the_reason() -> None:
    broken = TrackObservation(
        version="iris-v1",
        replicas=4,
        failure_reason="IntegrityError",
        failure_message="IntegrityError: sha256 mismatch",
    )
    decision = canary.step(spec(), ModelDeploymentStatus(), obs("iris-v1", stable=broken), T0)
    assert (decision.status.phase, decision.status.reason) == ("Failed", "IntegrityError")
    assert condition_reasons(decision.status)["Stalled"] == ("True", "IntegrityError")
    assert "IntegrityError" in reasons(decision)


def test_no_target_keeps_serving_stable_and_stalls() -> None:
    decision = canary.step(spec(), serving_v1(), obs(None), T0)
    assert tracks(decision) == {"stable": ("iris-v1", 4), "canary": (None, 0)}
    assert condition_reasons(decision.status)["Stalled"] == ("True", "NoApprovedVersion")
    assert decision.status.target_version is None


def test_without_canary_spec_a_new_version_replaces_stable() -> None:
    md_spec = spec(canary=None)
    assert md_spec.canary is None
    decision = canary.step(md_spec, serving_v1(), obs("iris-v2"), T0)
    assert decision.status.stable_version == "iris-v2"
    assert decision.status.canary_version is None
    assert tracks(decision) == {"stable": ("iris-v2", 4), "canary": (None, 0)}
    assert "Replacing" in reasons(decision)


def test_stable_without_ready_pods_is_replaced_not_canaried() -> None:
    down = TrackObservation(version="iris-v1", replicas=4, ready_replicas=0)
    decision = canary.step(spec(), serving_v1(), obs("iris-v2", stable=down), T0)
    assert decision.status.stable_version == "iris-v2"
    assert decision.status.canary_version is None


# -- a rollout, step by step ------------------------------------------------------------


def test_good_version_goes_through_every_step_to_promoted() -> None:
    r = Rollout(spec(), serving_v1())
    d = r.tick()
    st = r.status
    assert (st.phase, st.canary_version, st.current_step) == ("Progressing", "iris-v2", 0)
    assert (st.step_weight, st.canary_weight, st.stable_replicas, st.canary_replicas) == (
        25,
        25,
        3,
        1,
    )
    assert tracks(d) == {"stable": ("iris-v1", 3), "canary": ("iris-v2", 1)}
    assert st.rollout_started_time == T0 and st.step_started_time == T0
    assert "RolloutStarted" in reasons(d)
    assert condition_reasons(st)["Reconciling"] == ("True", "CanaryProgressing")

    # Canary pods not ready yet: wait, no analysis.
    d = r.tick(1, canary_track=TrackObservation("iris-v2", 1, 0))
    assert d.requeue_after == canary.WAIT_FOR_PODS_SECONDS
    assert "waiting for canary pods (0/1 ready)" in (r.status.message or "")

    # Ready, interval not over: wait until it is.
    d = r.tick(2)
    assert d.requeue_after == pytest.approx(7)
    assert d.analysis is None

    # Interval over: analysis runs, passes, next step.
    d = r.tick(7, results=passing())
    st = r.status
    assert (st.current_step, st.step_weight, st.canary_weight) == (1, 50, 50)
    assert tracks(d) == {"stable": ("iris-v1", 2), "canary": ("iris-v2", 2)}
    assert reasons(d) == ["AnalysisSuccessful", "StepAdvanced"]
    assert [a.check for a in st.analysis] == ["error-rate", "latency-p99"]
    assert st.analysis[0].max == 0.01 and st.analysis[0].requests == 100
    assert st.last_analysis_outcome == "Successful"
    assert st.step_started_time == r.now
    assert d.requeue_after == 10

    # Last step passes: promoted.
    d = r.tick(10, results=passing())
    st = r.status
    assert (st.phase, st.stable_version, st.canary_version) == ("Promoted", "iris-v2", None)
    assert (st.canary_weight, st.canary_replicas, st.stable_replicas) == (0, 0, 4)
    assert tracks(d) == {"stable": ("iris-v2", 4), "canary": (None, 0)}
    assert "Promoted" in reasons(d)
    assert len(st.analysis) == 4
    # Stable still rolling to v2 (pods observed at v1): Reconciling, then Ready.
    assert condition_reasons(st)["Reconciling"] == ("True", "RollingOut")
    d = r.tick(1, stable=ready("iris-v2", 4))
    assert condition_reasons(r.status) == {"Ready": ("True", "Serving")}
    assert r.status.phase == "Promoted"


def test_due_analysis_is_asked_for_without_changing_state() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    r.now += timedelta(seconds=10)
    d = canary.step(r.spec, r.status, obs(canary_track=r.canary_ready()), r.now)
    assert d.analysis is not None
    assert set(d.analysis.queries) == {REQUESTS_KEY, "canary/error-rate", "canary/latency-p99"}
    assert d.status.current_step == 0 and d.status.analysis == []
    assert d.requeue_after == 0


def test_results_given_before_the_interval_are_ignored() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    d = canary.step(r.spec, r.status, obs(canary_track=r.canary_ready(), analysis=passing()), r.now)
    assert d.status.current_step == 0 and d.status.analysis == []


def test_failed_analysis_within_the_limit_is_retried_then_rolls_back() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    d = r.tick(10, results=passing(error_rate=0.3))
    assert r.status.failed_analyses == 1
    assert r.status.current_step == 0 and r.status.canary_version == "iris-v2"
    assert reasons(d) == ["AnalysisFailed"]
    assert "error-rate=0.3 [-inf, 0.01] Failed" in d.events[0].message

    d = r.tick(10, results=passing(p99=2.0))
    st = r.status
    assert (st.phase, st.reason, st.failed_version) == ("RolledBack", "AnalysisFailed", "iris-v2")
    assert (st.stable_version, st.canary_version, st.canary_replicas) == ("iris-v1", None, 0)
    assert tracks(d) == {"stable": ("iris-v1", 4), "canary": (None, 0)}
    assert "latency-p99=2 [-inf, 0.5] Failed" in (st.message or "")
    assert condition_reasons(st)["Stalled"] == ("True", "AnalysisFailed")
    assert reasons(d) == ["AnalysisFailed", "AnalysisFailed"]
    assert d.events[-1].type == "Warning"

    # The rolled-back version is not retried by itself.
    d = r.tick(60)
    assert r.status.canary_version is None and r.status.phase == "RolledBack"
    assert tracks(d) == {"stable": ("iris-v1", 4), "canary": (None, 0)}
    assert d.events == []


def test_failure_limit_zero_rolls_back_on_the_first_failure() -> None:
    r = Rollout(spec(canary={"failureLimit": 0}), serving_v1())
    r.tick()
    r.tick(10, results=passing(error_rate=0.5))
    assert r.status.phase == "RolledBack"


@pytest.mark.parametrize(
    "results",
    [
        pytest.param(passing(requests=3), id="too-few-requests"),
        pytest.param(
            {REQUESTS_KEY: QueryResult("no_data"), "canary/error-rate": QueryResult("no_data")},
            id="no-data",
        ),
        pytest.param(unreachable(), id="prometheus-unreachable"),
    ],
)
def test_inconclusive_is_never_a_pass(results: dict[str, QueryResult]) -> None:
    r = Rollout(spec(canary={"inconclusiveLimit": 1}), serving_v1())
    r.tick()
    d = r.tick(10, results=results)
    assert r.status.current_step == 0
    assert r.status.inconclusive_analyses == 1
    assert r.status.phase == "Progressing"
    assert reasons(d)[0] in ("AnalysisInconclusive", "AnalysisError")

    d = r.tick(10, results=results)
    st = r.status
    assert (st.phase, st.reason, st.current_step) == ("Paused", "InconclusiveAnalysis", 0)
    assert st.canary_version == "iris-v2" and st.stable_version == "iris-v1"
    assert condition_reasons(st)["Stalled"] == ("True", "InconclusiveAnalysis")
    assert "InconclusiveAnalysis" in reasons(d)
    # The canary keeps its share while paused: analysis goes on.
    assert tracks(d) == {"stable": ("iris-v1", 3), "canary": ("iris-v2", 1)}

    d = r.tick(10, results=results)
    assert r.status.phase == "Paused" and r.status.inconclusive_analyses == 3
    assert "InconclusiveAnalysis" not in reasons(d)

    # Evidence again: resumes and advances.
    d = r.tick(10, results=passing())
    st = r.status
    assert (st.phase, st.current_step, st.inconclusive_analyses) == ("Progressing", 1, 0)
    assert "Resumed" in reasons(d)
    assert condition_reasons(st)["Reconciling"] == ("True", "CanaryProgressing")


def test_unreachable_prometheus_outcome_is_error() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    r.tick(10, results=unreachable())
    assert r.status.last_analysis_outcome == "Error"
    assert {a.outcome for a in r.status.analysis} == {"Error"}


def test_progress_deadline_fails_the_rollout() -> None:
    r = Rollout(
        spec(canary={"progressDeadlineSeconds": 30, "inconclusiveLimit": 100}), serving_v1()
    )
    r.tick()
    r.tick(10, results=unreachable())
    r.tick(10, results=unreachable())
    d = r.tick(10)
    st = r.status
    assert (st.phase, st.reason) == ("Failed", "ProgressDeadlineExceeded")
    assert (st.stable_version, st.canary_version, st.failed_version) == (
        "iris-v1",
        None,
        "iris-v2",
    )
    assert tracks(d) == {"stable": ("iris-v1", 4), "canary": (None, 0)}


def test_canary_that_cannot_load_fails_with_integrity_error() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    broken = TrackObservation(
        "iris-v2", 1, 0, failure_reason="IntegrityError", failure_message="IntegrityError: x"
    )
    d = r.tick(1, canary_track=broken)
    st = r.status
    assert (st.phase, st.reason, st.failed_version) == ("Failed", "IntegrityError", "iris-v2")
    assert st.stable_version == "iris-v1" and st.canary_version is None
    assert tracks(d) == {"stable": ("iris-v1", 4), "canary": (None, 0)}
    assert condition_reasons(st)["Stalled"] == ("True", "IntegrityError")
    assert "IntegrityError" in reasons(d)

    # Later passes hold on stable and keep saying why, with the way out.
    r.tick(60)
    r.tick(60)
    held = r.status
    assert held.phase == "Failed" and "IntegrityError: x" in (held.message or "")
    assert "kiln resume" in (held.message or "")
    assert condition_reasons(held)["Stalled"][1] == "IntegrityError"


def test_failure_of_an_older_canary_version_is_not_blamed_on_the_new_one() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    stale = TrackObservation("iris-v0", 1, 0, failure_reason="IntegrityError")
    r.tick(1, canary_track=stale)
    assert r.status.phase == "Progressing"


# -- manual commands --------------------------------------------------------------------


def test_manual_pause_holds_and_stops_the_deadline_clock() -> None:
    r = Rollout(spec(canary={"progressDeadlineSeconds": 60}), serving_v1())
    r.tick()
    d = r.tick(5, commands=Commands(paused=True))
    st = r.status
    assert (st.phase, st.reason, st.paused_time) == ("Paused", "ManualPause", r.now)
    assert condition_reasons(st)["Reconciling"] == ("True", "Paused")
    assert "Paused" in reasons(d)
    assert tracks(d) == {"stable": ("iris-v1", 3), "canary": ("iris-v2", 1)}

    # Long past the interval and the deadline: nothing happens while paused.
    d = r.tick(300, commands=Commands(paused=True))
    assert d.analysis is None and r.status.phase == "Paused" and d.events == []

    d = r.tick(1)
    st = r.status
    assert st.phase == "Progressing" and st.paused_time is None
    assert "Resumed" in reasons(d)
    assert st.rollout_started_time == T0 + timedelta(seconds=301)
    assert st.step_started_time == r.now
    r.tick(10, results=passing())
    assert r.status.current_step == 1


def test_spec_paused_is_a_manual_pause() -> None:
    r = Rollout(spec(canary={"paused": True}), serving_v1())
    r.tick()
    assert r.status.phase == "Paused"


def test_promote_command_skips_the_remaining_steps() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    d = r.tick(1, commands=Commands(promote=True))
    st = r.status
    assert (st.phase, st.reason, st.stable_version, st.canary_version) == (
        "Promoted",
        "ManualPromotion",
        "iris-v2",
        None,
    )
    assert RemoveAnnotation(canary.PROMOTE_ANNOTATION) in d.actions
    assert tracks(d) == {"stable": ("iris-v2", 4), "canary": (None, 0)}


def test_abort_command_rolls_back() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    d = r.tick(1, commands=Commands(abort=True))
    st = r.status
    assert (st.phase, st.reason, st.failed_version) == ("RolledBack", "Aborted", "iris-v2")
    assert st.stable_version == "iris-v1"
    assert RemoveAnnotation(canary.ABORT_ANNOTATION) in d.actions


def test_commands_without_a_rollout_are_consumed_and_ignored() -> None:
    d = canary.step(
        spec(), serving_v1(), obs("iris-v1", commands=Commands(promote=True, abort=True)), T0
    )
    assert RemoveAnnotation(canary.PROMOTE_ANNOTATION) in d.actions
    assert RemoveAnnotation(canary.ABORT_ANNOTATION) in d.actions
    assert reasons(d).count("CommandIgnored") == 2
    assert d.status.phase == "Promoted"


def test_a_command_is_handled_in_the_status_that_carries_its_effect() -> None:
    """Promote's value goes into the same status as the promotion; read back, the same
    annotation is no longer pending (a crash before its removal does not promote again)."""
    value = {canary.PROMOTE_ANNOTATION: "t1"}
    r = Rollout(spec(), serving_v1())
    r.tick()
    d = r.tick(1, commands=canary.commands_from_annotations(value))
    assert (d.status.phase, canary.handled_commands(d.status)) == ("Promoted", value)
    assert RemoveAnnotation(canary.PROMOTE_ANNOTATION) in d.actions
    again = canary.commands_from_annotations(value, canary.handled_commands(d.status))
    assert not again.promote
    after_crash = canary.step(spec(), d.status, obs("iris-v2", commands=again), T0)
    assert "CommandIgnored" not in reasons(after_crash)  # nothing to say: it was done
    assert RemoveAnnotation(canary.PROMOTE_ANNOTATION) in after_crash.actions  # cleanup only
    assert canary.handled_commands(after_crash.status) == value


def test_a_handled_command_is_forgotten_once_its_annotation_is_gone() -> None:
    """So `kubectl annotate … kiln.dev/abort=true` works again for the next rollout."""
    handled = [HandledCommand(annotation=canary.ABORT_ANNOTATION, value="true")]
    status = serving_v1().model_copy(update={"handled_commands": handled})
    d = canary.step(spec(), status, obs("iris-v1"), T0)
    assert d.status.handled_commands == []
    assert not any(isinstance(a, RemoveAnnotation) for a in d.actions)


def test_retry_restarts_a_rolled_back_version() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    r.tick(1, commands=Commands(abort=True))
    d = r.tick(1, commands=Commands(retry=True))
    assert RemoveAnnotation(canary.RETRY_ANNOTATION) in d.actions
    assert r.status.canary_version == "iris-v2" and r.status.failed_version is None
    assert reasons(d)[:2] == ["Retry", "RolloutStarted"]
    assert r.status.analysis == [] and r.status.failed_analyses == 0


def test_spec_change_retries_a_rolled_back_version() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    r.tick(1, commands=Commands(abort=True))
    r.tick(1, generation=2)
    assert r.status.canary_version == "iris-v2"
    assert r.status.observed_generation == 2


def test_newer_version_after_a_rollback_starts_a_new_rollout() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    r.tick(1, commands=Commands(abort=True))
    d = r.tick(1, target="iris-v3")
    assert r.status.canary_version == "iris-v3"
    assert r.status.failed_version == "iris-v2"
    assert "RolloutStarted" in reasons(d)


def test_newer_version_supersedes_a_running_canary() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    r.tick(10, results=passing())
    assert r.status.current_step == 1
    d = r.tick(1, target="iris-v3")
    st = r.status
    assert (st.canary_version, st.current_step, st.stable_version) == ("iris-v3", 0, "iris-v1")
    assert reasons(d)[:2] == ["Superseded", "RolloutStarted"]


def test_target_back_to_stable_cancels_the_canary() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    d = r.tick(1, target="iris-v1")
    assert r.status.canary_version is None and r.status.phase == "Promoted"
    assert tracks(d) == {"stable": ("iris-v1", 4), "canary": (None, 0)}


def test_removing_the_canary_spec_mid_rollout_promotes() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    r.spec = spec(canary=None)
    r.tick(1)
    assert (r.status.stable_version, r.status.reason) == ("iris-v2", "CanaryDisabled")


def test_target_lost_mid_rollout_removes_the_canary() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    d = r.tick(1, target=None)
    assert r.status.canary_version is None
    assert tracks(d) == {"stable": ("iris-v1", 4), "canary": (None, 0)}
    assert "RolloutCancelled" in reasons(d)


def test_shrunk_steps_clamp_the_current_step() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    r.tick(10, results=passing())
    r.spec = spec(canary={"steps": [20]})
    r.tick(1)
    assert r.status.current_step == 0 and r.status.step_weight == 20


def test_gateway_sets_route_weights() -> None:
    md_spec = spec(gateway={"httpRoute": {"parentRefs": [{"name": "gw"}]}})
    d = canary.step(md_spec, serving_v1(), obs(), T0)
    assert SetRouteWeights(stable=75, canary=25) in d.actions
    assert tracks(d) == {"stable": ("iris-v1", 4), "canary": ("iris-v2", 1)}


# -- restart: the status alone is enough ------------------------------------------------


def test_restart_resumes_from_status_alone() -> None:
    r = Rollout(spec(), serving_v1())
    r.tick()
    r.tick(10, results=passing())
    # An operator restart: only the stored (wire) status survives.
    stored = ModelDeploymentStatus.model_validate(r.status.to_wire())
    assert stored == r.status
    again = canary.step(r.spec, stored, obs(canary_track=ready("iris-v2", 2)), r.now)
    assert again.events == []
    assert tracks(again) == {"stable": ("iris-v1", 2), "canary": ("iris-v2", 2)}
    assert again.status.current_step == 1
    assert again.requeue_after == pytest.approx(10)

    r.status = stored
    d = r.tick(10, results=passing())
    assert r.status.phase == "Promoted" and "Promoted" in reasons(d)


def test_step_is_deterministic() -> None:
    status = serving_v1()
    first = canary.step(spec(), status, obs(), T0)
    second = canary.step(spec(), status, obs(), T0)
    assert first == second
    assert status == serving_v1()  # the input is never mutated


def test_analysis_history_is_bounded() -> None:
    r = Rollout(spec(canary={"inconclusiveLimit": 100}), serving_v1())
    r.tick()
    for _ in range(40):
        r.tick(10, results=passing(requests=1))
    assert len(r.status.analysis) == 64
    assert r.status.analysis[-1].time == r.now
