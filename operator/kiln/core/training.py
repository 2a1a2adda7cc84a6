"""The training state machine: pod observations in, the next step of a run out.

One TrainingJob run is a sequence of attempts, one pod each, like a batch/v1 Job:
a failed attempt is retried after an exponential backoff (10 s · 2^n, capped at 5 min) up
to `backoffLimit` retries; `activeDeadlineSeconds` bounds the whole run; a pod deleted by
someone else counts as a failed attempt. Failures the trainer knows to be permanent
(invalid params, a digest mismatch…) end the run at once, since a retry cannot fix them.

Everything here is pure: the adapter lists the run's pods, turns each into a
`PodObservation`, calls `decide_run` and carries out the returned action.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from kiln.api.trainer_progress import TrainerProgress
from kiln.api.training_job import RunRecord, TrainingPhase
from kiln.api.wire import (
    ATTEMPT_STARTED,
    BACKOFF_LIMIT_EXCEEDED,
    DEADLINE_EXCEEDED,
    INVALID_RESULT,
    OUT_OF_MEMORY,
    POD_DELETED,
    POD_EVICTED,
    SUCCEEDED,
    TRAINER_FAILED,
)
from kiln.contract.train_report import (
    Reason,
    TrainerFailure,
    TrainerSuccess,
    TrialSuccess,
    parse_termination_message,
)
from kiln.core.progress import trainer_progress

# Every reason a run can end Failed with (bounded: the operator's own and the trainer's).
RUN_FAILURE_REASONS: tuple[str, ...] = (
    BACKOFF_LIMIT_EXCEEDED,
    DEADLINE_EXCEEDED,
    POD_DELETED,
    TRAINER_FAILED,
    OUT_OF_MEMORY,
    INVALID_RESULT,
    POD_EVICTED,
    *(reason.label for reason in Reason),
)

# The trainer's exit codes: (reason, retryable). The exit code still tells why when the
# termination message is lost.
TRAINER_EXIT_CODES: dict[int, tuple[str, bool]] = {
    reason.exit_code: (reason.label, reason.retryable) for reason in Reason
}

BACKOFF_BASE_SECONDS = 10
BACKOFF_CAP_SECONDS = 300

# Pod names double as hostnames (63 chars); label values have the same limit.
MAX_POD_NAME_LENGTH = 63
NAME_HASH_LENGTH = 8


# --- observations -----------------------------------------------------------------------

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]


@dataclass(frozen=True)
class ContainerTermination:
    """The trainer container's `state.terminated`."""

    exit_code: int
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class PodObservation:
    """What the adapter saw of one attempt's pod."""

    name: str
    attempt: int
    phase: PodPhase
    terminated: ContainerTermination | None = None
    # status.reason of the pod, e.g. DeadlineExceeded or Evicted.
    reason: str | None = None
    message: str | None = None
    # Gone from the apiserver, or deletionTimestamp set by someone other than the operator.
    deleted: bool = False


@dataclass(frozen=True)
class AttemptOutcome:
    """An attempt's state as the training state machine sees it."""

    state: Literal["Pending", "Running", "Succeeded", "Failed"]
    reason: str = ""
    message: str = ""
    retryable: bool = False
    result: TrainerSuccess | TrialSuccess | None = None


def attempt_outcome(pod: PodObservation) -> AttemptOutcome:
    """Classify one attempt from its pod."""
    if pod.deleted and pod.phase not in ("Succeeded", "Failed"):
        return AttemptOutcome(
            "Failed", POD_DELETED, f"pod {pod.name} was deleted before it finished", True
        )
    if pod.phase in ("Pending", "Unknown"):
        return AttemptOutcome("Pending")
    if pod.phase == "Running":
        return AttemptOutcome("Running")
    report = parse_termination_message(pod.terminated.message if pod.terminated else None)
    if pod.phase == "Succeeded":
        if isinstance(report, (TrainerSuccess, TrialSuccess)):
            return AttemptOutcome("Succeeded", SUCCEEDED, "training finished", result=report)
        return AttemptOutcome(
            "Failed",
            INVALID_RESULT,
            f"pod {pod.name} succeeded without a valid report in its termination message",
            retryable=False,
        )
    return _failed_outcome(pod, report)


def _failed_outcome(
    pod: PodObservation, report: TrainerSuccess | TrialSuccess | TrainerFailure | None
) -> AttemptOutcome:
    if pod.reason == DEADLINE_EXCEEDED:
        return AttemptOutcome(
            "Failed", DEADLINE_EXCEEDED, pod.message or "the pod exceeded its deadline", False
        )
    if isinstance(report, TrainerFailure):
        return AttemptOutcome("Failed", report.reason, report.message, report.retryable)
    terminated = pod.terminated
    if terminated is None:
        reason = POD_EVICTED if pod.reason == POD_EVICTED else TRAINER_FAILED
        return AttemptOutcome("Failed", reason, pod.message or f"pod {pod.name} failed", True)
    if terminated.reason == OUT_OF_MEMORY:
        return AttemptOutcome(
            "Failed", OUT_OF_MEMORY, "the trainer ran out of memory (raise resources.limits)", True
        )
    reason, retryable = TRAINER_EXIT_CODES.get(terminated.exit_code, (TRAINER_FAILED, True))
    detail = _last_line(terminated.message) or f"exit code {terminated.exit_code}"
    return AttemptOutcome("Failed", reason, detail, retryable)


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip()[:1024] if lines else ""


