"""The whole TrainingJob: which runs to start, and the status that sums its runs up.

`core.training.decide_run` steps one run; this module decides around it, purely:

- `plan_triggers`: does a new numbered run start now? (first run on create, a spec change,
  the cron schedule, a dataset digest/ETag change, a `kiln.dev/retrain` annotation), under
  the concurrency policy and `suspend`;
- `summarize`: the TrainingJob status (top-level fields mirror the newest run) and its
  kstatus conditions, from the run records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kiln.api.common import Condition
from kiln.api.training_job import RunRecord, TrainingJob, TrainingJobStatus
from kiln.api.wire import (
    ATTEMPT_STARTED,
    FAILED,
    RETRAIN_ANNOTATION,
    RETRAIN_HANDLED_ANNOTATION,
    RUN_REPLACED,
    RUN_SKIPPED,
    RUN_STARTED,
    SUCCEEDED,
    SUSPENDED,
)
from kiln.core import conditions as cond
from kiln.core.lineage import params_hash
from kiln.core.schedule import (
    active_runs,
    check_schedule,
    dataset_changed,
    decide_trigger,
    next_run_number,
    runs_to_prune,
    schedule_error,
)

# Events of these reasons are Normal: a run starting, progressing or succeeding. Every other
# reason (a failed or retried attempt, a skipped trigger, a cancelled run) is a Warning.
NORMAL_REASONS = frozenset({SUCCEEDED, ATTEMPT_STARTED, "Pending", "Running", RUN_STARTED})

# A requeue lands this much after the moment it waits for, so that the pass at that moment
# sees the deadline or backoff as past rather than a few microseconds early.
REQUEUE_MARGIN_SECONDS = 0.05


@dataclass(frozen=True)
class TriggerPlan:
    """What the triggers ask for at `now`."""

    # The trigger that starts a new run now (None: no new run).
    start: str | None = None
    # Active runs to cancel first (concurrencyPolicy Replace).
    cancel: list[int] = field(default_factory=list)
    # Status bookkeeping to write whether or not a run starts.
    last_schedule_time: datetime | None = None
    dataset_digest: str | None = None
    observed_generation: int | None = None
    # The `kiln.dev/retrain` value handled so far, this pass's included: status records it.
    retrain_handled: str | None = None
    # The training spec hash to record (see `training_spec_hash`).
    trained_spec_hash: str | None = None
    # When the triggers need a look again (the next cron time).
    next_check: datetime | None = None
    events: list[tuple[str, str]] = field(default_factory=list)
    # A spec the operator cannot act on (bad cron): Stalled with this message.
    stalled: str | None = None


def training_spec_hash(job: TrainingJob) -> str:
    """What a run trains with: the whole spec but its triggers.

    A generation bump that leaves this unchanged (a new schedule, suspend on or off) is not
    a reason to retrain, as editing a CronJob's schedule does not run its Job.
    """
    spec = job.spec.model_dump(mode="json", by_alias=True, exclude={"triggers"})
    return params_hash(spec)


def plan_triggers(
    job: TrainingJob,
    now: datetime,
    observed_digest: str | None = None,
    runs: Sequence[RunRecord] | None = None,
) -> TriggerPlan:
    """Which trigger (if any) starts a run now, under the concurrency policy.

    `runs`: the job's runs as this pass has observed them (default: as the status records
    them); the concurrency policy judges a trigger against the runs still in flight now.
    """
    status = job.status
    current_runs = list(status.runs if runs is None else runs)
    triggers = job.spec.triggers
    generation = job.metadata.generation
    annotations = job.metadata.annotations
    suspended = triggers is not None and triggers.suspend
    policy = triggers.concurrency_policy if triggers is not None else "Forbid"

    last_schedule = status.last_schedule_time
    digest = status.dataset_digest
    observed_generation = status.observed_generation
    next_check: datetime | None = None
    events: list[tuple[str, str]] = []
    fired: list[str] = []

    if triggers is not None and triggers.schedule:
        error = schedule_error(triggers.schedule)
        if error is not None:
            return TriggerPlan(stalled=f"spec.triggers.schedule: {error}")
        created = job.metadata.creation_timestamp or now
        check = check_schedule(triggers.schedule, last_schedule, created, now)
        next_check = check.next_time
        if check.due is not None:
            fired.append("schedule")
            last_schedule = check.due

    if triggers is not None and triggers.dataset_change is not None:
        if dataset_changed(digest, observed_digest):
            fired.append("datasetChange")
        if observed_digest is not None:
            digest = observed_digest

    retrain = annotations.get(RETRAIN_ANNOTATION)
    retrain_handled = status.retrain_handled
    if retrain and not retrain_was_handled(job):
        fired.append("manual")
        retrain_handled = retrain

    first_run = status.run == 0 and not status.runs
    spec_hash = training_spec_hash(job)
    generation_moved = generation is not None and observed_generation != generation
    trained = status.trained_spec_hash
    spec_changed = not first_run and generation_moved and trained != spec_hash
    if generation_moved and not first_run and not spec_changed:
        observed_generation = generation  # only the triggers changed: nothing to train

    start: str | None = None
    cancel: list[int] = []
    if first_run:
        observed_generation = generation
        if suspended:
            events.append((SUSPENDED, "spec.triggers.suspend is set: no run starts"))
        else:
            start = "create"
    elif spec_changed or fired:
        decision = decide_trigger(policy, current_runs, suspended)
        label = "spec" if spec_changed else fired[0]
        if decision.start:
            start = label
            cancel = decision.cancel_runs
            observed_generation = generation
        elif spec_changed and decision.reason == "Forbidden":
            # A new spec is never dropped: it runs once the active run is over.
            events.append((RUN_SKIPPED, "spec changed during a run: a new run follows it"))
        else:
            observed_generation = generation
            what = ", ".join(["spec" if spec_changed else "", *fired]).strip(", ")
            events.append((RUN_SKIPPED, f"trigger {what} skipped: {decision.reason}"))
    return TriggerPlan(
        start=start,
        cancel=cancel,
        trained_spec_hash=spec_hash if start is not None else trained,
        last_schedule_time=last_schedule,
        dataset_digest=digest,
        observed_generation=observed_generation,
        retrain_handled=retrain_handled,
        next_check=next_check,
        events=events,
    )


def retrain_was_handled(job: TrainingJob) -> bool:
    """Whether the job's `kiln.dev/retrain` value has been acted on already.

    The status records it (`retrainHandled`), in the same write as the run it started or
    the skip it caused, so no crash can separate the effect from its bookkeeping. The
    `kiln.dev/retrain-handled` annotation is where earlier operators recorded it, in a second
    write: honoured so that an upgrade does not run an old request again.
    """
    retrain = job.metadata.annotations.get(RETRAIN_ANNOTATION)
    return retrain in (
        job.status.retrain_handled,
        job.metadata.annotations.get(RETRAIN_HANDLED_ANNOTATION),
    )


def new_run(status: TrainingJobStatus, trigger: str, now: datetime) -> RunRecord:
    """The record of a run that starts now, numbered after every run ever started."""
    return RunRecord(
        run=next_run_number(status.run, status.runs),
        phase="Pending",
        trigger=trigger,
        attempts=0,
        start_time=now,
    )


def cancel_run(run: RunRecord, now: datetime) -> RunRecord:
    return run.model_copy(
        update={
            "phase": "Failed",
            "reason": RUN_REPLACED,
            "message": "replaced by a newer run (concurrencyPolicy Replace)",
            "completion_time": now,
            "next_attempt_time": None,
        }
    )


def prune(runs: list[RunRecord], job: TrainingJob) -> tuple[list[RunRecord], list[int]]:
    """Runs kept in the status, and the run numbers whose pods go (history limits)."""
    triggers = job.spec.triggers
    succeeded_limit = triggers.successful_runs_history_limit if triggers else 3
    failed_limit = triggers.failed_runs_history_limit if triggers else 1
    # The newest run is always kept: the status mirrors it.
    newest = max((r.run for r in runs), default=0)
    gone = [n for n in runs_to_prune(runs, succeeded_limit, failed_limit) if n != newest]
    return [r for r in runs if r.run not in gone], gone


def summarize(
    job: TrainingJob,
    runs: list[RunRecord],
    now: datetime,
    *,
    plan: TriggerPlan | None = None,
) -> TrainingJobStatus:
    """The status of the job: the newest run's fields on top, and the conditions."""
    previous = job.status
    generation = job.metadata.generation
    runs = sorted(runs, key=lambda r: r.run)
    newest = runs[-1] if runs else None
    succeeded = [r for r in runs if r.phase == "Succeeded"]
    last_success = succeeded[-1] if succeeded else None
    conditions: list[Condition] = list(previous.conditions)
    observed = plan.observed_generation if plan else previous.observed_generation

    if newest is None:
        conditions = cond.mark_reconciling(
            conditions, SUSPENDED, "no run has started", now, generation
        )
    elif active_runs(runs):
        active = active_runs(runs)[-1]
        state = "Retrying" if active.next_attempt_time is not None else str(active.phase)
        detail = active.message or f"run {active.run} attempt {active.attempts} is {active.phase}"
        conditions = cond.mark_reconciling(conditions, state, detail, now, observed)
    elif newest.phase == "Succeeded":
        message = f"run {newest.run} succeeded"
        if newest.model_version:
            message += f" and registered {newest.model_version}"
        conditions = cond.mark_ready(conditions, "Succeeded", message, now, observed)
        conditions = cond.remove_condition(conditions, FAILED)
    else:
        reason = newest.reason or "Failed"
        message = newest.message or f"run {newest.run} failed"
        # Stalled as kstatus means it: nothing more happens until the spec changes or a
        # trigger starts another run, so Flux and `kubectl wait` fail now, not at a timeout.
        conditions = cond.mark_stalled(conditions, reason, message, now, observed)
        conditions = cond.set_condition(conditions, FAILED, "True", reason, message, now, observed)

    return TrainingJobStatus(
        observed_generation=observed,
        phase=newest.phase if newest else None,
        run=max([previous.run, *(r.run for r in runs)]),
        attempts=newest.attempts if newest else 0,
        current_pod=newest.pod if newest else None,
        start_time=newest.start_time if newest else None,
        completion_time=newest.completion_time if newest else None,
        next_attempt_time=newest.next_attempt_time if newest else None,
        metrics=previous.metrics,
        model_version=(last_success.model_version if last_success else None)
        or previous.model_version,
        dataset_digest=plan.dataset_digest if plan else previous.dataset_digest,
        last_schedule_time=plan.last_schedule_time if plan else previous.last_schedule_time,
        trained_spec_hash=plan.trained_spec_hash if plan else previous.trained_spec_hash,
        retrain_handled=plan.retrain_handled if plan else previous.retrain_handled,
        runs=runs,
        progress=newest.progress if newest else None,
        trainer=newest.trainer if newest else None,
        conditions=conditions,
    )


