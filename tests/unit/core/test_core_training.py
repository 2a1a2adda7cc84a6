from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kiln.api.training_job import RunRecord
from kiln.core import training as t
from kiln.core.training import (
    ContainerTermination,
    CreatePod,
    DeletePod,
    PodObservation,
    RegisterModel,
    RetryPolicy,
    TrainerFailure,
    TrainerSuccess,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SHA = "b" * 64

SUCCESS_REPORT: dict[str, Any] = {
    "ok": True,
    "metrics": {"accuracy": 0.97},
    "dataset": {"uri": "s3://d/iris.csv", "sha256": SHA, "rows": 150},
    "split": {"trainRows": 112, "testRows": 38, "stratified": True, "seed": 7},
    "estimator": "sklearn.linear_model.LogisticRegression",
    "params": {"max_iter": 200},
    "inputSchema": {
        "features": [{"name": "sepal_length", "dtype": "float64"}],
        "target": {"name": "species", "dtype": "object"},
        "classes": ["setosa", "versicolor", "virginica"],
    },
    "versions": {"python": "3.11.7", "sklearn": "1.5.2"},
    "fairness": {"column": "site", "metric": "accuracy", "gap": 0.02, "groups": {"a": 0.96}},
    "artifact": {"uri": "s3://m/iris/run-1/model.skops", "sha256": SHA, "format": "skops"},
    "reportUri": "s3://m/iris/run-1/report.json",
    "durationSeconds": {"fit": 0.1},
}


def failure_report(reason: str, retryable: bool, exit_code: int = 3) -> str:
    return json.dumps(
        {
            "ok": False,
            "reason": reason,
            "message": f"{reason} happened",
            "exitCode": exit_code,
            "retryable": retryable,
        }
    )


def pod(
    attempt: int,
    phase: t.PodPhase,
    *,
    message: str | None = None,
    exit_code: int = 0,
    container_reason: str | None = None,
    reason: str | None = None,
    deleted: bool = False,
    run: int = 1,
) -> PodObservation:
    terminated = None
    if phase in ("Succeeded", "Failed") and (message is not None or exit_code or container_reason):
        terminated = ContainerTermination(exit_code, container_reason, message)
    return PodObservation(
        name=t.pod_name("iris", run, attempt),
        attempt=attempt,
        phase=phase,
        terminated=terminated,
        reason=reason,
        deleted=deleted,
    )


def succeeded(attempt: int) -> PodObservation:
    return pod(attempt, "Succeeded", message=json.dumps(SUCCESS_REPORT))


def failed(
    attempt: int, reason: str = "DatasetUnavailable", retryable: bool = True
) -> PodObservation:
    return pod(attempt, "Failed", message=failure_report(reason, retryable), exit_code=3)


def new_run(**changes: Any) -> RunRecord:
    return RunRecord(**{"run": 1, "phase": "Pending", **changes})


# --- termination message ----------------------------------------------------------------


def test_parses_the_trainers_success_report() -> None:
    report = t.parse_termination_message(json.dumps(SUCCESS_REPORT))
    assert isinstance(report, TrainerSuccess)
    assert report.artifact.sha256 == SHA
    assert report.metrics == {"accuracy": 0.97}
    assert report.dataset.sha256 == SHA
    assert report.versions["sklearn"] == "1.5.2"
    assert report.input_schema.target is not None
    assert report.input_schema.target.name == "species"
    assert report.fairness is not None and report.fairness.gap == 0.02


def test_parses_a_shrunk_report_with_bare_feature_names() -> None:
    shrunk = {
        **SUCCESS_REPORT,
        "truncated": True,
        "inputSchema": {"features": ["a", "b"], "featuresCount": 300},
    }
    report = t.parse_termination_message(json.dumps(shrunk))
    assert isinstance(report, TrainerSuccess)
    assert report.truncated
    assert [f.name for f in report.input_schema.features] == ["a", "b"]
    assert report.report_uri == "s3://m/iris/run-1/report.json"


def test_parses_the_trainers_failure_report() -> None:
    report = t.parse_termination_message(failure_report("InvalidParams", False, 7))
    assert report == TrainerFailure(
        ok=False,
        reason="InvalidParams",
        message="InvalidParams happened",
        exit_code=7,
        retryable=False,
    )


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "Traceback (most recent call last):\n  boom\nMemoryError",
        "[1, 2]",
        json.dumps({"metrics": {}}),
        json.dumps({"ok": True, "metrics": {}}),
        json.dumps({"ok": False}),
    ],
)
def test_anything_else_is_no_report(text: str | None) -> None:
    assert t.parse_termination_message(text) is None


