"""The search gauges follow the newest run with search progress, and go with it."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from kiln.api.training_job import RunRecord
from kiln.telemetry import search

pytestmark = pytest.mark.unit


def run(number: int, **progress: Any) -> RunRecord:
    record: dict[str, Any] = {"run": number, "phase": "Running"}
    if progress:
        record["progress"] = {"trials": "x", "pending": 0, "running": 0, **progress}
    return RunRecord.model_validate(record)


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"namespace": "ml", "trainingjob": "iris", **labels})


def test_the_newest_searching_run_is_shown_and_removed_once_none_searches() -> None:
    older = run(1, total=4, succeeded=4, failed=0, objective="accuracy", bestObjective=0.9)
    newer = run(2, total=8, succeeded=3, failed=1, running=2, objective="accuracy",
                bestObjective=0.95)  # fmt: skip
    search.record("ml", "iris", [older, newer])
    assert value("kiln_search_trials", state="total") == 8
    assert value("kiln_search_trials", state="failed") == 1
    assert value("kiln_search_trials", state="running") == 2
    assert value("kiln_search_best_objective", metric="accuracy") == 0.95
    search.record("ml", "iris", [run(3)])
    assert value("kiln_search_trials", state="total") is None
    assert value("kiln_search_best_objective", metric="accuracy") is None


def test_no_best_objective_before_a_trial_succeeded() -> None:
    search.record("ml", "iris", [run(1, total=8, succeeded=0, failed=0, running=2)])
    assert value("kiln_search_trials", state="running") == 2
    assert value("kiln_search_best_objective", metric="accuracy") is None
    search.forget("ml", "iris")
