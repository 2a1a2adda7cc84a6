"""Prometheus exposition of the server's metrics, and merging across worker processes."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiln.server.drift import DriftPlan
from kiln.server.telemetry import (
    MetricLabels,
    MetricsSnapshot,
    ServingMetrics,
    TabularLayout,
    metric_families,
    render,
)

pytestmark = pytest.mark.unit

LABELS = MetricLabels("iris", "2", "stable")
FEATURES = ("a", "b")


class Source:
    def __init__(self, metrics: ServingMetrics, peers: list[MetricsSnapshot] | None = None):
        self.labels = metrics.labels
        self._metrics = metrics
        self._peers = peers or []

    def feature_names(self) -> tuple[str, ...]:
        return self._metrics.feature_names

    def class_labels(self) -> tuple[str, ...] | None:
        return self._metrics.class_labels

    def tabular_layout(self) -> TabularLayout | None:
        return self._metrics.layout

    def merged_snapshot(self) -> MetricsSnapshot:
        merged = self._metrics.snapshot()
        for peer in self._peers:
            merged.merge(peer)
        return merged

    def is_ready(self) -> bool:
        return True

    def drift_plan(self) -> DriftPlan | None:
        return self._metrics.drift

    def capture_enabled(self) -> bool:
        return False


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def key(name: str, **extra: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = {"model": "iris", "version": "2", "track": "stable", **extra}
    return name, tuple(sorted(labels.items()))


def classifier_metrics() -> ServingMetrics:
    metrics = ServingMetrics(LABELS)
    metrics.configure_model(FEATURES, ("no", "yes"))
    return metrics


def test_feature_statistics_are_exact_sums() -> None:
    metrics = classifier_metrics()
    first = np.array([[1.0, -2.0], [3.0, 4.0]])
    second = np.array([[0.5, 0.25]])
    metrics.observe_rows(first, np.array([0, 1]), np.array([0, 1]))
    metrics.observe_rows(second, np.array([1]), np.array([1]))
    found = samples(render(Source(metrics)))
    assert found[key("kiln_feature_values_total", feature="a")] == 3
    assert found[key("kiln_feature_value_sum", feature="a")] == 4.5
    assert found[key("kiln_feature_value_sum", feature="b")] == 2.25
    assert found[key("kiln_feature_value_sum_squares", feature="b")] == 4 + 16 + 0.0625
    assert found[key("kiln_predictions_total", **{"class": "yes"})] == 2
    assert found[key("kiln_predictions_total", **{"class": "no"})] == 1
    assert found[key("kiln_inference_rows_total")] == 3


def test_latency_histogram_buckets_are_cumulative() -> None:
    metrics = classifier_metrics()
    for seconds in (0.0002, 0.0007, 0.003, 20.0):
        metrics.observe_request(200, seconds)
    metrics.observe_request(400, 0.0001)
    found = samples(render(Source(metrics)))
    assert found[key("kiln_inference_request_duration_seconds_bucket", le="0.0005")] == 2
    assert found[key("kiln_inference_request_duration_seconds_bucket", le="0.001")] == 3
    assert found[key("kiln_inference_request_duration_seconds_bucket", le="10.0")] == 4
    assert found[key("kiln_inference_request_duration_seconds_bucket", le="+Inf")] == 5
    assert found[key("kiln_inference_request_duration_seconds_count")] == 5
    assert found[key("kiln_inference_requests_total", code="200")] == 4
    assert found[key("kiln_inference_requests_total", code="400")] == 1


def test_regressors_get_a_prediction_value_histogram() -> None:
    metrics = ServingMetrics(LABELS)
    metrics.configure_model(FEATURES, None)
    metrics.observe_rows(np.zeros((3, 2)), None, np.array([-5.0, 0.5, 2000.0]))
    found = samples(render(Source(metrics)))
    assert found[key("kiln_prediction_value_bucket", le="-1.0")] == 1
    assert found[key("kiln_prediction_value_bucket", le="1.0")] == 2
    assert found[key("kiln_prediction_value_bucket", le="1000.0")] == 2
    assert found[key("kiln_prediction_value_bucket", le="+Inf")] == 3
    # OpenMetrics: a histogram with negative buckets has no _sum; +Inf is the count.
    assert key("kiln_prediction_value_sum") not in found


def test_large_traffic_is_folded_in_bulk_without_losing_rows() -> None:
    metrics = classifier_metrics()
    for _ in range(3000):  # crosses the fold threshold several times
        metrics.observe_rows(np.ones((3, 2)), np.array([0, 1, 1]), np.array([0, 1, 1]))
    snapshot = metrics.snapshot()
    assert snapshot.rows == 9000
    assert snapshot.feature_count == 9000
    assert snapshot.feature_sum == [9000.0, 9000.0]
    assert snapshot.class_counts == [3000, 6000]


def test_worker_snapshots_merge_into_one_exposition() -> None:
    mine = classifier_metrics()
    mine.observe_request(200, 0.001)
    mine.observe_rows(np.array([[1.0, 1.0]]), np.array([1]), np.array([1]))
    peer = classifier_metrics()
    peer.observe_request(200, 0.001)
    peer.observe_request(503, 0.0001)
    peer.observe_rows(np.array([[2.0, 3.0]]), np.array([0]), np.array([0]))
    found = samples(render(Source(mine, [peer.snapshot()])))
    assert found[key("kiln_inference_requests_total", code="200")] == 2
    assert found[key("kiln_inference_requests_total", code="503")] == 1
    assert found[key("kiln_feature_value_sum", feature="b")] == 4.0
    assert found[key("kiln_predictions_total", **{"class": "no"})] == 1
    assert found[key("kiln_inference_rows_total")] == 2


def test_before_the_model_loads_only_request_metrics_exist() -> None:
    families = list(metric_families(LABELS, (), None, MetricsSnapshot(), ready=False))
    names = {family.name for family in families}
    assert "kiln_inference_requests" in names
    assert "kiln_prediction_value" not in names
    ready = next(f for f in families if f.name == "kiln_model_ready")
    assert ready.samples[0].value == 0
