"""The metric names Kiln knows, and which way is better for each.

The trainer reports metrics under these names, the registration policy gates on them and
the CRD rejects any other name at `kubectl apply` time.
"""

from __future__ import annotations

from typing import Literal

Direction = Literal["higherIsBetter", "lowerIsBetter"]

CLASSIFICATION_METRICS: dict[str, Direction] = {
    "accuracy": "higherIsBetter",
    "balanced_accuracy": "higherIsBetter",
    "precision": "higherIsBetter",
    "recall": "higherIsBetter",
    "f1": "higherIsBetter",
    "roc_auc": "higherIsBetter",
    "log_loss": "lowerIsBetter",
}

REGRESSION_METRICS: dict[str, Direction] = {
    "r2": "higherIsBetter",
    "mae": "lowerIsBetter",
    "mse": "lowerIsBetter",
    "rmse": "lowerIsBetter",
    "mape": "lowerIsBetter",
}

METRIC_DIRECTIONS: dict[str, Direction] = {**CLASSIFICATION_METRICS, **REGRESSION_METRICS}

KNOWN_METRICS: tuple[str, ...] = tuple(sorted(METRIC_DIRECTIONS))

# Fairness compares one metric across the groups of a sensitive column. Besides the quality
# metrics, the share of positive predictions per group (demographic parity) is available.
FAIRNESS_METRICS: tuple[str, ...] = tuple(sorted((*METRIC_DIRECTIONS, "selection_rate")))


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` means a better model (KeyError if unknown)."""
    return METRIC_DIRECTIONS[metric] == "higherIsBetter"