# --- names ------------------------------------------------------------------------------


def bounded_name(base: str, suffix: str = "", limit: int = MAX_POD_NAME_LENGTH) -> str:
    """`<base><suffix>`, with base shortened and made unique by a hash when too long."""
    if len(base) + len(suffix) <= limit:
        return base + suffix
    digest = hashlib.sha256(base.encode()).hexdigest()[:NAME_HASH_LENGTH]
    keep = limit - len(suffix) - NAME_HASH_LENGTH - 1
    head = base[:keep].rstrip("-.")
    return f"{head}-{digest}{suffix}"


def pod_name(training_job: str, run: int, attempt: int) -> str:
    """Deterministic pod name `<tj>-<run>-<attempt>`: a retried create finds the same pod."""
    return bounded_name(training_job, f"-{run}-{attempt}")


# --- retry and deadline -----------------------------------------------------------------


def backoff_delay(failed_attempts: int) -> timedelta:
    """Wait before the next attempt after `failed_attempts` (>= 1) failures, like a Job."""
    exponent = max(failed_attempts - 1, 0)
    seconds = BACKOFF_CAP_SECONDS if exponent >= 5 else BACKOFF_BASE_SECONDS * 2**exponent
    return timedelta(seconds=min(seconds, BACKOFF_CAP_SECONDS))


def deadline(start: datetime, active_deadline_seconds: int | None) -> datetime | None:
    if active_deadline_seconds is None:
        return None
    return start + timedelta(seconds=active_deadline_seconds)


# --- the decision -----------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    backoff_limit: int
    active_deadline_seconds: int | None = None


@dataclass(frozen=True)
class CreatePod:
    name: str
    attempt: int
    # Time left until the run's deadline, for the pod's own activeDeadlineSeconds.
    active_deadline_seconds: int | None


@dataclass(frozen=True)
class DeletePod:
    name: str


@dataclass(frozen=True)
class RegisterModel:
    """Create the ModelVersion for this run's result."""

    result: TrainerSuccess


@dataclass(frozen=True)
class TrialFinished:
    """A search trial's pod reported its objective (`kiln.core.search` records it)."""

    result: TrialSuccess


Action = CreatePod | DeletePod | RegisterModel | TrialFinished


@dataclass(frozen=True)
class RunDecision:
    run: RunRecord
    actions: list[Action] = field(default_factory=list)
    requeue_after: timedelta | None = None
    # Set when the run's phase changed: (reason, message) for an Event and the conditions.
    event: tuple[str, str] | None = None


TERMINAL_PHASES: frozenset[TrainingPhase] = frozenset({"Succeeded", "Failed"})


def decide_run(
    training_job: str,
    run: RunRecord,
    pods: list[PodObservation],
    policy: RetryPolicy,
    now: datetime,
    *,
    pod_names: Callable[[int], str] | None = None,
    trial: bool = False,
    logs: Mapping[str, str] | None = None,
) -> RunDecision:
    """The next step of one run, given every pod of that run the adapter could see.

    Idempotent: called again with the same inputs it returns the same decision, and a pod
    that exists although the status does not record it (the operator died between the
    create and the status write) is adopted instead of created twice.

    A search trial is stepped the same way (`kiln.core.search`): `pod_names` names its
    attempts' pods and `trial` says its pod reports a trial's result, not a model.

    `logs`: the log tails read this pass, by pod name; the current attempt's trainer phases
    (`run.trainer`) follow from them and, once its pod ended, from its report.
    """

    def name_of(attempt: int) -> str:
        if pod_names is not None:
            return pod_names(attempt)
        return pod_name(training_job, run.run, attempt)

    if run.phase in TERMINAL_PHASES:
        return RunDecision(run)
    start = run.start_time or now
    run = replace_run(run, start_time=start)
    latest_attempt = max([run.attempts, *(p.attempt for p in pods)])
    current = next((p for p in pods if p.attempt == latest_attempt), None)
    if latest_attempt > run.attempts:
        run = replace_run(run, attempts=latest_attempt, pod=current.name if current else run.pod)
    if current is not None:
        run = replace_run(run, trainer=_trainer(run.trainer, current, logs or {}))

    run_deadline = deadline(start, policy.active_deadline_seconds)
    if run_deadline is not None and now >= run_deadline:
        actions: list[Action] = []
        if current is not None and current.phase in ("Pending", "Running", "Unknown"):
            actions.append(DeletePod(current.name))
        return _finish(
            run,
            "Failed",
            DEADLINE_EXCEEDED,
            f"the run exceeded activeDeadlineSeconds={policy.active_deadline_seconds}",
            now,
            actions,
        )

    if latest_attempt == 0:
        return _create_attempt(name_of(1), run, 1, run_deadline, now)

    observed = current or PodObservation(
        name=run.pod or name_of(latest_attempt),
        attempt=latest_attempt,
        phase="Unknown",
        deleted=True,
    )
    outcome = attempt_outcome(observed)
    if outcome.state in ("Pending", "Running"):
        phase: TrainingPhase = "Running" if outcome.state == "Running" else "Pending"
        changed = phase != run.phase
        event = (phase, f"attempt {latest_attempt} is {phase.lower()}") if changed else None
        return RunDecision(
            replace_run(run, phase=phase),
            requeue_after=_until(run_deadline, now),
            event=event,
        )
    if outcome.state == "Succeeded" and outcome.result is not None:
        result = outcome.result
        action: Action
        if trial and isinstance(result, TrialSuccess):
            action = TrialFinished(result)
        elif not trial and isinstance(result, TrainerSuccess):
            action = RegisterModel(result)
        else:
            expected = "a trial's result" if trial else "a trained model"
            message = f"pod {observed.name} succeeded without reporting {expected}"
            return _finish(run, "Failed", INVALID_RESULT, message, now, [])
        finished = _finish(run, "Succeeded", SUCCEEDED, "training finished", now, [])
        return RunDecision(finished.run, [action], event=finished.event)
    return _after_failure(name_of, run, outcome, policy, run_deadline, now)