def requeue_delay(
    delays: list[timedelta | None], next_check: datetime | None, now: datetime
) -> float | None:
    """The soonest of the runs' requeue delays and the next trigger check, in seconds."""
    seconds = [d.total_seconds() for d in delays if d is not None]
    if next_check is not None:
        seconds.append(max((next_check - now).total_seconds(), 0.0))
    return max(min(seconds), 0.0) if seconds else None


def is_warning(reason: str) -> bool:
    """Whether an Event of this reason is a Warning (see NORMAL_REASONS)."""
    return reason not in NORMAL_REASONS


def run_started_event(run: RunRecord) -> tuple[str, str]:
    return RUN_STARTED, f"run {run.run} started (trigger: {run.trigger})"


def run_replaced_event(run: RunRecord) -> tuple[str, str]:
    return RUN_REPLACED, f"run {run.run} cancelled: a new run replaces it"


def run_event(run: RunRecord, reason: str, message: str) -> tuple[str, str]:
    """The Event of a run's step, naming the run and, once registered, its ModelVersion."""
    if reason == SUCCEEDED and run.model_version:
        message = f"{message}; registered {run.model_version}"
    return reason, f"run {run.run}: {message}"


def next_look(
    delays: list[timedelta | None], next_check: datetime | None, now: datetime
) -> float | None:
    """Seconds until the reconcile must look again (None: only when something changes)."""
    delay = requeue_delay(delays, next_check, now)
    return None if delay is None else delay + REQUEUE_MARGIN_SECONDS


def needs_pods(job: TrainingJob) -> bool:
    """Whether a pass must list the job's pods: an active run has had an attempt (whose pod
    is observed) or is searching (its trial pods are), older runs may have pods to prune,
    or the job searches. A first pass of a plain job (at most one run and no attempt yet)
    has none to see, and spares the apiserver the LIST."""
    runs = job.status.runs
    return (
        any(r.attempts > 0 or r.search is not None for r in active_runs(runs))
        or len(runs) > 1
        or job.spec.search is not None
    )


def poll_delay(job: TrainingJob, next_poll_in: float | None) -> timedelta | None:
    """How long until the dataset is probed again (`next_poll_in` seconds, from the last
    probe; None before the first): nothing to wait for without a dataset-change trigger,
    and a probe already due waits for nothing."""
    triggers = job.spec.triggers
    if next_poll_in is None or triggers is None or triggers.dataset_change is None:
        return None
    return timedelta(seconds=max(next_poll_in, 0.0))
