from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support.builders import TrainingJobBuilder

from kiln.api import wire
from kiln.api.training_job import RunRecord, TrainingJob
from kiln.core import trainingjob as t

pytestmark = pytest.mark.unit

T0 = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)


def job(
    status: dict[str, Any] | None = None,
    triggers: dict[str, Any] | None = None,
    generation: int = 1,
    annotations: dict[str, str] | None = None,
) -> TrainingJob:
    built = (
        TrainingJobBuilder("iris")
        .uid("u1")
        .generation(generation)
        .created(T0.isoformat())
        .annotations(annotations or {})
        .status(**(status or {}))
    )
    if triggers is not None:
        built.triggers(**triggers)
    return TrainingJob.model_validate(built.obj())


def run(number: int, phase: str, **extra: Any) -> dict[str, Any]:
    return {"run": number, "phase": phase, "attempts": 1, **extra}


def test_a_new_job_starts_run_one() -> None:
    plan = t.plan_triggers(job(), T0)
    assert plan.start == "create"
    assert plan.observed_generation == 1
    assert t.new_run(job().status, "create", T0).run == 1


def test_a_suspended_new_job_starts_nothing() -> None:
    plan = t.plan_triggers(job(triggers={"suspend": True}), T0)
    assert plan.start is None
    assert plan.events[0][0] == wire.SUSPENDED


def test_nothing_starts_once_the_run_is_recorded() -> None:
    done = job({"run": 1, "observedGeneration": 1, "runs": [run(1, "Succeeded")]})
    assert t.plan_triggers(done, T0).start is None


def test_a_spec_change_starts_a_run_after_the_active_one_under_forbid() -> None:
    busy = job({"run": 1, "observedGeneration": 1, "runs": [run(1, "Running")]}, generation=2)
    plan = t.plan_triggers(busy, T0)
    assert plan.start is None
    assert plan.observed_generation == 1  # not consumed: it runs later
    idle = job({"run": 1, "observedGeneration": 1, "runs": [run(1, "Succeeded")]}, generation=2)
    plan = t.plan_triggers(idle, T0)
    assert (plan.start, plan.observed_generation) == ("spec", 2)


def test_a_trigger_is_judged_against_the_runs_as_this_pass_left_them() -> None:
    """The status still says Running, but this pass saw the run succeed: not Forbidden."""
    stale = job(
        {"run": 1, "observedGeneration": 1, "runs": [run(1, "Running")]},
        annotations={t.RETRAIN_ANNOTATION: "again"},
    )
    assert t.plan_triggers(stale, T0).events[0][0] == wire.RUN_SKIPPED
    fresh = t.plan_triggers(stale, T0, runs=[t.RunRecord.model_validate(run(1, "Succeeded"))])
    assert (fresh.start, fresh.events, fresh.retrain_handled) == ("manual", [], "again")


def test_the_first_run_records_the_spec_it_trains() -> None:
    plan = t.plan_triggers(job(), T0)
    assert plan.trained_spec_hash == t.training_spec_hash(job())
    status = t.summarize(job(), [t.new_run(job().status, "create", T0)], T0, plan=plan)
    assert status.trained_spec_hash == plan.trained_spec_hash


def test_editing_only_the_triggers_starts_no_run() -> None:
    before = job(triggers={"schedule": "@daily"})
    trained = t.training_spec_hash(before)
    for triggers in ({"schedule": "@hourly"}, {"schedule": "@daily", "suspend": True}, None):
        edited = job(
            {
                "run": 1,
                "observedGeneration": 1,
                "trainedSpecHash": trained,
                "runs": [run(1, "Succeeded")],
            },
            triggers=triggers,
            generation=2,
        )
        assert t.training_spec_hash(edited) == trained
        plan = t.plan_triggers(edited, T0)
        assert plan.start is None, triggers
        assert plan.observed_generation == 2  # seen, and nothing to do
        assert plan.trained_spec_hash == trained and plan.events == []


def test_a_training_change_made_while_suspended_runs_when_resumed() -> None:
    suspended = job(
        {"run": 1, "observedGeneration": 1, "runs": [run(1, "Succeeded")]},
        triggers={"suspend": True},
        generation=2,
    )
    # What run 1 trained differs from the spec now: it was edited while suspended.
    suspended.status.trained_spec_hash = "sha256:older"
    plan = t.plan_triggers(suspended, T0)
    assert plan.start is None and plan.events[0][0] == wire.RUN_SKIPPED
    assert plan.trained_spec_hash == "sha256:older"
    resumed = job(
        {
            "run": 1,
            "observedGeneration": 2,
            "trainedSpecHash": "sha256:older",
            "runs": [run(1, "Succeeded")],
        },
        triggers={"suspend": False},
        generation=3,
    )
    plan = t.plan_triggers(resumed, T0)
    assert plan.start == "spec" and plan.trained_spec_hash == t.training_spec_hash(resumed)


