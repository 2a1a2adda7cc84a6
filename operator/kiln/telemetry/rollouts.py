"""Operator metrics of ModelDeployment rollouts (registered on the default registry, so
they appear on the operator's `/metrics` next to the training metrics).

kiln_canary_weight{namespace, name}                     effective canary traffic share (%)
kiln_canary_step_weight{namespace, name}                weight the current step asks for (%)
kiln_canary_step{namespace, name}                       index of the current step
kiln_model_deployment_phase{namespace, name, phase}     1 for the current phase, else 0
kiln_canary_analysis_value{namespace, name, check}      last measured value of a check
kiln_canary_analysis_threshold{namespace, name, check, bound}  its min / max bound
kiln_canary_analysis_results_total{namespace, name, check, outcome}  results by outcome
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import get_args

from prometheus_client import Counter, Gauge

from kiln.api.model_deployment import AnalysisResult, DeploymentPhase, ModelDeploymentStatus

PHASES: tuple[str, ...] = get_args(DeploymentPhase)

WEIGHT = Gauge(
    "kiln_canary_weight", "Effective canary traffic share, percent.", ["namespace", "name"]
)
STEP_WEIGHT = Gauge(
    "kiln_canary_step_weight", "Canary weight the current step asks for, percent.",
    ["namespace", "name"],
)  # fmt: skip
STEP = Gauge("kiln_canary_step", "Index of the current canary step.", ["namespace", "name"])
PHASE = Gauge(
    "kiln_model_deployment_phase", "1 for the ModelDeployment's current phase, else 0.",
    ["namespace", "name", "phase"],
)  # fmt: skip
ANALYSIS_VALUE = Gauge(
    "kiln_canary_analysis_value", "Last measured value of a canary check.",
    ["namespace", "name", "check"],
)  # fmt: skip
ANALYSIS_THRESHOLD = Gauge(
    "kiln_canary_analysis_threshold", "Bound of a canary check (bound = min or max).",
    ["namespace", "name", "check", "bound"],
)  # fmt: skip
ANALYSIS_RESULTS = Counter(
    "kiln_canary_analysis_results", "Canary check results by outcome.",
    ["namespace", "name", "check", "outcome"],
)  # fmt: skip


def record_status(namespace: str, name: str, status: ModelDeploymentStatus) -> None:
    WEIGHT.labels(namespace, name).set(status.canary_weight)
    STEP_WEIGHT.labels(namespace, name).set(status.step_weight)
    STEP.labels(namespace, name).set(status.current_step)
    for phase in PHASES:
        PHASE.labels(namespace, name, phase).set(1 if status.phase == phase else 0)


def record_analysis(namespace: str, name: str, results: Sequence[AnalysisResult]) -> None:
    for result in results:
        ANALYSIS_RESULTS.labels(namespace, name, result.check, result.outcome).inc()
        if result.value is not None:
            ANALYSIS_VALUE.labels(namespace, name, result.check).set(result.value)
        for bound, value in (("min", result.min), ("max", result.max)):
            if value is not None:
                ANALYSIS_THRESHOLD.labels(namespace, name, result.check, bound).set(value)


def forget(namespace: str, name: str) -> None:
    """Drop the series of a deleted ModelDeployment."""
    for gauge in (WEIGHT, STEP_WEIGHT, STEP):
        _remove(gauge, namespace, name)
    for phase in PHASES:
        _remove(PHASE, namespace, name, phase)
    for metric in (ANALYSIS_VALUE, ANALYSIS_THRESHOLD, ANALYSIS_RESULTS):
        for labels in _label_sets(metric):
            if labels[:2] == (namespace, name):
                _remove(metric, *labels)


def _label_sets(metric: Gauge | Counter) -> list[tuple[str, ...]]:
    return [tuple(key) for key in list(metric._metrics)]


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