# --- attempt outcome --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "state"), [("Pending", "Pending"), ("Unknown", "Pending"), ("Running", "Running")]
)
def test_live_pods(phase: t.PodPhase, state: str) -> None:
    assert t.attempt_outcome(pod(1, phase)).state == state


def test_success_with_report() -> None:
    outcome = t.attempt_outcome(succeeded(1))
    assert outcome.state == "Succeeded"
    assert outcome.result is not None and outcome.result.metrics["accuracy"] == 0.97


def test_success_without_report_is_a_permanent_failure() -> None:
    outcome = t.attempt_outcome(pod(1, "Succeeded", message="all done"))
    assert (outcome.state, outcome.reason, outcome.retryable) == ("Failed", "InvalidResult", False)


@pytest.mark.parametrize(
    ("reason", "retryable"),
    [("DatasetUnavailable", True), ("InvalidParams", False), ("IntegrityError", False)],
)
def test_trainer_failure_report_decides_reason_and_retry(reason: str, retryable: bool) -> None:
    outcome = t.attempt_outcome(failed(1, reason, retryable))
    assert (outcome.state, outcome.reason, outcome.retryable) == ("Failed", reason, retryable)
    assert outcome.message == f"{reason} happened"


@pytest.mark.parametrize(
    ("exit_code", "reason", "retryable"),
    [
        (3, "DatasetUnavailable", True),
        (4, "IntegrityError", False),
        (7, "InvalidParams", False),
        (9, "UploadFailed", True),
        (137, "TrainerFailed", True),
    ],
)
def test_exit_code_tells_why_when_the_report_is_lost(
    exit_code: int, reason: str, retryable: bool
) -> None:
    observed = pod(1, "Failed", message="log line 1\nlast words\n", exit_code=exit_code)
    outcome = t.attempt_outcome(observed)
    assert (outcome.reason, outcome.retryable) == (reason, retryable)
    assert outcome.message == "last words"


def test_out_of_memory() -> None:
    outcome = t.attempt_outcome(pod(1, "Failed", exit_code=137, container_reason="OOMKilled"))
    assert (outcome.reason, outcome.retryable) == ("OOMKilled", True)


def test_pod_deadline_is_final() -> None:
    outcome = t.attempt_outcome(pod(1, "Failed", reason="DeadlineExceeded"))
    assert (outcome.reason, outcome.retryable) == ("DeadlineExceeded", False)


def test_evicted_pod_is_retried() -> None:
    outcome = t.attempt_outcome(pod(1, "Failed", reason="Evicted"))
    assert (outcome.reason, outcome.retryable) == ("Evicted", True)


def test_pod_deleted_while_running_counts_as_failed_attempt() -> None:
    outcome = t.attempt_outcome(pod(1, "Running", deleted=True))
    assert (outcome.state, outcome.reason, outcome.retryable) == ("Failed", "PodDeleted", True)


def test_pod_deleted_after_success_still_succeeded() -> None:
    observed = PodObservation(
        "iris-1-1",
        1,
        "Succeeded",
        ContainerTermination(0, None, json.dumps(SUCCESS_REPORT)),
        deleted=True,
    )
    assert t.attempt_outcome(observed).state == "Succeeded"


# --- names and backoff ------------------------------------------------------------------


def test_pod_name_is_deterministic() -> None:
    assert t.pod_name("iris", 3, 2) == "iris-3-2"
    assert t.pod_name("iris", 3, 2) == t.pod_name("iris", 3, 2)


