"""Live quality, pure: captured predictions joined to ground-truth labels -> metrics.

- **The join**: a label (`FeedbackRecord`) belongs to the prediction (`PredictionRecord`)
  with the same `(id, row)`; when several labels name one prediction the latest (by time,
  then by the order read) wins, so a correction replaces a mistake. Predictions without a
  label and labels without a prediction are left out. The label delay is the median of
  `label.time - prediction.time` over the joined pairs.
- **The metrics** are the trainer's (`kiln.trainer.metrics`, scikit-learn), computed in
  pure Python with the same definitions, because scikit-learn is not in the operator's
  image: accuracy; precision, recall and F1 macro-averaged over the classes present in the
  labels or the predictions, with 0 where a class has no prediction (zero_division=0);
  rmse, mae, and r2 (1 - SS_res / SS_tot; with constant labels 1.0 for a perfect fit and
  0.0 otherwise, as scikit-learn's `force_finite`). roc_auc and log_loss need class
  scores the join does not judge on: they are not measured live.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kiln.api.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, higher_is_better
from kiln.contract.monitoring import FeedbackRecord, PredictionRecord

DIGITS = 6
LIVE_CLASSIFICATION_METRICS: tuple[str, ...] = (
    "accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
)
LIVE_REGRESSION_METRICS: tuple[str, ...] = ("rmse", "mae", "r2")
LIVE_METRICS = LIVE_CLASSIFICATION_METRICS + LIVE_REGRESSION_METRICS
DEFAULT_MAX_DROP = 0.05


@dataclass(frozen=True)
class Pair:
    prediction: Any
    label: Any
    delay_seconds: float


@dataclass(frozen=True)
class Joined:
    pairs: list[Pair]
    captured: int  # predictions considered (distinct (id, row))
    labels: int  # labels considered

    @property
    def label_delay_seconds(self) -> float | None:
        if not self.pairs:
            return None
        return round(statistics.median(p.delay_seconds for p in self.pairs), 3)


def join(
    predictions: Iterable[PredictionRecord],
    feedback: Iterable[FeedbackRecord],
    *,
    version: str | None = None,
    track: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Joined:
    """Match labels to predictions by (id, row); the latest label of a prediction wins.

    Only predictions of `version` on `track` made in [start, end] count (each filter when
    given); labels are those read for the same window, whenever they arrived in it."""
    by_key: dict[tuple[str, int], PredictionRecord] = {}
    for record in predictions:
        if version is not None and record.version != version:
            continue
        if track is not None and record.track != track:
            continue
        if (start is not None and record.time < start) or (end is not None and record.time > end):
            continue
        by_key.setdefault((record.id, record.row), record)
    latest: dict[tuple[str, int], FeedbackRecord] = {}
    count = 0
    for label in feedback:
        count += 1
        key = (label.id, label.row)
        previous = latest.get(key)
        if previous is None or label.time >= previous.time:
            latest[key] = label
    pairs = [
        Pair(
            prediction=by_key[key].prediction,
            label=label.label,
            delay_seconds=(label.time - by_key[key].time).total_seconds(),
        )
        for key, label in latest.items()
        if key in by_key
    ]
    return Joined(pairs=pairs, captured=len(by_key), labels=count)


# -- metrics -----------------------------------------------------------------------------


def _class(value: Any) -> str:
    """A class label compared by its text, so 1, 1.0 and "1" from JSON are one class."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list) and len(value) == 1:  # a one-output prediction as a list
        return _class(value[0])
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def classification_metrics(y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, float]:
    if not y_true:
        return {}
    truth = [_class(v) for v in y_true]
    pred = [_class(v) for v in y_pred]
    n = len(truth)
    classes = sorted(set(truth) | set(pred))
    precision: list[float] = []
    recall: list[float] = []
    f1: list[float] = []
    for c in classes:
        tp = sum(1 for t, p in zip(truth, pred, strict=True) if t == c and p == c)
        predicted = sum(1 for p in pred if p == c)
        actual = sum(1 for t in truth if t == c)
        prec = tp / predicted if predicted else 0.0
        rec = tp / actual if actual else 0.0
        precision.append(prec)
        recall.append(rec)
        f1.append(2 * tp / (predicted + actual) if predicted + actual else 0.0)
    return {
        "accuracy": round(sum(1 for t, p in zip(truth, pred, strict=True) if t == p) / n, DIGITS),
        "f1_macro": round(sum(f1) / len(classes), DIGITS),
        "precision_macro": round(sum(precision) / len(classes), DIGITS),
        "recall_macro": round(sum(recall) / len(classes), DIGITS),
    }


def regression_metrics(y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, float]:
    pairs = [
        (t, p)
        for t, p in ((_number(a), _number(b)) for a, b in zip(y_true, y_pred, strict=True))
        if t is not None and p is not None
    ]
    if not pairs:
        return {}
    n = len(pairs)
    errors = [t - p for t, p in pairs]
    ss_res = sum(e * e for e in errors)
    result = {
        "rmse": round(math.sqrt(ss_res / n), DIGITS),
        "mae": round(sum(abs(e) for e in errors) / n, DIGITS),
    }
    if n >= 2:
        mean = sum(t for t, _ in pairs) / n
        ss_tot = sum((t - mean) ** 2 for t, _ in pairs)
        if ss_tot == 0:
            result["r2"] = 1.0 if ss_res == 0 else 0.0
        else:
            result["r2"] = round(1 - ss_res / ss_tot, DIGITS)
    return result


def live_metrics(pairs: Sequence[Pair], classifier: bool) -> dict[str, float]:
    y_true = [p.label for p in pairs]
    y_pred = [p.prediction for p in pairs]
    if classifier:
        return classification_metrics(y_true, y_pred)
    return regression_metrics(y_true, y_pred)


def is_classifier(training_metrics: Mapping[str, float], classes: Sequence[Any] | None) -> bool:
    """Whether a version is a classifier: it has classes or classification metrics."""
    if classes:
        return True
    if any(m in REGRESSION_METRICS for m in training_metrics):
        return False
    return any(m in CLASSIFICATION_METRICS for m in training_metrics) or not training_metrics


def choose_metric(
    requested: str | None,
    training_metrics: Mapping[str, float],
    headline: str | None,
    classifier: bool,
) -> str:
    """The metric judged: the spec's, else the version's headline metric, else the first
    live-measurable metric the version recorded, else accuracy / rmse."""
    if requested:
        return requested
    measurable = LIVE_CLASSIFICATION_METRICS if classifier else LIVE_REGRESSION_METRICS
    head = (headline or "").split("=", 1)[0].strip()
    if head in measurable:
        return head
    for name in training_metrics:
        if name in measurable:
            return name
    return measurable[0]


def bound(
    metric: str, training: float | None, max_drop: float | None, minimum: float | None
) -> float | None:
    """The worst passing live value: the absolute `min`, else training -/+ maxDrop (by the
    metric's direction); None when relative and the version recorded no training value."""
    if minimum is not None:
        return minimum
    if training is None:
        return None
    drop = DEFAULT_MAX_DROP if max_drop is None else max_drop
    return round(training - drop if higher_is_better(metric) else training + drop, DIGITS)


def worse_than(metric: str, live: float, limit: float) -> bool:
    return live < limit if higher_is_better(metric) else live > limit
