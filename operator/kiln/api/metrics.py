"""The metric names Kiln knows, and which way is better for each.

The trainer (`kiln.trainer.metrics`) reports metrics under exactly these names, the
registration policy gates on them, and the CRD rejects any other name at `kubectl apply`
time. A unit test keeps this list and the trainer's in step.
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
    "r2": "higherIsBetter",
    "mae": "lowerIsBetter",
    "rmse": "lowerIsBetter",
}

METRIC_DIRECTIONS: dict[str, Direction] = {**CLASSIFICATION_METRICS, **REGRESSION_METRICS}

KNOWN_METRICS: tuple[str, ...] = tuple(sorted(METRIC_DIRECTIONS))


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` means a better model (KeyError if unknown)."""
    return METRIC_DIRECTIONS[metric] == "higherIsBetter"
