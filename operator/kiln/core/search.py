"""Hyperparameter search, purely: the space, the strategies, trials to pods, the winner.

A run of a TrainingJob with `spec.search` has two stages. **Searching**: trial k (0, 1, …,
total-1) tries the values `trial_params(search, seed, k)` in pods named
`<tj>-<run>-t<k>-<attempt>`, at most `parallelism` trials at once, each stepped by
`core.training.decide_run` with the run's retry policy and deadline. **Training**: once
every trial has finished, the best trial's values are trained once more as the run's own
attempts (`<tj>-<run>-<attempt>`, as any run), evaluated on the test split and registered.

Exactly once: trial numbers are given out in order (`SearchStatus.started`), and a trial's
values are a function of (space, seed, number) alone, so a trial planned again after a
crash is the same trial, its pod the same name (a 409, adopted). A trial pod the status does
not record yet (the operator died between its POST and the status write) is adopted before
anything new is planned. A trial leaves `active` and enters the counters in one status
write, so no restart counts it twice or loses it.

Model-based strategies (TPE, successive halving) are not here: a suggestion that depends
on the results so far must be recorded before its pod is created, and would make trial k's
values depend on which trials happened to finish first; grid and seeded random keep each
trial reproducible from (space, seed, k) alone and need no library in the operator image.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kiln.api.search import (
    MAX_KEPT_TRIALS,
    ParameterRange,
    Progress,
    SearchParameter,
    SearchSpec,
    SearchStatus,
    TrialRecord,
)
from kiln.api.training_job import RunRecord, TrainingPhase
from kiln.core.training import (
    ATTEMPT_STARTED,
    DEADLINE_EXCEEDED,
    INVALID_RESULT,
    CreatePod,
    DeletePod,
    PodObservation,
    RegisterModel,
    RetryPolicy,
    TrialFinished,
    bounded_name,
    deadline,
    decide_run,
)

# --- reasons (run outcomes and Events) --------------------------------------------------
TOO_MANY_FAILED_TRIALS = "TooManyFailedTrials"
NO_TRIAL_SUCCEEDED = "NoTrialSucceeded"
TRIAL_STARTED = "TrialStarted"
TRIAL_SUCCEEDED = "TrialSucceeded"
TRIAL_FAILED = "TrialFailed"
TRIAL_CANCELLED = "Cancelled"
SEARCH_FINISHED = "SearchFinished"
# Trial failures no other values could avoid (the estimator, the data, the spec): every
# trial would fail the same way, so the first one ends the run with its reason. A failure
# of the values (InvalidParams, TrainingFailed) counts towards maxFailedTrials.
SEARCH_FATAL_REASONS = frozenset({"InvalidEstimator", "InvalidDataset", "IntegrityError",
                                  "InvalidSpec"})  # fmt: skip
# Normal Events of a search (every other reason it posts is a Warning).
NORMAL_SEARCH_REASONS = frozenset({TRIAL_STARTED, TRIAL_SUCCEEDED, SEARCH_FINISHED})

# Significant digits a sampled float keeps: enough for any hyperparameter, short in status.
SAMPLE_DIGITS = 6


# --- the space --------------------------------------------------------------------------


def _round(value: float) -> float:
    return float(f"{value:.{SAMPLE_DIGITS}g}")


def _clamp(value: float, bounds: ParameterRange) -> float:
    return min(max(value, bounds.min), bounds.max)


def grid_values(parameter: SearchParameter) -> list[Any]:
    """The values the grid tries for one parameter, in order."""
    if parameter.values is not None:
        return list(parameter.values)
    bounds = parameter.range
    assert bounds is not None
    if bounds.type == "int":
        return list(range(int(bounds.min), int(bounds.max) + 1))
    points = bounds.grid_points
    if points is None:
        raise ValueError(f"spec.search.parameters[name={parameter.name}]: no gridPoints")
    values = []
    for i in range(points):
        share = i / (points - 1)
        if bounds.scale == "log":
            low, high = math.log(bounds.min), math.log(bounds.max)
            value = math.exp(low + (high - low) * share)
        else:
            value = bounds.min + (bounds.max - bounds.min) * share
        values.append(_clamp(_round(value), bounds))
    # The ends exactly as written, whatever the rounding did.
    values[0], values[-1] = bounds.min, bounds.max
    return values


def grid_point(search: SearchSpec, index: int) -> dict[str, Any]:
    """Point `index` of the grid: mixed-radix digits, the last parameter varying fastest."""
    if not 0 <= index < search.grid_size():
        raise IndexError(f"grid point {index} is outside the grid of {search.grid_size()}")
    point: dict[str, Any] = {}
    remainder = index
    for parameter in reversed(search.parameters):
        values = grid_values(parameter)
        remainder, digit = divmod(remainder, len(values))
        point[parameter.name] = values[digit]
    return {p.name: point[p.name] for p in search.parameters}


def _sample(parameter: SearchParameter, rng: random.Random) -> Any:
    if parameter.values is not None:
        return parameter.values[rng.randrange(len(parameter.values))]
    bounds = parameter.range
    assert bounds is not None
    if bounds.scale == "log":
        low, high = math.log(bounds.min), math.log(bounds.max)
        value = math.exp(rng.uniform(low, high))
    else:
        value = rng.uniform(bounds.min, bounds.max)
    if bounds.type == "int":
        return int(_clamp(round(value), bounds))
    return _clamp(_round(value), bounds)


def random_point(search: SearchSpec, seed: int, index: int) -> dict[str, Any]:
    """Trial `index` of a random search: its own generator, seeded by (seed, index).

    `random.Random` seeded with a string hashes it with SHA-512, the same in every process
    (not Python's salted `hash`), so the values depend on nothing but the seed, the index
    and the space: not on which trials finished first, nor on the operator that asks.
    Draws are with replacement, as Katib's random and Optuna's RandomSampler.
    """
    rng = random.Random(f"kiln-search:{seed}:{index}")
    return {parameter.name: _sample(parameter, rng) for parameter in search.parameters}


def trial_params(search: SearchSpec, seed: int, index: int) -> dict[str, Any]:
    """The searched parameters' values of trial `index`."""
    if search.strategy == "grid":
        return grid_point(search, index)
    return random_point(search, seed, index)


def trial_pod_name(training_job: str, run: int, trial: int, attempt: int) -> str:
    """Deterministic `<tj>-<run>-t<trial>-<attempt>`: a retried create finds the same pod."""
    return bounded_name(training_job, f"-{run}-t{trial}-{attempt}")


# --- ranking ----------------------------------------------------------------------------


def better(a: TrialRecord, b: TrialRecord, maximize: bool) -> bool:
    """Whether trial `a` ranks before `b`: the better objective, then the lower number."""
    return rank_key(a, maximize) < rank_key(b, maximize)


def rank_key(trial: TrialRecord, maximize: bool) -> tuple[float, int]:
    objective = trial.objective if trial.objective is not None else math.nan
    if math.isnan(objective):
        return (math.inf, trial.trial)
    return (-objective if maximize else objective, trial.trial)


def best_trials(
    trials: Sequence[TrialRecord], maximize: bool, keep: int = MAX_KEPT_TRIALS
) -> list[TrialRecord]:
    """The `keep` best succeeded trials, best first (ties: the lower trial number)."""
    succeeded = [t for t in trials if t.phase == "Succeeded" and t.objective is not None]
    return sorted(succeeded, key=lambda t: rank_key(t, maximize))[:keep]


# --- progress ---------------------------------------------------------------------------


def eta(
    state: SearchStatus, parallelism: int, now: datetime, running_since: Sequence[datetime]
) -> datetime | None:
    """When the last trial should finish: the mean finished trial's duration d, the trials
    not started yet (in waves of `parallelism`) and what d leaves of each running one.

    None before any trial finished (nothing to measure from) or once nothing is left.
    """
    finished = state.succeeded + state.failed
    if finished == 0:
        return None
    mean = state.trial_seconds / finished
    waiting = max(state.total - state.started, 0)
    left = sum(max(mean - (now - since).total_seconds(), 0.0) for since in running_since)
    if waiting == 0 and not running_since:
        return None
    slots = max(parallelism, 1)
    seconds = (waiting * mean + left) / slots
    # Never sooner than what the longest running trial still needs by the mean.
    if running_since:
        seconds = max(seconds, max(mean - (now - s).total_seconds() for s in running_since))
    return now + timedelta(seconds=math.ceil(max(seconds, 0.0)))


def progress(
    state: SearchStatus,
    parallelism: int,
    metric: str,
    now: datetime,
    running: int = 0,
    running_since: Sequence[datetime] = (),
) -> Progress:
    best = state.best[0] if state.best else None
    finished = state.succeeded + state.failed
    return Progress(
        trials=f"{finished}/{state.total}",
        total=state.total,
        succeeded=state.succeeded,
        failed=state.failed,
        running=running,
        pending=max(len(state.active) - running, 0),
        objective=metric,
        best_objective=best.objective if best else None,
        best_trial=best.trial if best else None,
        eta=eta(state, parallelism, now, running_since) if state.stage == "Searching" else None,
        stage=state.stage,
    )


# --- the decision -----------------------------------------------------------------------


@dataclass(frozen=True)
class CreateTrialPod:
    """Create the pod of one trial's attempt."""

    name: str
    trial: int
    attempt: int
    params: dict[str, Any]
    active_deadline_seconds: int | None


SearchAction = CreateTrialPod | CreatePod | DeletePod | RegisterModel


@dataclass(frozen=True)
class SearchDecision:
    run: RunRecord
    actions: list[SearchAction] = field(default_factory=list)
    requeue_after: timedelta | None = None
    # (reason, message) of the trials' and the run's Events, in order.
    events: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Pass:
    """What one pass accumulates while it steps the trials."""

    state: SearchStatus
    actions: list[SearchAction] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    delays: list[timedelta] = field(default_factory=list)
    # The first trial that failed for a reason no other values avoid.
    fatal: TrialRecord | None = None


def _as_run(run: RunRecord, trial: TrialRecord) -> RunRecord:
    """The trial as a run record for `decide_run`: the run's start, so that the run's
    deadline bounds every trial."""
    return RunRecord(
        run=run.run,
        phase=trial.phase,
        attempts=trial.attempts,
        start_time=run.start_time,
        pod=trial.pod,
        next_attempt_time=trial.next_attempt_time,
        reason=trial.reason,
        message=trial.message,
        trainer=trial.trainer,
    )


def _step_trial(
    training_job: str,
    run: RunRecord,
    trial: TrialRecord,
    pods: list[PodObservation],
    policy: RetryPolicy,
    now: datetime,
    work: _Pass,
    maximize: bool,
    logs: Mapping[str, str] | None = None,
) -> TrialRecord | None:
    """Step one active trial; returns it while still active, None once it finished."""
    number = trial.trial
    decision = decide_run(
        training_job,
        _as_run(run, trial),
        pods,
        policy,
        now,
        pod_names=lambda attempt: trial_pod_name(training_job, run.run, number, attempt),
        trial=True,
        logs=logs,
    )
    stepped = decision.run
    updated = trial.model_copy(
        update={
            "phase": stepped.phase,
            "attempts": stepped.attempts,
            "pod": stepped.pod,
            "next_attempt_time": stepped.next_attempt_time,
            "reason": stepped.reason,
            "message": stepped.message,
            "trainer": stepped.trainer,
        }
    )
    if decision.requeue_after is not None:
        work.delays.append(decision.requeue_after)
    result = None
    for action in decision.actions:
        if isinstance(action, CreatePod):
            work.actions.append(
                CreateTrialPod(
                    action.name,
                    number,
                    action.attempt,
                    dict(trial.params),
                    action.active_deadline_seconds,
                )
            )
        elif isinstance(action, DeletePod):
            work.actions.append(action)
        elif isinstance(action, TrialFinished):
            result = action.result
    reason, message = decision.event or ("", "")
    if reason == ATTEMPT_STARTED:
        work.events.append((TRIAL_STARTED, f"trial {number}: {message}"))
    elif reason == "Retrying":
        work.events.append(("Retrying", f"trial {number}: {message}"))
    if stepped.phase == "Succeeded":
        objective = result.objective if result is not None else math.nan
        if not math.isfinite(objective):
            updated = updated.model_copy(
                update={
                    "phase": "Failed",
                    "reason": INVALID_RESULT,
                    "message": "the trial reported no finite objective",
                }
            )
        else:
            assert result is not None
            updated = updated.model_copy(
                update={
                    "objective": objective,
                    "metrics": dict(result.metrics),
                    "message": f"{result.metric}={objective}",
                }
            )
    if updated.phase not in ("Succeeded", "Failed"):
        return updated
    _record_finished(work.state, updated.model_copy(update={"completion_time": now}), maximize)
    if updated.phase == "Succeeded":
        work.events.append((TRIAL_SUCCEEDED, f"trial {number}: {updated.message}"))
    else:
        work.events.append(
            (TRIAL_FAILED, f"trial {number} failed: {updated.reason}: {updated.message}")
        )
        if updated.reason in SEARCH_FATAL_REASONS and work.fatal is None:
            work.fatal = updated
    return None


def _record_finished(state: SearchStatus, trial: TrialRecord, maximize: bool) -> None:
    """Counters, kept records and the duration sum, changed together."""
    started = trial.start_time or trial.completion_time
    if started is not None and trial.completion_time is not None:
        seconds = max((trial.completion_time - started).total_seconds(), 0.0)
        state.trial_seconds = round(state.trial_seconds + seconds, 3)
    if trial.phase == "Succeeded":
        state.succeeded += 1
        state.best = best_trials([*state.best, trial], maximize)
    else:
        state.failed += 1
        state.failures = [*state.failures, trial][-MAX_KEPT_TRIALS:]


def _new_trial(search: SearchSpec, seed: int, number: int, now: datetime) -> TrialRecord:
    return TrialRecord(
        trial=number, phase="Pending", params=trial_params(search, seed, number), start_time=now
    )


def _cancel_active(state: SearchStatus, pods: Mapping[int, list[PodObservation]], now: datetime,
                   why: str) -> list[SearchAction]:  # fmt: skip
    """Active trials end (not counted as failed); their unfinished pods go."""
    actions: list[SearchAction] = []
    for trial in state.active:
        for pod in pods.get(trial.trial, []):
            if pod.phase in ("Pending", "Running", "Unknown") and not pod.deleted:
                actions.append(DeletePod(pod.name))
        cancelled = trial.model_copy(
            update={
                "phase": "Failed",
                "reason": TRIAL_CANCELLED,
                "message": why,
                "completion_time": now,
                "next_attempt_time": None,
            }
        )
        state.failures = [*state.failures, cancelled][-MAX_KEPT_TRIALS:]
    state.active = []
    return actions


def decide_search(
    training_job: str,
    run: RunRecord,
    search: SearchSpec,
    seed: int,
    trial_pods: Mapping[int, list[PodObservation]],
    run_pods: list[PodObservation],
    policy: RetryPolicy,
    now: datetime,
    logs: Mapping[str, str] | None = None,
) -> SearchDecision:
    """The next step of a run with a search, from its record and every pod seen of it.

    `trial_pods`: the pods labelled with a trial number, by trial; `run_pods`: the run's
    other pods (the final training's attempts); `logs`: the log tails read this pass, by
    pod (the trainers' phases, see `decide_run`). Idempotent like `decide_run`.
    """
    if run.phase in ("Succeeded", "Failed"):
        return SearchDecision(run)
    start = run.start_time or now
    run = run.model_copy(update={"start_time": start})
    state = (run.search or SearchStatus(total=search.total_trials())).model_copy(deep=True)
    maximize = search.objective.maximize()
    metric = search.objective.metric
    if state.stage == "Training":
        return _final_training(training_job, run, state, search, run_pods, policy, now, logs)

    run_deadline = deadline(start, policy.active_deadline_seconds)
    if run_deadline is not None and now >= run_deadline:
        actions = _cancel_active(state, trial_pods, now, "the run's deadline passed")
        message = f"the run exceeded activeDeadlineSeconds={policy.active_deadline_seconds}"
        return _fail(run, state, search, DEADLINE_EXCEEDED, message, now, actions, [])

    # Adopt trials whose pods exist although the status does not record them yet.
    seen = [k for k in trial_pods if 0 <= k < state.total]
    while seen and state.started <= max(seen):
        state.active.append(_new_trial(search, seed, state.started, now))
        state.started += 1

    work = _Pass(state)
    still_active = []
    for trial in sorted(state.active, key=lambda t: t.trial):
        kept = _step_trial(training_job, run, trial, trial_pods.get(trial.trial, []), policy,
                           now, work, maximize, logs)  # fmt: skip
        if kept is not None:
            still_active.append(kept)
    state.active = still_active

    if work.fatal is not None:
        fatal = work.fatal
        work.actions.extend(_cancel_active(state, trial_pods, now, f"trial {fatal.trial} failed"))
        message = f"trial {fatal.trial}: {fatal.message} (every trial would fail the same way)"
        return _fail(run, state, search, fatal.reason or TOO_MANY_FAILED_TRIALS, message, now,
                     work.actions, work.events)  # fmt: skip

    if state.failed > search.max_failed_trials:
        last = state.failures[-1] if state.failures else None
        work.actions.extend(
            _cancel_active(state, trial_pods, now, f"more than {search.max_failed_trials} failed")
        )
        detail = f"; last: trial {last.trial}: {last.reason}: {last.message}" if last else ""
        message = (
            f"{state.failed} of {state.started} trials failed "
            f"(maxFailedTrials={search.max_failed_trials}){detail}"
        )
        return _fail(run, state, search, TOO_MANY_FAILED_TRIALS, message, now, work.actions,
                     work.events)  # fmt: skip

    while len(state.active) < search.parallelism and state.started < state.total:
        trial = _new_trial(search, seed, state.started, now)
        state.started += 1
        kept = _step_trial(training_job, run, trial, trial_pods.get(trial.trial, []), policy,
                           now, work, maximize, logs)  # fmt: skip
        if kept is not None:
            state.active.append(kept)

    if state.started >= state.total and not state.active:
        if state.succeeded == 0:
            message = f"none of the {state.total} trials succeeded"
            last = state.failures[-1] if state.failures else None
            if last is not None:
                message += f"; last: trial {last.trial}: {last.reason}: {last.message}"
            return _fail(run, state, search, NO_TRIAL_SUCCEEDED, message, now, work.actions,
                         work.events)  # fmt: skip
        best = state.best[0]
        state.stage = "Training"
        work.events.append(
            (
                SEARCH_FINISHED,
                f"{state.total} trials ({state.succeeded} succeeded, {state.failed} failed); "
                f"best: trial {best.trial}, {metric}={best.objective} with {best.params}; "
                "training it on the whole training split",
            )
        )
        final = _final_training(training_job, run, state, search, run_pods, policy, now, logs)
        return SearchDecision(
            final.run,
            [*work.actions, *final.actions],
            final.requeue_after,
            [*work.events, *final.events],
        )

    running = [t for t in state.active if t.phase == "Running"]
    phase: TrainingPhase = "Running" if running else "Pending"
    run = run.model_copy(
        update={
            "phase": phase,
            "search": state,
            "message": _summary(state, metric),
            "progress": progress(
                state,
                search.parallelism,
                metric,
                now,
                running=len(running),
                running_since=[t.start_time or now for t in running],
            ),
        }
    )
    delay = min(work.delays) if work.delays else None
    return SearchDecision(run, work.actions, delay, work.events)


def _summary(state: SearchStatus, metric: str) -> str:
    finished = state.succeeded + state.failed
    text = (
        f"search: {finished}/{state.total} trials finished ({state.failed} failed), "
        f"{len(state.active)} active"
    )
    if state.best:
        text += f"; best {metric}={state.best[0].objective} (trial {state.best[0].trial})"
    return text


def _fail(
    run: RunRecord,
    state: SearchStatus,
    search: SearchSpec,
    reason: str,
    message: str,
    now: datetime,
    actions: list[SearchAction],
    events: list[tuple[str, str]],
) -> SearchDecision:
    failed = run.model_copy(
        update={
            "phase": "Failed",
            "reason": reason,
            "message": message,
            "completion_time": now,
            "next_attempt_time": None,
            "search": state,
            "progress": progress(
                state, search.parallelism, search.objective.metric, now
            ).model_copy(update={"eta": None}),
        }
    )
    return SearchDecision(failed, actions, None, [*events, (reason, message)])


def _final_training(
    training_job: str,
    run: RunRecord,
    state: SearchStatus,
    search: SearchSpec,
    pods: list[PodObservation],
    policy: RetryPolicy,
    now: datetime,
    logs: Mapping[str, str] | None = None,
) -> SearchDecision:
    """The best trial's values, trained as the run's own attempts (`decide_run`)."""
    decision = decide_run(training_job, run.model_copy(update={"search": state}), pods,
                          policy, now, logs=logs)  # fmt: skip
    updated = decision.run.model_copy(
        update={"progress": progress(state, search.parallelism, search.objective.metric, now)}
    )
    actions: list[SearchAction] = [
        a for a in decision.actions if isinstance(a, (CreatePod, DeletePod, RegisterModel))
    ]
    events = [decision.event] if decision.event is not None else []
    return SearchDecision(updated, actions, decision.requeue_after, events)


def best_params(run: RunRecord) -> dict[str, Any] | None:
    """The winning trial's values, once the search is over (None before)."""
    if run.search is None or run.search.stage != "Training" or not run.search.best:
        return None
    return dict(run.search.best[0].params)


def search_lineage(
    search: SearchSpec, seed: int, state: SearchStatus, report_uri: str | None = None
) -> dict[str, Any]:
    """What a ModelVersion's lineage says about the search that chose its values."""
    best = state.best[0] if state.best else None
    lineage: dict[str, Any] = {
        "strategy": search.strategy,
        "seed": seed,
        "space": [p.to_wire() for p in search.parameters],
        "objective": {
            "metric": search.objective.metric,
            "direction": "maximize" if search.objective.maximize() else "minimize",
            "validation": search.objective.validation.to_wire() or {"fraction": 0.2},
        },
        "trials": state.total,
        "succeeded": state.succeeded,
        "failed": state.failed,
    }
    if best is not None:
        lineage["bestTrial"] = best.trial
        lineage["bestObjective"] = best.objective
        lineage["bestParams"] = best.params
    if report_uri:
        lineage["report"] = report_uri
    return lineage


def is_normal_search_reason(reason: str) -> bool:
    """Whether a search's Event of this reason is Normal (trial started or succeeded, the
    search finished); failures, retries and the run's failure are Warnings."""
    return reason in NORMAL_SEARCH_REASONS
