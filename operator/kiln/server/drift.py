"""Drift bins: the training baseline's own bins, compiled once into vectorised counters.

`compile_drift(baseline, …)` turns a `kiln.contract.monitoring.Baseline` into a
`DriftPlan`: for each monitored feature (the first `MAX_MONITORED_FEATURES` of the
baseline, in its order) where its values sit in the request matrix and how a column of
them becomes bin indices; and how predictions become prediction bins. Counting is done
on folded batches (thousands of rows at once), never per request:

- numeric bins: `numpy.searchsorted(edges, values, side="right")`, which is
  `bisect.bisect_right`, i.e. exactly `contract.numeric_bin`;
- categories: a dict lookup per value of an object column (`contract.category_bin`:
  the label itself when named, else `OTHER_BIN`), or, for a float column (booleans as
  0/1, numeric codes), one lookup per distinct value through `numpy.unique`;
- missing values (NaN / None) go to `MISSING_BIN`.

Every bin a feature can take is known up front (`bins`), so the exposition exports each
one at 0 from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from kiln.contract.monitoring import (
    MAX_MONITORED_FEATURES,
    MAX_PREDICTION_BINS,
    MISSING_BIN,
    OTHER_BIN,
    Baseline,
    Distribution,
    FeatureProfile,
)

log = logging.getLogger("kiln.server")

# Column values -> bin indices (into the feature's `bins`).
Binner = Callable[[np.ndarray], np.ndarray]
_TRUE_LABELS = frozenset({"1", "1.0", "true", "True", "TRUE"})
_FALSE_LABELS = frozenset({"0", "0.0", "false", "False", "FALSE"})


@dataclass(frozen=True)
class MonitoredFeature:
    name: str
    position: int  # column of the request matrix
    bins: tuple[str, ...]  # every bin label, MISSING_BIN last
    binner: Binner


@dataclass(frozen=True)
class DriftPlan:
    features: tuple[MonitoredFeature, ...]
    unmonitored: int  # baseline features beyond MAX_MONITORED_FEATURES
    prediction_bins: tuple[str, ...]
    # classifiers: model class index -> prediction bin; regressors: value edges.
    class_to_bin: np.ndarray | None
    value_edges: np.ndarray | None

    def count_features(self, matrix: np.ndarray) -> list[np.ndarray]:
        """Per monitored feature, the count of each bin over the rows of `matrix`."""
        counts: list[np.ndarray] = []
        for feature in self.features:
            indices = feature.binner(matrix[:, feature.position])
            counts.append(np.bincount(indices, minlength=len(feature.bins)).astype(np.int64))
        return counts

    def count_classes(self, class_indices: np.ndarray) -> np.ndarray:
        assert self.class_to_bin is not None
        bins = self.class_to_bin[np.asarray(class_indices, dtype=np.intp)]
        return np.bincount(bins, minlength=len(self.prediction_bins)).astype(np.int64)

    def count_values(self, values: np.ndarray) -> np.ndarray:
        assert self.value_edges is not None
        numbers = np.asarray(values, dtype=np.float64).ravel()
        numbers = numbers[~np.isnan(numbers)]
        bins = np.searchsorted(self.value_edges, numbers, side="right")
        return np.bincount(bins, minlength=len(self.prediction_bins)).astype(np.int64)


def compile_drift(
    baseline: Baseline,
    input_names: Sequence[str],
    input_kinds: Sequence[str] | None,
    classes: Sequence[str] | None,
) -> DriftPlan:
    """The plan for a model whose request matrix has columns `input_names`.

    `input_kinds` (tabular models: numeric, boolean, categorical, datetime per column)
    tells how a column is held: float for numeric and boolean, objects otherwise; a bare
    estimator's matrix is all float64. A baseline feature that is not an input of the
    model is logged and left out (its series are absent: "no data", never "no drift").
    """
    positions = {name: index for index, name in enumerate(input_names)}
    positional = not any(f.name in positions for f in baseline.features) and len(
        baseline.features
    ) == len(input_names)
    monitored: list[MonitoredFeature] = []
    capped = baseline.features[:MAX_MONITORED_FEATURES]
    for index, profile in enumerate(capped):
        position = index if positional else positions.get(profile.name)
        if position is None:
            log.warning(
                "baseline feature is not an input of the model; not monitored",
                extra={"feature": profile.name},
            )
            continue
        held = "float" if input_kinds is None else _holding(input_kinds[position])
        feature = _compile_feature(profile, position, held)
        if feature is not None:
            monitored.append(feature)
    unmonitored = max(0, len(baseline.features) - MAX_MONITORED_FEATURES)
    bins, class_to_bin, edges = _prediction_plan(baseline, classes)
    return DriftPlan(tuple(monitored), unmonitored, bins, class_to_bin, edges)


def _holding(kind: str) -> str:
    return "float" if kind in ("numeric", "boolean") else "object"


def _compile_feature(profile: FeatureProfile, position: int, held: str) -> MonitoredFeature | None:
    distribution = profile.distribution
    if distribution.edges is not None:
        edges = np.asarray(distribution.edges, dtype=np.float64)
        bins = (*(str(i) for i in range(len(edges) + 1)), MISSING_BIN)
        to_numbers = _datetime_numbers if profile.kind == "datetime" else _float_numbers
        return MonitoredFeature(profile.name, position, bins, _numeric_binner(edges, to_numbers))
    if distribution.labels is not None:
        labels = list(dict.fromkeys(distribution.labels))
        named = [label for label in labels if label != OTHER_BIN]
        bins = (*named, OTHER_BIN, MISSING_BIN)
        binner = (
            _float_category_binner(named, profile.kind == "boolean")
            if held == "float"
            else _object_category_binner(named)
        )
        return MonitoredFeature(profile.name, position, bins, binner)
    # Datetime features carry no bins in the trainer's baselines (an empty distribution).
    log.info("baseline feature has no bins; not counted", extra={"feature": profile.name})
    return None


def _float_numbers(column: np.ndarray) -> np.ndarray:
    return np.asarray(column, dtype=np.float64)


def _datetime_numbers(column: np.ndarray) -> np.ndarray:
    """ISO 8601 text -> POSIX seconds (UTC when no offset is given); NaN when missing."""
    out = np.full(len(column), np.nan)
    for index, value in enumerate(column.tolist()):
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                continue
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            out[index] = moment.timestamp()
    return out


def _numeric_binner(edges: np.ndarray, to_numbers: Callable[[np.ndarray], np.ndarray]) -> Binner:
    missing_index = len(edges) + 1

    def binner(column: np.ndarray) -> np.ndarray:
        numbers = to_numbers(column)
        indices = np.searchsorted(edges, numbers, side="right")
        missing = np.isnan(numbers)
        if missing.any():
            indices[missing] = missing_index
        return indices

    return binner


def _object_category_binner(labels: list[str]) -> Binner:
    lookup = {label: index for index, label in enumerate(labels)}
    other, missing = len(labels), len(labels) + 1

    def binner(column: np.ndarray) -> np.ndarray:
        # NaN (the canonical missing marker) and None are missing; text is looked up as
        # itself, anything else by its str() as contract.category_bin does.
        return np.fromiter(
            (
                lookup.get(value, other)
                if type(value) is str
                else missing
                if value is None or value != value
                else lookup.get(str(value), other)
                for value in column.tolist()
            ),
            dtype=np.intp,
            count=len(column),
        )

    return binner


def _float_category_binner(labels: list[str], boolean: bool) -> Binner:
    """Categories of a float column: booleans held as 1.0/0.0, or numeric codes."""
    by_number: dict[float, int] = {}
    for index, label in enumerate(labels):
        if boolean and label in _TRUE_LABELS:
            by_number.setdefault(1.0, index)
        elif boolean and label in _FALSE_LABELS:
            by_number.setdefault(0.0, index)
        else:
            try:
                by_number.setdefault(float(label), index)
            except ValueError:
                continue
    other, missing_index = len(labels), len(labels) + 1

    def binner(column: np.ndarray) -> np.ndarray:
        numbers = np.asarray(column, dtype=np.float64)
        indices = np.full(len(numbers), missing_index, dtype=np.intp)
        present = ~np.isnan(numbers)
        distinct, inverse = np.unique(numbers[present], return_inverse=True)
        mapped = np.array([by_number.get(float(v), other) for v in distinct], dtype=np.intp)
        indices[present] = mapped[inverse] if len(distinct) else other
        return indices

    return binner


def _prediction_plan(
    baseline: Baseline, classes: Sequence[str] | None
) -> tuple[tuple[str, ...], np.ndarray | None, np.ndarray | None]:
    predictions: Distribution | None = baseline.predictions
    if classes is not None:
        labels = list(predictions.labels) if predictions and predictions.labels else list(classes)
        named = [label for label in dict.fromkeys(labels) if label != OTHER_BIN]
        # Classes the baseline does not name share OTHER_BIN (only added when needed).
        if len(named) > MAX_PREDICTION_BINS or any(c not in named for c in classes):
            named = named[: MAX_PREDICTION_BINS - 1]
            bins = (*named, OTHER_BIN)
        else:
            bins = tuple(named)
        lookup = {label: index for index, label in enumerate(bins)}
        other = lookup.get(OTHER_BIN, 0)
        class_to_bin = np.array([lookup.get(c, other) for c in classes], dtype=np.intp)
        return bins, class_to_bin, None
    if predictions is not None and predictions.edges is not None:
        edges = np.asarray(predictions.edges[: MAX_PREDICTION_BINS - 1], dtype=np.float64)
        return tuple(str(i) for i in range(len(edges) + 1)), None, edges
    return (), None, None


def empty_counts(plan: DriftPlan) -> tuple[list[list[int]], list[int]]:
    return [[0] * len(f.bins) for f in plan.features], [0] * len(plan.prediction_bins)


def as_lists(counts: list[np.ndarray]) -> list[list[int]]:
    return [[int(v) for v in row] for row in counts]