def test_replace_cancels_the_active_run() -> None:
    busy = job(
        {"run": 1, "observedGeneration": 1, "runs": [run(1, "Running")]},
        triggers={"concurrencyPolicy": "Replace"},
        generation=2,
    )
    plan = t.plan_triggers(busy, T0)
    assert (plan.start, plan.cancel) == ("spec", [1])
    cancelled = t.cancel_run(RunRecord.model_validate(run(1, "Running")), T0)
    assert (cancelled.phase, cancelled.reason) == ("Failed", wire.RUN_REPLACED)


def test_the_schedule_fires_once_for_missed_times() -> None:
    scheduled = job(
        {"run": 1, "observedGeneration": 1, "runs": [run(1, "Succeeded")]},
        triggers={"schedule": "0 * * * *"},
    )
    later = T0 + timedelta(hours=5, minutes=1)
    plan = t.plan_triggers(scheduled, later)
    assert plan.start == "schedule"
    assert plan.last_schedule_time == datetime(2026, 5, 1, 17, 0, tzinfo=UTC)
    assert plan.next_check == datetime(2026, 5, 1, 18, 0, tzinfo=UTC)


def test_a_schedule_during_a_forbidden_run_is_skipped_and_recorded() -> None:
    scheduled = job(
        {"run": 1, "observedGeneration": 1, "runs": [run(1, "Running")]},
        triggers={"schedule": "0 * * * *"},
    )
    plan = t.plan_triggers(scheduled, T0 + timedelta(hours=1))
    assert plan.start is None
    assert plan.last_schedule_time == datetime(2026, 5, 1, 13, 30, tzinfo=UTC).replace(minute=0)
    assert plan.events[0][0] == wire.RUN_SKIPPED


def test_a_dataset_change_starts_a_run_and_the_first_digest_is_a_baseline() -> None:
    base = {"run": 1, "observedGeneration": 1, "runs": [run(1, "Succeeded")]}
    watched = job(base, triggers={"datasetChange": {"pollIntervalSeconds": 60}})
    first = t.plan_triggers(watched, T0, observed_digest="etag:a")
    assert (first.start, first.dataset_digest) == (None, "etag:a")
    known = job({**base, "datasetDigest": "etag:a"}, triggers={"datasetChange": {}})
    assert t.plan_triggers(known, T0, observed_digest="etag:a").start is None
    assert t.plan_triggers(known, T0, observed_digest=None).start is None
    changed = t.plan_triggers(known, T0, observed_digest="etag:b")
    assert (changed.start, changed.dataset_digest) == ("datasetChange", "etag:b")


def test_the_retrain_annotation_starts_one_run_per_value() -> None:
    base = {"run": 1, "observedGeneration": 1, "runs": [run(1, "Succeeded")]}
    asked = job(base, annotations={t.RETRAIN_ANNOTATION: "x"})
    plan = t.plan_triggers(asked, T0)
    assert (plan.start, plan.retrain_handled) == ("manual", "x")
    # Handled is read from the status, which records it in the same write as the new run.
    started = t.summarize(asked, [RunRecord.model_validate(run(2, "Pending"))], T0, plan=plan)
    assert started.retrain_handled == "x"
    handled = job(started.to_wire(), annotations={t.RETRAIN_ANNOTATION: "x"})
    assert t.plan_triggers(handled, T0).start is None
    assert t.plan_triggers(handled, T0).retrain_handled == "x"  # and stays recorded
    over = started.to_wire() | {"runs": [run(1, "Succeeded"), run(2, "Succeeded")]}
    again = job(over, annotations={t.RETRAIN_ANNOTATION: "y"})
    assert t.plan_triggers(again, T0).start == "manual"


def test_a_retrain_value_handled_by_an_earlier_operator_does_not_run_again() -> None:
    """Before the status recorded it, a second write put it in `kiln.dev/retrain-handled`."""
    base = {"run": 1, "observedGeneration": 1, "runs": [run(1, "Succeeded")]}
    handled = job(base, annotations={t.RETRAIN_ANNOTATION: "x", t.RETRAIN_HANDLED_ANNOTATION: "x"})
    assert t.plan_triggers(handled, T0).start is None


def test_a_retrain_skipped_under_forbid_is_recorded_as_handled() -> None:
    """Skipped once with a RunSkipped Event, never again when the run is over."""
    base = {"run": 1, "observedGeneration": 1, "runs": [run(1, "Running")]}
    asked = job(base, annotations={t.RETRAIN_ANNOTATION: "x"})
    plan = t.plan_triggers(asked, T0)
    assert plan.start is None and plan.retrain_handled == "x"
    assert [reason for reason, _ in plan.events] == [wire.RUN_SKIPPED]


def test_an_invalid_cron_stalls() -> None:
    """The CRD refuses it now; a job admitted by an older CRD still gets a clear Stalled."""
    admitted_earlier = job(triggers={"schedule": "* * * * *"})
    admitted_earlier.spec.triggers.schedule = "61 * * * *"  # type: ignore[union-attr]
    plan = t.plan_triggers(admitted_earlier, T0)
    assert plan.stalled is not None and "schedule" in plan.stalled


def test_new_runs_never_reuse_a_number() -> None:
    status = job({"run": 7, "runs": [run(5, "Succeeded")]}).status
    assert t.new_run(status, "manual", T0).run == 8


