"""The model server's telemetry: its Prometheus exposition, by model, version and track.

The hot path only touches plain Python ints and appends arrays to a list; the
per-feature sums and the prediction distribution are folded in batches (and at scrape
time), and the text exposition is rendered only when Prometheus asks. Worker processes
of one server each keep their own `ServingMetrics` and publish a `MetricsSnapshot`
that the scraped worker merges, so the exposition covers the whole pod.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from kiln.contract.monitoring import (
    CAPTURE_QUEUE_METRIC,
    CAPTURE_RECORDS_METRIC,
    FEATURE_BIN_METRIC,
    FEEDBACK_RECORDS_METRIC,
    PREDICTION_BIN_METRIC,
    UNMONITORED_FEATURES_METRIC,
)
from kiln.server.drift import DriftPlan

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
PREDICTION_VALUE_BUCKETS: tuple[float, ...] = (
    -1000.0, -100.0, -10.0, -1.0, 0.0, 1.0, 10.0, 100.0, 1000.0,
)  # fmt: skip
_FOLD_AFTER_ROWS = 4096
CAPTURE_RESULTS = ("written", "dropped", "failed")


@dataclass(frozen=True)
class MetricLabels:
    model: str
    version: str
    track: str

    def names(self) -> list[str]:
        return ["model", "version", "track"]

    def values(self) -> list[str]:
        return [self.model, self.version, self.track]


@dataclass
class MetricsSnapshot:
    """Plain, mergeable totals (what a worker publishes for the others to add up)."""

    requests_by_code: dict[int, int] = field(default_factory=dict)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    rows: int = 0
    class_counts: list[int] = field(default_factory=list)
    value_counts: list[int] = field(default_factory=list)
    value_sum: float = 0.0
    feature_count: int = 0
    feature_sum: list[float] = field(default_factory=list)
    feature_sum_squares: list[float] = field(default_factory=list)
    # Tabular models: rows without a value, per drift feature and per input column, and
    # categories the training split never had, per categorical column.
    feature_missing: list[int] = field(default_factory=list)
    column_missing: list[int] = field(default_factory=list)
    unseen_categories: list[int] = field(default_factory=list)
    # Drift: per monitored feature its count per baseline bin; predictions per bin.
    feature_bins: list[list[int]] = field(default_factory=list)
    prediction_bins: list[int] = field(default_factory=list)
    # Data capture (this worker's queue and writer) and feedback labels accepted.
    capture_records: dict[str, int] = field(default_factory=dict)
    capture_queue: int = 0
    feedback_records: int = 0

    def merge(self, other: MetricsSnapshot) -> None:
        for code, count in other.requests_by_code.items():
            self.requests_by_code[code] = self.requests_by_code.get(code, 0) + count
        self.latency_counts = _add(self.latency_counts, other.latency_counts)
        self.latency_sum += other.latency_sum
        self.rows += other.rows
        self.class_counts = _add(self.class_counts, other.class_counts)
        self.value_counts = _add(self.value_counts, other.value_counts)
        self.value_sum += other.value_sum
        self.feature_count += other.feature_count
        self.feature_sum = _add(self.feature_sum, other.feature_sum)
        self.feature_sum_squares = _add(self.feature_sum_squares, other.feature_sum_squares)
        self.feature_missing = _add(self.feature_missing, other.feature_missing)
        self.column_missing = _add(self.column_missing, other.column_missing)
        self.unseen_categories = _add(self.unseen_categories, other.unseen_categories)
        if not self.feature_bins:
            self.feature_bins = [list(row) for row in other.feature_bins]
        elif other.feature_bins:
            self.feature_bins = [
                _add(mine, theirs)
                for mine, theirs in zip(self.feature_bins, other.feature_bins, strict=True)
            ]
        self.prediction_bins = _add(self.prediction_bins, other.prediction_bins)
        for result, count in other.capture_records.items():
            self.capture_records[result] = self.capture_records.get(result, 0) + count
        self.capture_queue += other.capture_queue
        self.feedback_records += other.feedback_records


def _add(left: list[Any], right: list[Any]) -> list[Any]:
    if not left:
        return list(right)
    if not right:
        return left
    return [a + b for a, b in zip(left, right, strict=True)]


@dataclass(frozen=True)
class TabularLayout:
    """Where a tabular model's columns sit in the request matrix, for the statistics.

    Drift sums cover the numeric and boolean columns (missing values left out of the
    count); every column counts its missing values; categorical columns count values
    the training split never had.
    """

    numeric_positions: tuple[int, ...]
    column_names: tuple[str, ...]
    categorical: tuple[tuple[str, int, frozenset[str]], ...]  # name, position, categories


class ServingMetrics:
    """Counts one worker's inference traffic; `snapshot()` gives its totals."""

    def __init__(self, labels: MetricLabels) -> None:
        self.labels = labels
        self._requests_by_code: dict[int, int] = {}
        self._latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._rows = 0
        self._feature_names: tuple[str, ...] = ()
        self._class_labels: tuple[str, ...] | None = None
        self._pending_features: list[np.ndarray] = []
        self._pending_indices: list[np.ndarray] = []
        self._pending_values: list[np.ndarray] = []
        self._pending_rows = 0
        self._feature_count = 0
        self._feature_sum = np.zeros(0)
        self._feature_sum_squares = np.zeros(0)
        self._class_counts = np.zeros(0, dtype=np.int64)
        self._value_counts = np.zeros(len(PREDICTION_VALUE_BUCKETS) + 1, dtype=np.int64)
        self._value_sum = 0.0
        self._layout: TabularLayout | None = None
        self._feature_missing = np.zeros(0, dtype=np.int64)
        self._column_missing = np.zeros(0, dtype=np.int64)
        self._unseen = np.zeros(0, dtype=np.int64)
        self._drift: DriftPlan | None = None
        self._feature_bins: list[np.ndarray] = []
        self._prediction_bins = np.zeros(0, dtype=np.int64)
        self._capture_counts: Callable[[], tuple[dict[str, int], int]] | None = None
        self._feedback_records = 0

    def configure_drift(self, plan: DriftPlan | None) -> None:
        """The baseline's bins (None: no baseline, no drift series)."""
        self._drift = plan
        if plan is None:
            self._feature_bins = []
            self._prediction_bins = np.zeros(0, dtype=np.int64)
            return
        self._feature_bins = [np.zeros(len(f.bins), dtype=np.int64) for f in plan.features]
        self._prediction_bins = np.zeros(len(plan.prediction_bins), dtype=np.int64)

    @property
    def drift(self) -> DriftPlan | None:
        return self._drift

    def attach_capture(self, counts: Callable[[], tuple[dict[str, int], int]]) -> None:
        """`counts()` gives the capture records by result and the queue depth."""
        self._capture_counts = counts

    def observe_feedback(self, records: int) -> None:
        self._feedback_records += records

    def configure_model(
        self,
        feature_names: Sequence[str],
        class_labels: Sequence[str] | None,
        layout: TabularLayout | None = None,
    ) -> None:
        """Called once the model is loaded: fixes the feature and class label sets."""
        self._layout = layout
        if layout is not None:
            self._feature_missing = np.zeros(len(feature_names), dtype=np.int64)
            self._column_missing = np.zeros(len(layout.column_names), dtype=np.int64)
            self._unseen = np.zeros(len(layout.categorical), dtype=np.int64)
        self._feature_names = tuple(feature_names)
        self._class_labels = tuple(class_labels) if class_labels is not None else None
        self._feature_sum = np.zeros(len(self._feature_names))
        self._feature_sum_squares = np.zeros(len(self._feature_names))
        self._class_counts = np.zeros(len(self._class_labels or ()), dtype=np.int64)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._feature_names

    @property
    def class_labels(self) -> tuple[str, ...] | None:
        return self._class_labels

    @property
    def layout(self) -> TabularLayout | None:
        return self._layout

    def observe_request(self, status: int, seconds: float) -> None:
        self._requests_by_code[status] = self._requests_by_code.get(status, 0) + 1
        self._latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds

    def observe_rows(
        self, features: np.ndarray, class_indices: np.ndarray | None, values: np.ndarray
    ) -> None:
        """Record a predicted batch; the statistics are folded later, in bulk."""
        self._rows += features.shape[0]
        self._pending_features.append(features)
        if class_indices is not None:
            self._pending_indices.append(class_indices)
        elif values.dtype.kind in "iuf":
            self._pending_values.append(values)
        self._pending_rows += features.shape[0]
        if self._pending_rows >= _FOLD_AFTER_ROWS:
            self._fold()

    def _fold(self) -> None:
        if self._pending_features:
            stacked = np.concatenate(self._pending_features)
            self._pending_features.clear()
            if self._drift is not None and self._drift.features:
                for counts, added in zip(
                    self._feature_bins, self._drift.count_features(stacked), strict=True
                ):
                    counts += added
            if self._layout is None:
                self._feature_count += stacked.shape[0]
                self._feature_sum += stacked.sum(axis=0)
                self._feature_sum_squares += np.square(stacked).sum(axis=0)
            else:
                self._fold_tabular(stacked, self._layout)
        drift = self._drift
        if self._pending_indices:
            indices = np.concatenate(self._pending_indices)
            self._class_counts += np.bincount(indices, minlength=len(self._class_counts))
            self._pending_indices.clear()
            if drift is not None and drift.class_to_bin is not None:
                self._prediction_bins += drift.count_classes(indices)
        if self._pending_values:
            values = np.concatenate(self._pending_values).astype(np.float64).ravel()
            if drift is not None and drift.value_edges is not None:
                self._prediction_bins += drift.count_values(values)
            positions = np.searchsorted(PREDICTION_VALUE_BUCKETS, values, side="left")
            self._value_counts += np.bincount(positions, minlength=len(self._value_counts))
            self._value_sum += float(values.sum())
            self._pending_values.clear()
        self._pending_rows = 0

    def _fold_tabular(self, stacked: np.ndarray, layout: TabularLayout) -> None:
        numeric = stacked[:, list(layout.numeric_positions)].astype(np.float64)
        missing = np.isnan(numeric)
        self._feature_count += stacked.shape[0]
        self._feature_missing += missing.sum(axis=0)
        self._feature_sum += np.where(missing, 0.0, numeric).sum(axis=0)
        self._feature_sum_squares += np.where(missing, 0.0, np.square(numeric)).sum(axis=0)
        if stacked.dtype == object:
            # NaN is the only missing marker in canonical columns, and NaN != NaN.
            self._column_missing += (stacked != stacked).sum(axis=0).astype(np.int64)
            for index, (_, position, categories) in enumerate(layout.categorical):
                self._unseen[index] += sum(
                    1 for value in stacked[:, position].tolist()
                    if value == value and value not in categories
                )  # fmt: skip
        else:
            self._column_missing += np.isnan(stacked).sum(axis=0)

    def snapshot(self) -> MetricsSnapshot:
        self._fold()
        captured, queued = self._capture_counts() if self._capture_counts else ({}, 0)
        return MetricsSnapshot(
            requests_by_code=dict(self._requests_by_code),
            latency_counts=list(self._latency_counts),
            latency_sum=self._latency_sum,
            rows=self._rows,
            class_counts=[int(c) for c in self._class_counts],
            value_counts=[int(c) for c in self._value_counts] if self._class_labels is None else [],
            value_sum=self._value_sum,
            feature_count=self._feature_count,
            feature_sum=[float(v) for v in self._feature_sum],
            feature_sum_squares=[float(v) for v in self._feature_sum_squares],
            feature_missing=[int(v) for v in self._feature_missing],
            column_missing=[int(v) for v in self._column_missing],
            unseen_categories=[int(v) for v in self._unseen],
            feature_bins=[[int(v) for v in counts] for counts in self._feature_bins],
            prediction_bins=[int(v) for v in self._prediction_bins],
            capture_records=dict(captured),
            capture_queue=queued,
            feedback_records=self._feedback_records,
        )


