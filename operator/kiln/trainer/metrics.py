"""Metric values from predictions: pure functions of arrays, no estimator, no I/O.

A metric that is undefined for the data at hand (roc_auc with one class in the test set,
log_loss without probabilities) is left out instead of being reported as a made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm

from kiln.contract.train_spec import CLASSIFICATION_METRICS, REGRESSION_METRICS

DIGITS = 6


@dataclass(frozen=True)
class Predictions:
    """What an estimator said about the test rows."""

    y_true: np.ndarray
    y_pred: np.ndarray
    # Class probabilities (n_samples x n_classes, columns in ``classes`` order), if any.
    proba: np.ndarray | None = None
    # decision_function output, used for roc_auc of a binary classifier without proba.
    decision: np.ndarray | None = None
    classes: Sequence[Any] = ()

    def subset(self, mask: np.ndarray) -> Predictions:
        return Predictions(
            y_true=self.y_true[mask],
            y_pred=self.y_pred[mask],
            proba=None if self.proba is None else self.proba[mask],
            decision=None if self.decision is None else self.decision[mask],
            classes=self.classes,
        )


def metrics_for_task(is_classifier: bool) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if is_classifier else REGRESSION_METRICS


def primary_metric(requested: Sequence[str], is_classifier: bool) -> str:
    if requested:
        return requested[0]
    return "accuracy" if is_classifier else "rmse"


def compute_metrics(names: Sequence[str], predictions: Predictions) -> dict[str, float]:
    """The named metrics that are defined for these predictions, rounded to ``DIGITS``."""
    result: dict[str, float] = {}
    for name in names:
        value = _METRICS[name](predictions)
        if value is not None and math.isfinite(value):
            result[name] = round(float(value), DIGITS)
    return result


def _accuracy(p: Predictions) -> float:
    return float(skm.accuracy_score(p.y_true, p.y_pred))


def _macro(scorer: Callable[..., Any]) -> Callable[[Predictions], float]:
    def score(p: Predictions) -> float:
        return float(scorer(p.y_true, p.y_pred, average="macro", zero_division=0))

    return score


def _roc_auc(p: Predictions) -> float | None:
    classes = list(p.classes)
    if len(np.unique(p.y_true)) < 2 or len(classes) < 2:
        return None
    try:
        if len(classes) == 2:
            if p.proba is not None:
                scores = p.proba[:, 1]
            elif p.decision is not None:
                scores = p.decision
            else:
                return None
            return float(skm.roc_auc_score(p.y_true == classes[1], scores))
        if p.proba is None:
            return None
        return float(
            skm.roc_auc_score(p.y_true, p.proba, multi_class="ovr", average="macro", labels=classes)
        )
    except ValueError:  # a class absent from this slice of y_true
        return None


def _log_loss(p: Predictions) -> float | None:
    if p.proba is None or len(p.y_true) == 0:
        return None
    return float(skm.log_loss(p.y_true, p.proba, labels=list(p.classes)))


def _rmse(p: Predictions) -> float:
    return math.sqrt(float(skm.mean_squared_error(p.y_true, p.y_pred)))


def _mae(p: Predictions) -> float:
    return float(skm.mean_absolute_error(p.y_true, p.y_pred))


def _r2(p: Predictions) -> float | None:
    if len(p.y_true) < 2:
        return None
    return float(skm.r2_score(p.y_true, p.y_pred))


_METRICS: dict[str, Callable[[Predictions], float | None]] = {
    "accuracy": _accuracy,
    "f1_macro": _macro(skm.f1_score),
    "precision_macro": _macro(skm.precision_score),
    "recall_macro": _macro(skm.recall_score),
    "roc_auc": _roc_auc,
    "log_loss": _log_loss,
    "rmse": _rmse,
    "mae": _mae,
    "r2": _r2,
}


@dataclass(frozen=True)
class FairnessReport:
    column: str
    metric: str
    # Largest minus smallest per-group value; None with fewer than two measurable groups.
    gap: float | None
    groups: dict[str, float]


def fairness_gap(
    metric: str, predictions: Predictions, groups: np.ndarray, column: str
) -> FairnessReport:
    """The spread of ``metric`` across the groups of a sensitive column."""
    per_group: dict[str, float] = {}
    labels = np.asarray([str(g) for g in groups])
    for label in sorted(set(labels.tolist())):
        values = compute_metrics([metric], predictions.subset(labels == label))
        if metric in values:
            per_group[label] = values[metric]
    gap = None
    if len(per_group) >= 2:
        gap = round(max(per_group.values()) - min(per_group.values()), DIGITS)
    return FairnessReport(column=column, metric=metric, gap=gap, groups=per_group)