def test_long_pod_names_are_shortened_with_a_hash() -> None:
    long_a = "a" * 80
    long_b = "a" * 79 + "b"
    name_a = t.pod_name(long_a, 12, 3)
    name_b = t.pod_name(long_b, 12, 3)
    assert len(name_a) == 63 and len(name_b) == 63
    assert name_a.endswith("-12-3") and name_b.endswith("-12-3")
    assert name_a != name_b
    assert t.pod_name("x" * 58, 1, 1) == "x" * 58 + "-1-1"


def test_shortened_name_never_has_a_dangling_separator() -> None:
    name = t.bounded_name("a" * 53 + "-" + "b" * 20, "-1-1")
    assert "--" not in name
    assert len(name) <= 63


@pytest.mark.parametrize(
    ("failures", "seconds"), [(1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 300), (30, 300)]
)
def test_backoff_doubles_from_ten_seconds_up_to_five_minutes(failures: int, seconds: int) -> None:
    assert t.backoff_delay(failures) == timedelta(seconds=seconds)


# --- decide_run ---------------------------------------------------------------------------

POLICY = RetryPolicy(backoff_limit=2, active_deadline_seconds=600)


def test_first_call_creates_attempt_one_with_the_remaining_deadline() -> None:
    decision = t.decide_run("iris", new_run(), [], POLICY, T0)
    assert decision.actions == [CreatePod("iris-1-1", 1, 600)]
    assert decision.run.attempts == 1
    assert decision.run.pod == "iris-1-1"
    assert decision.run.start_time == T0
    assert decision.run.phase == "Pending"


def test_same_inputs_give_the_same_decision() -> None:
    run = new_run(start_time=T0)
    assert t.decide_run("iris", run, [], POLICY, T0) == t.decide_run("iris", run, [], POLICY, T0)


def test_a_pod_the_status_does_not_know_is_adopted_not_recreated() -> None:
    """The operator died between creating the pod and writing the status."""
    decision = t.decide_run("iris", new_run(start_time=T0), [pod(1, "Pending")], POLICY, T0)
    assert decision.actions == []
    assert decision.run.attempts == 1
    assert decision.run.pod == "iris-1-1"


def test_running_pod_moves_the_run_to_running_once() -> None:
    run = new_run(start_time=T0, attempts=1, pod="iris-1-1")
    first = t.decide_run("iris", run, [pod(1, "Running")], POLICY, T0 + timedelta(seconds=5))
    assert first.run.phase == "Running"
    assert first.event is not None and first.event[0] == "Running"
    assert first.requeue_after == timedelta(seconds=595), "wake up at the deadline"
    again = t.decide_run("iris", first.run, [pod(1, "Running")], POLICY, T0 + timedelta(seconds=9))
    assert again.event is None and again.actions == []


def test_success_registers_the_model() -> None:
    run = new_run(start_time=T0, attempts=1, pod="iris-1-1", phase="Running")
    decision = t.decide_run("iris", run, [succeeded(1)], POLICY, T0 + timedelta(seconds=30))
    assert decision.run.phase == "Succeeded"
    assert decision.run.completion_time == T0 + timedelta(seconds=30)
    assert decision.run.reason is None
    (action,) = decision.actions
    assert isinstance(action, RegisterModel)
    assert action.result.artifact.sha256 == SHA


def test_terminal_run_does_nothing() -> None:
    for phase in ("Succeeded", "Failed"):
        run = RunRecord(run=1, phase=phase, attempts=1, start_time=T0)
        decision = t.decide_run("iris", run, [succeeded(1)], POLICY, T0)
        assert decision.actions == [] and decision.run == run


def test_retryable_failure_waits_with_backoff_then_creates_the_next_attempt() -> None:
    run = new_run(start_time=T0, attempts=1, pod="iris-1-1", phase="Running")
    now = T0 + timedelta(seconds=20)
    waiting = t.decide_run("iris", run, [failed(1)], POLICY, now)
    assert waiting.actions == []
    assert waiting.run.next_attempt_time == now + timedelta(seconds=10)
    assert waiting.run.reason == "DatasetUnavailable"
    assert waiting.requeue_after == timedelta(seconds=10)
    assert waiting.event is not None and waiting.event[0] == "Retrying"

    early = t.decide_run("iris", waiting.run, [failed(1)], POLICY, now + timedelta(seconds=4))
    assert early.actions == [] and early.requeue_after == timedelta(seconds=6)

    due = now + timedelta(seconds=10)
    retry = t.decide_run("iris", waiting.run, [failed(1)], POLICY, due)
    assert retry.actions == [CreatePod("iris-1-2", 2, 570)]
    assert retry.run.attempts == 2 and retry.run.next_attempt_time is None