class _SnapshotCollector:
    def __init__(self, source: ExpositionSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source.merged_snapshot()
        yield from metric_families(
            self._source.labels,
            self._source.feature_names(),
            self._source.class_labels(),
            snapshot,
            self._source.is_ready(),
            self._source.tabular_layout(),
        )
        yield from monitoring_families(
            self._source.labels,
            self._source.drift_plan(),
            self._source.capture_enabled(),
            snapshot,
        )


class ExpositionSource(Protocol):
    """What a scrape needs: labels, the model's names, the merged totals and readiness."""

    labels: MetricLabels

    def feature_names(self) -> Sequence[str]: ...

    def class_labels(self) -> Sequence[str] | None: ...

    def tabular_layout(self) -> TabularLayout | None: ...

    def merged_snapshot(self) -> MetricsSnapshot: ...

    def is_ready(self) -> bool: ...

    def drift_plan(self) -> DriftPlan | None: ...

    def capture_enabled(self) -> bool: ...


def render(source: ExpositionSource) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(source))
    return generate_latest(registry)


def metric_families(
    labels: MetricLabels,
    feature_names: Sequence[str],
    class_labels: Sequence[str] | None,
    snapshot: MetricsSnapshot,
    ready: bool,
    layout: TabularLayout | None = None,
) -> Iterable[Metric]:
    names, values = labels.names(), labels.values()

    ready_gauge = GaugeMetricFamily(
        "kiln_model_ready", "1 when the model is loaded and serving", labels=names
    )
    ready_gauge.add_metric(values, 1.0 if ready else 0.0)
    yield ready_gauge

    requests = CounterMetricFamily(
        "kiln_inference_requests",
        "Inference requests by HTTP status code",
        labels=[*names, "code"],
    )
    for code, requests_count in sorted(snapshot.requests_by_code.items()):
        requests.add_metric([*values, str(code)], requests_count)
    yield requests

    latency = HistogramMetricFamily(
        "kiln_inference_request_duration_seconds",
        "Time from a fully received inference request to its response being written",
        labels=names,
    )
    latency.add_metric(values, _cumulative(LATENCY_BUCKETS, snapshot.latency_counts),
                       snapshot.latency_sum)  # fmt: skip
    yield latency

    rows = CounterMetricFamily("kiln_inference_rows", "Rows (instances) predicted", labels=names)
    rows.add_metric(values, snapshot.rows)
    yield rows

    if class_labels is not None:
        predictions = CounterMetricFamily(
            "kiln_predictions", "Predicted rows by class", labels=[*names, "class"]
        )
        for label, class_count in zip(class_labels, snapshot.class_counts, strict=False):
            predictions.add_metric([*values, label], class_count)
        yield predictions
    elif snapshot.value_counts:
        histogram = HistogramMetricFamily(
            "kiln_prediction_value", "Distribution of predicted values", labels=names
        )
        histogram.add_metric(values, _cumulative(PREDICTION_VALUE_BUCKETS, snapshot.value_counts),
                             snapshot.value_sum)  # fmt: skip
        yield histogram

    count = CounterMetricFamily(
        "kiln_feature_values", "Observed values per input feature", labels=[*names, "feature"]
    )
    total = GaugeMetricFamily(
        "kiln_feature_value_sum", "Sum of observed values per feature", labels=[*names, "feature"]
    )
    squares = GaugeMetricFamily(
        "kiln_feature_value_sum_squares",
        "Sum of squared observed values per feature",
        labels=[*names, "feature"],
    )
    for index, feature in enumerate(feature_names):
        missing = snapshot.feature_missing[index] if index < len(snapshot.feature_missing) else 0
        count.add_metric([*values, feature], snapshot.feature_count - missing)
        if index < len(snapshot.feature_sum):
            total.add_metric([*values, feature], snapshot.feature_sum[index])
            squares.add_metric([*values, feature], snapshot.feature_sum_squares[index])
    yield count
    yield total
    yield squares
    if layout is None:
        return
    absent = CounterMetricFamily(
        "kiln_missing_values",
        "Rows sent without a value (null / NaN), per input column",
        labels=[*names, "feature"],
    )
    for index, column in enumerate(layout.column_names):
        if index < len(snapshot.column_missing):
            absent.add_metric([*values, column], snapshot.column_missing[index])
    yield absent
    unseen = CounterMetricFamily(
        "kiln_unseen_categories",
        "Values of a categorical column that the training split never had (served as the "
        "encoder says: infrequent / all-zero one-hot, or ordinal -1)",
        labels=[*names, "feature"],
    )
    for index, (column, _, _) in enumerate(layout.categorical):
        if index < len(snapshot.unseen_categories):
            unseen.add_metric([*values, column], snapshot.unseen_categories[index])
    yield unseen