def test_prune_keeps_the_history_limits_and_the_newest_run() -> None:
    runs = [RunRecord.model_validate(run(n, "Succeeded")) for n in range(1, 6)]
    runs.append(RunRecord.model_validate(run(6, "Failed")))
    runs.append(RunRecord.model_validate(run(7, "Failed")))
    kept, gone = t.prune(runs, job(triggers={"successfulRunsHistoryLimit": 2}))
    assert gone == [1, 2, 3, 6]
    assert [r.run for r in kept] == [4, 5, 7]


def test_summary_of_a_success() -> None:
    j = job({"run": 1})
    runs = [RunRecord.model_validate(run(1, "Succeeded", modelVersion="iris-v1"))]
    status = t.summarize(j, runs, T0, plan=t.plan_triggers(j, T0))
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("True", "Succeeded")
    assert status.model_version == "iris-v1"
    assert status.phase == "Succeeded"


def test_summary_of_a_failure_and_of_a_retry() -> None:
    j = job({"run": 1})
    failed = [RunRecord.model_validate(run(1, "Failed", reason="BackoffLimitExceeded"))]
    status = t.summarize(j, failed, T0)
    types = {c.type: (c.status, c.reason) for c in status.conditions}
    assert types["Ready"] == ("False", "BackoffLimitExceeded")
    assert types["Failed"] == ("True", "BackoffLimitExceeded")
    retrying = [
        RunRecord.model_validate(run(1, "Pending", nextAttemptTime=T0.isoformat(), message="m"))
    ]
    status = t.summarize(j, retrying, T0)
    types = {c.type: (c.status, c.reason) for c in status.conditions}
    assert types["Reconciling"] == ("True", "Retrying")


def test_requeue_delay_is_the_soonest() -> None:
    delays = [timedelta(seconds=30), None, timedelta(seconds=5)]
    assert t.requeue_delay(delays, T0 + timedelta(seconds=2), T0) == 2
    assert t.requeue_delay([None], None, T0) is None


def test_the_next_look_lands_just_after_the_moment_it_waits_for() -> None:
    # A pass exactly at a deadline would still see it as a few microseconds away.
    soonest = t.next_look([timedelta(seconds=30), timedelta(seconds=5)], None, T0)
    assert soonest == 5 + t.REQUEUE_MARGIN_SECONDS
    assert t.next_look([None], None, T0) is None


@pytest.mark.parametrize(
    ("reason", "warning"),
    [
        ("RunStarted", False),
        ("AttemptStarted", False),
        ("Running", False),
        ("Succeeded", False),
        ("Retrying", True),
        ("BackoffLimitExceeded", True),
        ("DeadlineExceeded", True),
        ("RunSkipped", True),
        ("Replaced", True),
        ("InvalidSpec", True),
    ],
)
def test_only_progress_and_success_events_are_normal(reason: str, warning: bool) -> None:
    assert t.is_warning(reason) is warning


def test_run_events_name_the_run_and_the_registered_version() -> None:
    registered = RunRecord(run=3, phase="Succeeded", model_version="iris-v7")
    assert t.run_event(registered, "Succeeded", "training finished") == (
        "Succeeded",
        "run 3: training finished; registered iris-v7",
    )
    failed = RunRecord(run=3, phase="Failed")
    assert t.run_event(failed, "DeadlineExceeded", "too slow") == (
        "DeadlineExceeded",
        "run 3: too slow",
    )
    started = RunRecord(run=4, phase="Pending", trigger="schedule")
    assert t.run_started_event(started) == ("RunStarted", "run 4 started (trigger: schedule)")
    assert t.run_replaced_event(started)[0] == "Replaced"


def test_pods_are_listed_once_a_run_has_had_an_attempt_or_older_runs_may_have_pods() -> None:
    def runs(*records: tuple[int, str, int]) -> TrainingJob:
        return job({"runs": [{"run": n, "phase": p, "attempts": a} for n, p, a in records]})

    assert not t.needs_pods(job())
    assert not t.needs_pods(runs((1, "Pending", 0)))  # the first run, not started yet
    assert t.needs_pods(runs((1, "Running", 1)))
    assert not t.needs_pods(runs((1, "Succeeded", 1)))  # nothing active, nothing to prune
    assert t.needs_pods(runs((1, "Succeeded", 1), (2, "Pending", 0)))
    searching = job({"runs": [{"run": 1, "phase": "Running", "attempts": 0, "search": {}}]})
    assert t.needs_pods(searching)  # its trial pods are observed before the run's own


def test_the_next_dataset_probe_is_waited_for_only_with_a_dataset_change_trigger() -> None:
    watched = job(triggers={"datasetChange": {"pollIntervalSeconds": 60}})
    assert t.poll_delay(watched, 42.5) == timedelta(seconds=42.5)
    assert t.poll_delay(watched, -3.0) == timedelta(0)  # already due
    assert t.poll_delay(watched, None) is None  # not probed yet: the pass probes now
    assert t.poll_delay(job(), 42.5) is None
    assert t.poll_delay(job(triggers={"schedule": "@daily"}), 42.5) is None
