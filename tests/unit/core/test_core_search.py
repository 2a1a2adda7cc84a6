"""kiln.core.search: the space, the strategies, trials to pods, the winner, progress."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kiln.api.search import SearchSpec, SearchStatus, TrialRecord
from kiln.api.training_job import RunRecord
from kiln.core import search as s
from kiln.core.training import (
    ContainerTermination,
    CreatePod,
    DeletePod,
    PodObservation,
    RegisterModel,
    RetryPolicy,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(backoff_limit=1)
SHA = "a" * 64


def spec(**fields: Any) -> SearchSpec:
    document: dict[str, Any] = {
        "strategy": "random",
        "maxTrials": 4,
        "parallelism": 2,
        "objective": {"metric": "accuracy"},
        "parameters": [
            {"name": "C", "range": {"min": 0.001, "max": 1000, "scale": "log"}},
            {"name": "depth", "range": {"min": 1, "max": 9, "type": "int"}},
            {"name": "solver", "values": ["lbfgs", "saga", None]},
        ],
    }
    document.update(fields)
    return SearchSpec.model_validate(document)


def grid_spec(**fields: Any) -> SearchSpec:
    return spec(
        strategy="grid",
        maxTrials=None,
        parameters=[
            {"name": "a", "values": ["x", "y"]},
            {"name": "b", "range": {"min": 1, "max": 3, "type": "int"}},
            {"name": "c", "range": {"min": 0.01, "max": 1, "scale": "log", "gridPoints": 3}},
        ],
        **fields,
    )


# --- the space --------------------------------------------------------------------------


def test_the_grid_enumerates_every_point_once_the_last_parameter_fastest() -> None:
    search = grid_spec()
    points = [s.grid_point(search, i) for i in range(search.grid_size())]
    assert len(points) == 18
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 18
    assert points[0] == {"a": "x", "b": 1, "c": 0.01}
    assert points[1] == {"a": "x", "b": 1, "c": 0.1}
    assert points[2] == {"a": "x", "b": 1, "c": 1.0}
    assert points[3] == {"a": "x", "b": 2, "c": 0.01}
    assert points[17] == {"a": "y", "b": 3, "c": 1.0}
    with pytest.raises(IndexError):
        s.grid_point(search, 18)


def test_a_linear_float_grid_includes_both_ends() -> None:
    parameter = spec(
        parameters=[{"name": "x", "range": {"min": 0.1, "max": 0.3, "gridPoints": 3}}]
    ).parameters[0]
    assert s.grid_values(parameter) == [0.1, 0.2, 0.3]


def test_random_trials_stay_in_the_space() -> None:
    search = spec(maxTrials=200)
    for index in range(200):
        point = s.random_point(search, 7, index)
        assert 0.001 <= point["C"] <= 1000
        assert isinstance(point["depth"], int) and 1 <= point["depth"] <= 9
        assert point["solver"] in ("lbfgs", "saga", None)


def test_a_log_scale_spreads_samples_over_the_orders_of_magnitude() -> None:
    search = spec(maxTrials=400)
    exponents = [math.log10(s.random_point(search, 3, i)["C"]) for i in range(400)]
    below_one = sum(1 for e in exponents if e < 0)
    # Uniform in log10 over [-3, 3]: about half below 1 (linear would put 0.1 % there).
    assert 150 < below_one < 250


def test_a_seeded_random_search_is_reproducible_and_the_seed_matters() -> None:
    search = spec(maxTrials=10)
    first = [s.trial_params(search, 42, i) for i in range(10)]
    # In any order: trial k's values depend on (seed, k) alone.
    again = {i: s.trial_params(search, 42, i) for i in reversed(range(10))}
    assert first == [again[i] for i in range(10)]
    assert first != [s.trial_params(search, 43, i) for i in range(10)]
    assert len({json.dumps(p, sort_keys=True) for p in first}) > 1


def test_random_values_are_the_same_in_another_process() -> None:
    """No salted hash() or process state: a restarted operator plans the same trials."""
    code = (
        "import json;from kiln.api.search import SearchSpec;from kiln.core.search import "
        "random_point;"
        f"sp=SearchSpec.model_validate_json({spec().model_dump_json(by_alias=True)!r});"
        "print(json.dumps([random_point(sp, 5, i) for i in range(4)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    ).stdout
    assert json.loads(out) == [s.random_point(spec(), 5, i) for i in range(4)]


def test_trial_pod_names_are_deterministic_and_bounded() -> None:
    assert s.trial_pod_name("iris", 2, 5, 1) == "iris-2-t5-1"
    long = s.trial_pod_name("x" * 70, 12, 999, 3)
    assert len(long) <= 63 and long.endswith("-12-t999-3")


# --- ranking ----------------------------------------------------------------------------


def trial(n: int, objective: float | None, phase: str = "Succeeded") -> TrialRecord:
    return TrialRecord(trial=n, phase=phase, objective=objective)  # type: ignore[arg-type]


def test_the_best_trial_is_the_best_objective_ties_going_to_the_lower_number() -> None:
    trials = [trial(3, 0.9), trial(1, 0.95), trial(2, 0.95), trial(0, None, "Failed")]
    assert [t.trial for t in s.best_trials(trials, maximize=True)] == [1, 2, 3]
    assert [t.trial for t in s.best_trials(trials, maximize=False)] == [3, 1, 2]
    assert [t.trial for t in s.best_trials(trials, maximize=True, keep=1)] == [1]


# --- progress ---------------------------------------------------------------------------


def test_no_eta_before_any_trial_finished() -> None:
    state = SearchStatus(total=8, started=2)
    assert s.eta(state, 2, NOW, [NOW, NOW]) is None


def test_eta_counts_waves_of_parallelism_and_what_running_trials_have_left() -> None:
    # 4 finished trials of 10 s each on average; 2 running for 4 s; 2 not started; 2 slots.
    state = SearchStatus(total=8, started=6, succeeded=3, failed=1, trial_seconds=40.0)
    since = [NOW - timedelta(seconds=4)] * 2
    # (2 waiting * 10 s + 2 * 6 s left) / 2 slots = 16 s
    assert s.eta(state, 2, NOW, since) == NOW + timedelta(seconds=16)
    # All started: the longest running trial's remainder bounds it.
    done = SearchStatus(total=8, started=8, succeeded=7, trial_seconds=70.0)
    assert s.eta(done, 2, NOW, [NOW - timedelta(seconds=4)]) == NOW + timedelta(seconds=6)
    over = SearchStatus(total=8, started=8, succeeded=8, trial_seconds=80.0)
    assert s.eta(over, 2, NOW, []) is None


def test_progress_counts_and_best_so_far() -> None:
    state = SearchStatus(
        total=8,
        started=5,
        succeeded=2,
        failed=1,
        trial_seconds=30,
        active=[trial(3, None, "Running"), trial(4, None, "Pending")],
        best=[trial(1, 0.97), trial(0, 0.9)],
    )
    shown = s.progress(state, 2, "accuracy", NOW, running=1, running_since=[NOW])
    assert (shown.trials, shown.succeeded, shown.failed, shown.running, shown.pending) == (
        "3/8", 2, 1, 1, 1,
    )  # fmt: skip
    assert (shown.best_objective, shown.best_trial, shown.objective) == (0.97, 1, "accuracy")
    assert shown.eta is not None


# --- the decision -----------------------------------------------------------------------


def run_record(**fields: Any) -> RunRecord:
    return RunRecord(run=1, phase="Pending", trigger="create", start_time=NOW, **fields)


def pod(name: str, attempt: int, phase: str, message: str | None = None, code: int = 0) -> Any:
    terminated = None
    if phase in ("Succeeded", "Failed"):
        terminated = ContainerTermination(exit_code=code, message=message)
    return PodObservation(name=name, attempt=attempt, phase=phase, terminated=terminated)  # type: ignore[arg-type]


def trial_report(number: int, objective: float) -> str:
    return json.dumps(
        {"ok": True, "trial": number, "objective": objective, "metric": "accuracy",
         "metrics": {"accuracy": objective}}
    )  # fmt: skip


def failure(reason: str = "InvalidParams", code: int = 7) -> str:
    return json.dumps({"ok": False, "reason": reason, "message": "bad C", "retryable": False,
                       "exitCode": code})  # fmt: skip


def final_report() -> str:
    return json.dumps(
        {"ok": True, "artifact": {"uri": "s3://m/model.skops", "sha256": SHA},
         "metrics": {"accuracy": 0.96}, "dataset": {"uri": "s3://d/iris.csv", "sha256": SHA}}
    )  # fmt: skip


def decide(
    run: RunRecord,
    search: SearchSpec,
    trial_pods: dict[int, list[PodObservation]] | None = None,
    run_pods: list[PodObservation] | None = None,
    now: datetime = NOW,
    policy: RetryPolicy = POLICY,
) -> s.SearchDecision:
    return s.decide_search("iris", run, search, 7, trial_pods or {}, run_pods or [], policy, now)


def created(decision: s.SearchDecision) -> list[str]:
    return [a.name for a in decision.actions if isinstance(a, s.CreateTrialPod)]


def test_a_new_search_starts_parallelism_trials_with_their_values() -> None:
    search = spec()
    decision = decide(run_record(), search)
    assert created(decision) == ["iris-1-t0-1", "iris-1-t1-1"]
    pods = [a for a in decision.actions if isinstance(a, s.CreateTrialPod)]
    assert [p.params for p in pods] == [s.trial_params(search, 7, i) for i in (0, 1)]
    state = decision.run.search
    assert state is not None
    assert (state.started, state.total, len(state.active)) == (2, 4, 2)
    assert decision.run.progress is not None and decision.run.progress.trials == "0/4"
    assert [r for r, _ in decision.events] == [s.TRIAL_STARTED, s.TRIAL_STARTED]


def test_the_same_pass_again_plans_the_same_pods_and_adopts_them() -> None:
    search = spec()
    first = decide(run_record(), search)
    # The operator died after both POSTs, before the status write: the restart sees the pods.
    pods = {0: [pod("iris-1-t0-1", 1, "Pending")], 1: [pod("iris-1-t1-1", 1, "Pending")]}
    again = decide(run_record(), search, pods)
    assert created(again) == []  # the pods exist: adopted, not created again
    assert again.run.search is not None
    assert [(t.trial, t.pod) for t in again.run.search.active] == [
        (0, "iris-1-t0-1"),
        (1, "iris-1-t1-1"),
    ]
    # Killed after the first POST only: trial 0 is adopted, trial 1 created as planned.
    half = decide(run_record(), search, {0: pods[0]})
    assert created(half) == ["iris-1-t1-1"]
    after_write = decide(first.run, search, pods)
    assert created(after_write) == []  # recorded: nothing new
    assert after_write.run.search == first.run.search


def test_a_trial_pod_the_status_does_not_record_is_adopted_not_run_twice() -> None:
    search = spec()
    first = decide(run_record(), search)
    # Trial 0 succeeded; the pass that created trial 2 died before writing the status.
    pods = {
        0: [pod("iris-1-t0-1", 1, "Succeeded", trial_report(0, 0.9))],
        1: [pod("iris-1-t1-1", 1, "Running")],
        2: [pod("iris-1-t2-1", 1, "Pending")],
    }
    decision = decide(first.run, search, pods)
    state = decision.run.search
    assert state is not None
    assert sorted(t.trial for t in state.active) == [1, 2]
    assert state.started == 3 and state.succeeded == 1
    assert created(decision) == []  # trial 2's pod was adopted, no trial 3 (parallelism 2)


def test_finished_trials_free_their_slots_and_are_counted_once() -> None:
    search = spec()
    run = decide(run_record(), search).run
    pods = {
        0: [pod("iris-1-t0-1", 1, "Succeeded", trial_report(0, 0.9))],
        1: [pod("iris-1-t1-1", 1, "Failed", failure(), code=7)],
    }
    decision = decide(run, search.model_copy(update={"max_failed_trials": 1}), pods)
    state = decision.run.search
    assert state is not None
    assert (state.succeeded, state.failed, state.started) == (1, 1, 4)
    assert created(decision) == ["iris-1-t2-1", "iris-1-t3-1"]
    assert [t.trial for t in state.best] == [0] and state.best[0].objective == 0.9
    assert state.failures[0].reason == "InvalidParams"
    reasons = [r for r, _ in decision.events]
    assert reasons.count(s.TRIAL_SUCCEEDED) == 1 and reasons.count(s.TRIAL_FAILED) == 1
    # The same observations after the write: nothing counted again.
    pods.update({2: [pod("iris-1-t2-1", 1, "Pending")], 3: [pod("iris-1-t3-1", 1, "Pending")]})
    again = decide(decision.run, search.model_copy(update={"max_failed_trials": 1}), pods)
    assert again.run.search is not None
    assert (again.run.search.succeeded, again.run.search.failed) == (1, 1)
    assert created(again) == [] and again.events == []


def test_one_failure_more_than_max_failed_trials_fails_the_run_and_stops_the_others() -> None:
    search = spec()  # maxFailedTrials 0
    run = decide(run_record(), search).run
    pods = {
        0: [pod("iris-1-t0-1", 1, "Failed", failure(), code=7)],
        1: [pod("iris-1-t1-1", 1, "Running")],
    }
    decision = decide(run, search, pods)
    assert decision.run.phase == "Failed"
    assert decision.run.reason == s.TOO_MANY_FAILED_TRIALS
    assert "trial 0: InvalidParams" in (decision.run.message or "")
    assert [a.name for a in decision.actions if isinstance(a, DeletePod)] == ["iris-1-t1-1"]
    assert created(decision) == []
    assert decision.run.search is not None and decision.run.search.active == []
    assert decision.events[-1][0] == s.TOO_MANY_FAILED_TRIALS


def test_a_retryable_trial_failure_is_retried_with_the_runs_backoff() -> None:
    search = spec()
    run = decide(run_record(), search).run
    pods = {
        0: [pod("iris-1-t0-1", 1, "Failed", None, code=3)],  # DatasetUnavailable, retryable
        1: [pod("iris-1-t1-1", 1, "Running")],
    }
    waiting = decide(run, search, pods)
    assert waiting.run.search is not None and waiting.run.search.failed == 0
    assert waiting.requeue_after == timedelta(seconds=10)
    assert created(waiting) == []
    later = decide(waiting.run, search, pods, now=NOW + timedelta(seconds=10))
    assert created(later) == ["iris-1-t0-2"]


def test_after_the_last_trial_the_best_is_trained_as_the_runs_own_attempt() -> None:
    search = spec(maxTrials=2)
    run = decide(run_record(), search).run
    pods = {
        0: [pod("iris-1-t0-1", 1, "Succeeded", trial_report(0, 0.93))],
        1: [pod("iris-1-t1-1", 1, "Succeeded", trial_report(1, 0.97))],
    }
    decision = decide(run, search, pods)
    assert decision.run.search is not None and decision.run.search.stage == "Training"
    assert [a.name for a in decision.actions if isinstance(a, CreatePod)] == ["iris-1-1"]
    assert s.best_params(decision.run) == s.trial_params(search, 7, 1)
    assert [r for r, _ in decision.events][-2:] == [s.SEARCH_FINISHED, "AttemptStarted"]
    # The final pod succeeds: the model is registered.
    done = decide(decision.run, search, pods, [pod("iris-1-1", 1, "Succeeded", final_report())])
    assert done.run.phase == "Succeeded"
    assert [type(a) for a in done.actions] == [RegisterModel]


def test_a_search_without_a_successful_trial_fails() -> None:
    search = spec(maxTrials=2, maxFailedTrials=2)
    run = decide(run_record(), search).run
    pods = {i: [pod(f"iris-1-t{i}-1", 1, "Failed", failure(), code=7)] for i in (0, 1)}
    decision = decide(run, search, pods)
    assert decision.run.phase == "Failed" and decision.run.reason == s.NO_TRIAL_SUCCEEDED


def test_a_trial_that_succeeds_without_an_objective_is_a_failed_trial() -> None:
    search = spec(maxFailedTrials=3)
    run = decide(run_record(), search).run
    pods = {0: [pod("iris-1-t0-1", 1, "Succeeded", final_report())]}
    decision = decide(run, search, pods)
    assert decision.run.search is not None
    assert decision.run.search.failures[0].reason == "InvalidResult"


def test_the_runs_deadline_bounds_the_whole_search() -> None:
    search = spec()
    policy = RetryPolicy(backoff_limit=1, active_deadline_seconds=60)
    first = decide(run_record(), search, policy=policy)
    pods = {i: [pod(f"iris-1-t{i}-1", 1, "Running")] for i in (0, 1)}
    late = decide(first.run, search, pods, now=NOW + timedelta(seconds=61), policy=policy)
    assert late.run.phase == "Failed" and late.run.reason == "DeadlineExceeded"
    assert sorted(a.name for a in late.actions if isinstance(a, DeletePod)) == [
        "iris-1-t0-1",
        "iris-1-t1-1",
    ]
    trial_pod = next(a for a in first.actions if isinstance(a, s.CreateTrialPod))
    assert trial_pod.active_deadline_seconds == 60


def test_a_grid_runs_every_point_in_order() -> None:
    search = grid_spec(parallelism=18)
    decision = decide(run_record(), search)
    pods = [a for a in decision.actions if isinstance(a, s.CreateTrialPod)]
    assert [p.trial for p in pods] == list(range(18))
    assert [p.params for p in pods] == [s.grid_point(search, i) for i in range(18)]


def test_the_search_lineage_names_strategy_space_seed_and_winner() -> None:
    search = spec(maxTrials=2)
    state = SearchStatus(
        stage="Training", total=2, started=2, succeeded=2, best=[trial(1, 0.97), trial(0, 0.9)]
    )
    lineage = s.search_lineage(search, 7, state, "s3://m/search.json")
    assert lineage["strategy"] == "random" and lineage["seed"] == 7
    assert [p["name"] for p in lineage["space"]] == ["C", "depth", "solver"]
    assert (lineage["trials"], lineage["bestTrial"], lineage["bestObjective"]) == (2, 1, 0.97)
    assert lineage["objective"]["direction"] == "maximize"


def test_a_failure_no_other_values_avoid_ends_the_search_at_once() -> None:
    search = spec(maxFailedTrials=3)
    run = decide(run_record(), search).run
    pods = {
        0: [pod("iris-1-t0-1", 1, "Failed", failure("InvalidDataset", 5), code=5)],
        1: [pod("iris-1-t1-1", 1, "Running")],
    }
    decision = decide(run, search, pods)
    assert (decision.run.phase, decision.run.reason) == ("Failed", "InvalidDataset")
    assert [a.name for a in decision.actions if isinstance(a, DeletePod)] == ["iris-1-t1-1"]


def test_each_running_trial_shows_its_trainers_phase_and_keeps_it_once_finished() -> None:
    search = spec()
    run = decide(run_record(), search).run
    ts = 1_780_000_000
    log = json.dumps({"ts": ts, "event": "phase.start", "phase": "fit"})
    pods = {0: [pod("iris-1-t0-1", 1, "Running")], 1: [pod("iris-1-t1-1", 1, "Running")]}
    decision = s.decide_search(
        "iris", run, search, 7, pods, [], POLICY, NOW, logs={"iris-1-t0-1": log}
    )
    state = decision.run.search
    assert state is not None
    trainers = {t.trial: t.trainer for t in state.active}
    assert trainers[0] is not None and trainers[0].phase == "fit"
    assert trainers[1] is None  # its log was not read (or showed no phase yet)
    report = json.loads(trial_report(0, 0.9))
    report.update(phaseStarts={"load": ts - 2, "fit": ts, "upload": ts + 4},
                  durationSeconds={"load": 2.0, "fit": 4.0, "upload": 0.1})  # fmt: skip
    pods[0] = [pod("iris-1-t0-1", 1, "Succeeded", json.dumps(report))]
    finished = decide(decision.run, search, pods)
    assert finished.run.search is not None
    (best,) = finished.run.search.best
    assert best.trainer is not None and best.trainer.finished
    assert [x.phase for x in best.trainer.phases] == ["load", "fit", "upload"]


def test_the_final_training_shows_its_trainers_phase_on_the_run() -> None:
    search = spec(maxTrials=1, parallelism=1)
    run = decide(run_record(), search).run
    trial_done = {0: [pod("iris-1-t0-1", 1, "Succeeded", trial_report(0, 0.9))]}
    training = decide(run, search, trial_done).run
    assert training.search is not None and training.search.stage == "Training"
    log = json.dumps({"ts": 1_780_000_000, "event": "phase.start", "phase": "evaluate"})
    decision = s.decide_search(
        "iris", training, search, 7, trial_done, [pod("iris-1-1", 1, "Running")], POLICY, NOW,
        logs={"iris-1-1": log},
    )  # fmt: skip
    assert decision.run.trainer is not None and decision.run.trainer.phase == "evaluate"