def monitoring_families(
    labels: MetricLabels, drift: DriftPlan | None, capture: bool, snapshot: MetricsSnapshot
) -> Iterable[Metric]:
    """Drift bins (every bin from 0 on), and the capture and feedback counters."""
    names, values = labels.names(), labels.values()
    if drift is not None:
        features = CounterMetricFamily(
            FEATURE_BIN_METRIC,
            "Input values per feature counted into the training baseline's bins",
            labels=[*names, "feature", "bin"],
        )
        for index, feature in enumerate(drift.features):
            row = snapshot.feature_bins[index] if index < len(snapshot.feature_bins) else []
            for position, label in enumerate(feature.bins):
                count = row[position] if position < len(row) else 0
                features.add_metric([*values, feature.name, label], count)
        yield features
        if drift.prediction_bins:
            predictions = CounterMetricFamily(
                PREDICTION_BIN_METRIC,
                "Predictions counted into the training baseline's prediction bins",
                labels=[*names, "bin"],
            )
            counts = snapshot.prediction_bins
            for position, label in enumerate(drift.prediction_bins):
                count = counts[position] if position < len(counts) else 0
                predictions.add_metric([*values, label], count)
            yield predictions
        unmonitored = GaugeMetricFamily(
            UNMONITORED_FEATURES_METRIC,
            "Baseline features beyond the monitored-feature cap, not counted by this server",
            labels=names,
        )
        unmonitored.add_metric(values, drift.unmonitored)
        yield unmonitored
    if capture:
        records = CounterMetricFamily(
            CAPTURE_RECORDS_METRIC,
            "Capture records by fate: written to the store, dropped (queue full), failed",
            labels=[*names, "result"],
        )
        for result in CAPTURE_RESULTS:
            records.add_metric([*values, result], snapshot.capture_records.get(result, 0))
        yield records
        depth = GaugeMetricFamily(
            CAPTURE_QUEUE_METRIC, "Capture records waiting to be written", labels=names
        )
        depth.add_metric(values, snapshot.capture_queue)
        yield depth
        feedback = CounterMetricFamily(
            FEEDBACK_RECORDS_METRIC, "Ground-truth labels accepted", labels=names
        )
        feedback.add_metric(values, snapshot.feedback_records)
        yield feedback


def _cumulative(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, bucket_count in zip(bounds, counts, strict=False):
        running += bucket_count
        buckets.append((_bound_text(bound), running))
    running += counts[len(bounds)] if len(counts) > len(bounds) else 0
    buckets.append(("+Inf", running))
    return buckets


def _bound_text(bound: float) -> str:
    return repr(float(bound))
