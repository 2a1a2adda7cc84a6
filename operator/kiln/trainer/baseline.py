"""The training baseline (`baseline.json`): what drift is measured against.

Pure functions of the training split and the held-out predictions, no I/O:

- one `FeatureProfile` per input column of the model (the input schema's columns, in its
  order), profiled on the training split's values as the pipeline takes them (the
  canonical values of `kiln.tabular.coerce`, which is also what the server builds from a
  request): numeric columns get about `NUMERIC_BINS` quantile bins, categorical and
  boolean columns their `TOP_CATEGORIES` most frequent values (then `OTHER_BIN`),
  datetime columns only their missing rate (no bins: the server would have to parse
  dates the way the trainer does to count them; not worth a second parser);
- every share is measured with `contract.monitoring.feature_bin` (numeric bins: its
  bisect, vectorised), the function the server counts requests with, so the two count
  exactly the same bins;
- the predicted classes (classifier, in `classes_` order) or quantile bins of the
  predicted values (regressor) on the held-out split, and the true labels there.

Numbers are rounded (`DIGITS`) and the file is canonical JSON with sorted keys, so the
same data and seed give the same bytes (and the same sha256).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from kiln.contract.monitoring import (
    NUMERIC_BINS,
    OTHER_BIN,
    TOP_CATEGORIES,
    Baseline,
    Distribution,
    FeatureProfile,
    category_bin,
    category_label,
    feature_bin,
)
from kiln.tabular.schema import ColumnSchema
from kiln.trainer.metrics import DIGITS, Predictions


def _share(part: int, total: int) -> float:
    return round(part / total, DIGITS) if total else 0.0


def _significant(value: float) -> float:
    """A float rounded to DIGITS significant digits (edges keep their scale)."""
    return float(f"{float(value):.{DIGITS}g}")


def numeric_edges(values: np.ndarray, bins: int = NUMERIC_BINS) -> list[float]:
    """Inner edges of about ``bins`` quantile bins of the non-missing ``values``.

    Edges are data values (inverted-CDF quantiles; every distinct value when there are
    at most ``bins`` of them), rounded, without duplicates and above the minimum, so each
    bin holds training values where values repeat; a constant column gets no edge (one
    bin). A bin that rounding left empty is merged away.
    """
    present = np.asarray(values, dtype=np.float64)
    present = present[~np.isnan(present)]
    if present.size == 0:
        return []
    distinct = np.unique(present)
    if distinct.size <= bins:
        # Few values (counts, codes, 0/1): one bin per value, however rare.
        candidates = distinct.tolist()
    else:
        levels = [i / bins for i in range(1, bins)]
        candidates = np.quantile(present, levels, method="inverted_cdf").tolist()
    low = float(present.min())
    # An infinite edge is not JSON; infinities still land in the first or last bin.
    edges = sorted({_significant(q) for q in candidates if math.isfinite(q)})
    edges = [e for e in edges if e > low]
    while True:
        counts = _numeric_counts(edges, present)
        empty = next((i for i, c in enumerate(counts) if c == 0), None)
        if empty is None:
            return edges
        del edges[max(empty - 1, 0)]


def _numeric_counts(edges: list[float], present: np.ndarray) -> list[int]:
    """Values per bin; `searchsorted(side="right")` is `numeric_bin`'s bisect_right, vectorised
    (the tests check the two agree)."""
    indices = np.searchsorted(np.asarray(edges, dtype=np.float64), present, side="right")
    return [int(c) for c in np.bincount(indices, minlength=len(edges) + 1)]


def numeric_distribution(values: Sequence[Any] | np.ndarray) -> Distribution:
    """Quantile bins of the values and the share of each (missing values left out)."""
    array = np.asarray(values, dtype=np.float64)
    present = array[~np.isnan(array)]
    edges = numeric_edges(present)
    if present.size == 0:
        return Distribution(edges=[], shares=[], count=0)
    counts = _numeric_counts(edges, present)
    total = int(present.size)
    return Distribution(edges=edges, shares=[_share(c, total) for c in counts], count=total)


def top_labels(texts: Sequence[str], top: int = TOP_CATEGORIES) -> list[str]:
    """The ``top`` most frequent labels (ties by label), then OTHER_BIN if any were cut."""
    counts = Counter(texts)
    ranked = sorted(counts, key=lambda label: (-counts[label], label))
    labels = ranked[:top]
    if len(ranked) > top:
        labels.append(OTHER_BIN)
    return labels


def label_distribution(labels: list[str], values: Sequence[Any]) -> Distribution:
    """Shares of fixed ``labels`` by ``category_bin`` (str of the value; values not among
    them go to OTHER_BIN when it is one, else are not counted)."""
    counts = dict.fromkeys(labels, 0)
    total = 0
    for value in values:
        label = category_bin(labels, value.item() if hasattr(value, "item") else value)
        if label in counts:
            counts[label] += 1
            total += 1
    return Distribution(
        labels=list(labels), shares=[_share(counts[k], total) for k in labels], count=total
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def feature_profile(column: ColumnSchema, values: pd.Series) -> FeatureProfile:
    """One column's profile from its canonical training values."""
    items = [v.item() if hasattr(v, "item") else v for v in values.tolist()]
    present = [v for v in items if not _missing(v)]
    rows = len(items)
    missing_rate = _share(rows - len(present), rows)
    if column.kind == "numeric":
        distribution = numeric_distribution(np.asarray(present, dtype=np.float64))
    elif column.kind in ("categorical", "boolean"):
        # Labels as the server's feature_bin names them (booleans "True" / "False").
        labels = top_labels([_bin_text(column.kind, v) for v in present])
        probe = FeatureProfile(
            name=column.name,
            kind=column.kind,
            distribution=Distribution(labels=labels, shares=[0.0] * len(labels)),
        )
        counts = Counter(feature_bin(probe, v) for v in present)
        total = len(present)
        distribution = Distribution(
            labels=labels, shares=[_share(counts[k], total) for k in labels], count=total
        )
    else:  # datetime: recorded, not binned
        distribution = Distribution(shares=[], count=0)
    return FeatureProfile(
        name=column.name, kind=column.kind, missing_rate=missing_rate, distribution=distribution
    )