def test_backoff_limit_exceeded_names_the_last_failure() -> None:
    run = new_run(start_time=T0, attempts=3, pod="iris-1-3")
    pods = [failed(1), failed(2), failed(3)]
    decision = t.decide_run("iris", run, pods, POLICY, T0 + timedelta(seconds=100))
    assert decision.run.phase == "Failed"
    assert decision.run.reason == "BackoffLimitExceeded"
    assert decision.run.message is not None
    assert "3 attempts failed" in decision.run.message
    assert "DatasetUnavailable" in decision.run.message
    assert decision.actions == []


def test_backoff_limit_zero_means_a_single_attempt() -> None:
    run = new_run(start_time=T0, attempts=1, pod="iris-1-1")
    decision = t.decide_run("iris", run, [failed(1)], RetryPolicy(backoff_limit=0), T0)
    assert decision.run.reason == "BackoffLimitExceeded"


def test_permanent_failure_ends_the_run_at_once() -> None:
    run = new_run(start_time=T0, attempts=1, pod="iris-1-1")
    decision = t.decide_run("iris", run, [failed(1, "InvalidParams", False)], POLICY, T0)
    assert decision.run.phase == "Failed"
    assert decision.run.reason == "InvalidParams"
    assert decision.event is not None and decision.event[0] == "InvalidParams"


def test_pod_deleted_from_outside_is_a_failed_attempt_and_retried() -> None:
    run = new_run(start_time=T0, attempts=1, pod="iris-1-1", phase="Running")
    decision = t.decide_run("iris", run, [], POLICY, T0 + timedelta(seconds=5))
    assert decision.run.reason == "PodDeleted"
    assert decision.run.next_attempt_time == T0 + timedelta(seconds=15)
    assert decision.run.phase == "Pending"


def test_deadline_deletes_the_running_pod_and_fails_the_run() -> None:
    run = new_run(start_time=T0, attempts=1, pod="iris-1-1", phase="Running")
    decision = t.decide_run("iris", run, [pod(1, "Running")], POLICY, T0 + timedelta(seconds=600))
    assert decision.actions == [DeletePod("iris-1-1")]
    assert decision.run.phase == "Failed"
    assert decision.run.reason == "DeadlineExceeded"


def test_deadline_during_backoff_fails_without_deleting_anything() -> None:
    run = new_run(
        start_time=T0, attempts=1, pod="iris-1-1", next_attempt_time=T0 + timedelta(seconds=700)
    )
    decision = t.decide_run("iris", run, [failed(1)], POLICY, T0 + timedelta(seconds=601))
    assert decision.actions == []
    assert decision.run.reason == "DeadlineExceeded"


def test_backoff_wait_wakes_up_no_later_than_the_deadline() -> None:
    run = new_run(
        start_time=T0, attempts=1, pod="iris-1-1", next_attempt_time=T0 + timedelta(seconds=900)
    )
    decision = t.decide_run("iris", run, [failed(1)], POLICY, T0 + timedelta(seconds=590))
    assert decision.requeue_after == timedelta(seconds=10)


def test_pod_deadline_reason_is_reported_as_deadline_exceeded() -> None:
    run = new_run(start_time=T0, attempts=1, pod="iris-1-1")
    observed = pod(1, "Failed", reason="DeadlineExceeded")
    decision = t.decide_run("iris", run, [observed], RetryPolicy(3), T0)
    assert decision.run.reason == "DeadlineExceeded"


def test_no_deadline_means_no_timed_requeue() -> None:
    decision = t.decide_run("iris", new_run(), [], RetryPolicy(backoff_limit=1), T0)
    assert decision.actions == [CreatePod("iris-1-1", 1, None)]
    assert decision.requeue_after is None