def _after_failure(
    name_of: Callable[[int], str],
    run: RunRecord,
    outcome: AttemptOutcome,
    policy: RetryPolicy,
    run_deadline: datetime | None,
    now: datetime,
) -> RunDecision:
    summary = f"attempt {run.attempts} failed: {outcome.reason}: {outcome.message}"
    if not outcome.retryable:
        return _finish(run, "Failed", outcome.reason, summary, now, [])
    if run.attempts > policy.backoff_limit:
        return _finish(
            run,
            "Failed",
            BACKOFF_LIMIT_EXCEEDED,
            f"{run.attempts} attempts failed (backoffLimit={policy.backoff_limit}); last {summary}",
            now,
            [],
        )
    if run.next_attempt_time is None:
        delay = backoff_delay(run.attempts)
        return RunDecision(
            replace_run(
                run,
                phase="Pending",
                next_attempt_time=now + delay,
                reason=outcome.reason,
                message=summary,
            ),
            requeue_after=delay,
            event=("Retrying", f"{summary}; retrying in {int(delay.total_seconds())}s"),
        )
    if now < run.next_attempt_time:
        wait = run.next_attempt_time - now
        until_deadline = _until(run_deadline, now)
        if until_deadline is not None:
            wait = min(wait, until_deadline)
        return RunDecision(run, requeue_after=wait)
    attempt = run.attempts + 1
    return _create_attempt(name_of(attempt), run, attempt, run_deadline, now)


def _create_attempt(
    name: str,
    run: RunRecord,
    attempt: int,
    run_deadline: datetime | None,
    now: datetime,
) -> RunDecision:
    remaining = None
    if run_deadline is not None:
        remaining = max(int((run_deadline - now).total_seconds()), 1)
    return RunDecision(
        replace_run(
            run, phase="Pending", attempts=attempt, pod=name, next_attempt_time=None, trainer=None
        ),
        [CreatePod(name, attempt, remaining)],
        requeue_after=_until(run_deadline, now),
        event=(ATTEMPT_STARTED, f"created pod {name} for attempt {attempt}"),
    )


def _finish(
    run: RunRecord,
    phase: TrainingPhase,
    reason: str,
    message: str,
    now: datetime,
    actions: list[Action],
) -> RunDecision:
    return RunDecision(
        replace_run(
            run,
            phase=phase,
            reason=None if phase == "Succeeded" else reason,
            message=message,
            completion_time=now,
            next_attempt_time=None,
        ),
        actions,
        event=(reason, message),
    )


def _trainer(
    previous: TrainerProgress | None, pod: PodObservation, logs: Mapping[str, str]
) -> TrainerProgress | None:
    ended = pod.phase in ("Succeeded", "Failed")
    return trainer_progress(
        previous,
        pod.name,
        log_text=logs.get(pod.name) if pod.phase == "Running" else None,
        ended=ended,
        termination_message=pod.terminated.message if pod.terminated is not None else None,
    )


def _until(moment: datetime | None, now: datetime) -> timedelta | None:
    return None if moment is None else max(moment - now, timedelta(0))


def replace_run(run: RunRecord, **changes: Any) -> RunRecord:
    """A copy of the run record with the given fields changed."""
    return run.model_copy(update=changes)