def _bin_text(kind: str, value: Any) -> str:
    """The label feature_bin gives a value it names (booleans as "True" / "False")."""
    if kind == "boolean" and (isinstance(value, bool) or value in (0, 1)):
        value = bool(value)
    return category_label(value)


def predictions_profile(
    predictions: Predictions, is_classifier: bool
) -> tuple[Distribution, Distribution]:
    """(predictions, true labels) on the held-out split."""
    if is_classifier:
        # str() of the class as the input schema records it: what the server predicts.
        labels = [str(c.item() if hasattr(c, "item") else c) for c in predictions.classes]
        predicted = label_distribution(labels, predictions.y_pred.tolist())
        truth = predictions.y_true.tolist()
        unseen = {str(v) for v in truth if not _missing(v)} - set(labels)
        truth_labels = [*labels, OTHER_BIN] if unseen else labels
        return predicted, label_distribution(truth_labels, truth)
    return (
        numeric_distribution(predictions.y_pred.astype(np.float64)),
        numeric_distribution(np.asarray(predictions.y_true, dtype=np.float64)),
    )


def training_baseline(
    columns: Sequence[ColumnSchema],
    x_train: pd.DataFrame,
    predictions: Predictions,
    is_classifier: bool,
) -> Baseline:
    """The profile of the training split and of the held-out predictions."""
    predicted, truth = predictions_profile(predictions, is_classifier)
    return Baseline(
        rows=len(x_train),
        features=[feature_profile(column, x_train[column.name]) for column in columns],
        predictions=predicted,
        labels=truth,
        task="classification" if is_classifier else "regression",
    )


def baseline_bytes(baseline: Baseline) -> bytes:
    """Canonical JSON: camelCase keys sorted, no whitespace, nulls left out, one newline."""
    document = baseline.model_dump(mode="json", by_alias=True, exclude_none=True)
    return (
        json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    ).encode()