def test_a_failing_dataset_uses_exactly_backoff_limit_plus_one_pods() -> None:
    """Drive the state machine like the adapter would, against a world where pods fail."""
    policy = RetryPolicy(backoff_limit=3)
    run = new_run()
    world: dict[str, PodObservation] = {}
    now = T0
    for _ in range(50):
        decision = t.decide_run("iris", run, list(world.values()), policy, now)
        run = decision.run
        for action in decision.actions:
            assert isinstance(action, CreatePod)
            assert action.name not in world, "a pod name is never reused"
            world[action.name] = failed(action.attempt)
        if run.phase == "Failed":
            break
        now += decision.requeue_after or timedelta(seconds=1)
    assert run.reason == "BackoffLimitExceeded"
    assert sorted(world) == ["iris-1-1", "iris-1-2", "iris-1-3", "iris-1-4"]
    # 10 + 20 + 40 seconds of backoff between the four attempts.
    assert now - T0 >= timedelta(seconds=70)


# --- the trainer's phase ----------------------------------------------------------------

PHASE_T0 = 1_780_000_000


def phase_line(event: str, phase: str, ts: float) -> str:
    return json.dumps({"ts": ts, "level": "info", "event": event, "phase": phase})


def test_a_running_pods_log_gives_the_run_its_trainers_phase() -> None:
    run = new_run(attempts=1, pod="iris-1-1", phase="Running", start_time=T0)
    log = "\n".join([phase_line("phase.start", "load", PHASE_T0), "noise"])
    running = pod(1, "Running")
    decision = t.decide_run("iris", run, [running], RetryPolicy(3), T0, logs={"iris-1-1": log})
    trainer = decision.run.trainer
    assert trainer is not None and (trainer.pod, trainer.phase) == ("iris-1-1", "load")
    assert trainer.phase_start_time == datetime.fromtimestamp(PHASE_T0, UTC)
    # The next pass reads nothing (not due) or the same tail: the same record, no write.
    assert t.decide_run("iris", decision.run, [running], RetryPolicy(3), T0).run == decision.run
    again = t.decide_run(
        "iris", decision.run, [running], RetryPolicy(3), T0, logs={"iris-1-1": log}
    )
    assert again.run == decision.run and again.event is None


def test_a_finished_run_keeps_its_reports_phase_timeline() -> None:
    run = new_run(attempts=1, pod="iris-1-1", phase="Running", start_time=T0)
    report = {
        **SUCCESS_REPORT,
        "phaseStarts": {"load": PHASE_T0, "fit": PHASE_T0 + 1, "upload": PHASE_T0 + 3},
        "durationSeconds": {"load": 1.0, "fit": 2.0, "upload": 0.5},
    }
    done = pod(1, "Succeeded", message=json.dumps(report))
    decision = t.decide_run("iris", run, [done], RetryPolicy(3), T0)
    assert decision.run.phase == "Succeeded"
    trainer = decision.run.trainer
    assert trainer is not None and trainer.finished and trainer.phase == "upload"
    assert [(x.phase, x.seconds) for x in trainer.phases] == [
        ("load", 1.0),
        ("fit", 2.0),
        ("upload", 0.5),
    ]
    # Over: later passes leave the record as it is.
    assert t.decide_run("iris", decision.run, [done], RetryPolicy(3), T0).run == decision.run


def test_a_retry_shows_the_new_attempts_trainer_not_the_failed_ones() -> None:
    run = new_run(attempts=1, pod="iris-1-1", phase="Running", start_time=T0)
    failure = json.dumps(
        {**json.loads(failure_report("DatasetUnavailable", True)),
         "phaseStarts": {"load": PHASE_T0}, "durationSeconds": {"load": 30.0}}
    )  # fmt: skip
    first_failed = pod(1, "Failed", message=failure, exit_code=3)
    waiting = t.decide_run("iris", run, [first_failed], RetryPolicy(3), T0)
    assert waiting.run.trainer is not None and waiting.run.trainer.phase == "load"  # why it failed
    later = T0 + timedelta(minutes=1)
    retried = t.decide_run("iris", waiting.run, [first_failed], RetryPolicy(3), later)
    assert [type(a) for a in retried.actions] == [CreatePod]
    assert retried.run.trainer is None
