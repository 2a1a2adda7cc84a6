"""Operator metrics of hyperparameter searches (registered on the default registry, so they
appear on the operator's `/metrics` next to the training metrics).

kiln_search_trials{namespace, trainingjob, state}         trials of the job's latest search:
                                                          total, succeeded, failed, running,
                                                          pending
kiln_search_best_objective{namespace, trainingjob, metric}  its best objective so far
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from prometheus_client import Gauge

from kiln.api.training_job import RunRecord

STATES = ("total", "succeeded", "failed", "running", "pending")

TRIALS = Gauge(
    "kiln_search_trials",
    "Trials of a TrainingJob's latest hyperparameter search, by state.",
    ["namespace", "trainingjob", "state"],
)
BEST_OBJECTIVE = Gauge(
    "kiln_search_best_objective",
    "Best objective so far of a TrainingJob's latest hyperparameter search.",
    ["namespace", "trainingjob", "metric"],
)


def record(namespace: str, name: str, runs: Sequence[RunRecord]) -> None:
    """The gauges of the newest run with search progress (as the status just written says);
    none once no run has any."""
    searched = [r for r in runs if r.progress is not None]
    forget(namespace, name)
    if not searched:
        return
    progress = max(searched, key=lambda r: r.run).progress
    assert progress is not None
    for state in STATES:
        TRIALS.labels(namespace, name, state).set(getattr(progress, state))
    if progress.best_objective is not None and progress.objective:
        BEST_OBJECTIVE.labels(namespace, name, progress.objective).set(progress.best_objective)


def forget(namespace: str, name: str) -> None:
    for state in STATES:
        with contextlib.suppress(KeyError):
            TRIALS.remove(namespace, name, state)
    for labels in [tuple(k) for k in list(BEST_OBJECTIVE._metrics)]:
        if labels[:2] == (namespace, name):
            with contextlib.suppress(KeyError):
                BEST_OBJECTIVE.remove(*labels)
