"""The metric names Kiln knows, and which way is better for each.

The trainer (`kiln.trainer.metrics`) computes and reports exactly these metrics, in this
order (the first of a task is its primary metric when a TrainingJob lists none), the
registration policy gates on them, and the CRD rejects any other name at `kubectl apply`
time. This is their one definition.
"""

from __future__ import annotations

from typing import Literal

Direction = Literal["higherIsBetter", "lowerIsBetter"]

CLASSIFICATION_METRICS: dict[str, Direction] = {
    "accuracy": "higherIsBetter",
    "f1_macro": "higherIsBetter",
    "precision_macro": "higherIsBetter",
    "recall_macro": "higherIsBetter",
    "roc_auc": "higherIsBetter",
    "log_loss": "lowerIsBetter",
}

REGRESSION_METRICS: dict[str, Direction] = {
    "rmse": "lowerIsBetter",
    "mae": "lowerIsBetter",
    "r2": "higherIsBetter",
}

METRIC_DIRECTIONS: dict[str, Direction] = {**CLASSIFICATION_METRICS, **REGRESSION_METRICS}

KNOWN_METRICS: tuple[str, ...] = tuple(sorted(METRIC_DIRECTIONS))


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` means a better model (KeyError if unknown)."""
    return METRIC_DIRECTIONS[metric] == "higherIsBetter"
