"""Drift bins: input values and predictions counted into the training baseline's own bins."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiln.contract.monitoring import (
    MAX_MONITORED_FEATURES,
    MISSING_BIN,
    OTHER_BIN,
    Baseline,
    Distribution,
    FeatureProfile,
    category_bin,
    numeric_bin,
)
from kiln.server.drift import DriftPlan, compile_drift
from kiln.server.telemetry import (
    MetricLabels,
    MetricsSnapshot,
    ServingMetrics,
    TabularLayout,
    render,
)

pytestmark = pytest.mark.unit

LABELS = MetricLabels("iris", "2", "stable")
EDGES = [1.0, 2.0, 3.0]


def numeric(name: str, edges: list[float] = EDGES) -> FeatureProfile:
    shares = [1 / (len(edges) + 1)] * (len(edges) + 1)
    return FeatureProfile(
        name=name, kind="numeric", distribution=Distribution(edges=edges, shares=shares)
    )


def categorical(name: str, labels: list[str], kind: str = "categorical") -> FeatureProfile:
    shares = [1 / len(labels)] * len(labels)
    return FeatureProfile(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        distribution=Distribution(labels=labels, shares=shares),
    )


def baseline(*features: FeatureProfile, predictions: Distribution | None = None) -> Baseline:
    task = "regression" if predictions is not None and predictions.edges else "classification"
    return Baseline(rows=100, features=list(features), predictions=predictions, task=task)  # type: ignore[arg-type]


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


def series(text: bytes, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name:
                extra = {k: v for k, v in sample.labels.items()}
                for label in ("model", "version", "track"):
                    extra.pop(label)
                found[tuple(sorted(extra.items()))] = sample.value
    return found


def feature_bins(text: bytes) -> dict[tuple[str, str], float]:
    return {
        (dict(k)["feature"], dict(k)["bin"]): v
        for k, v in series(text, "kiln_feature_bin_total").items()
    }


def prediction_bins(text: bytes) -> dict[str, float]:
    return {dict(k)["bin"]: v for k, v in series(text, "kiln_prediction_bin_total").items()}


def plain_metrics(plan_baseline: Baseline, names: tuple[str, ...], classes: tuple[str, ...] | None):
    metrics = ServingMetrics(LABELS)
    metrics.configure_model(names, classes)
    metrics.configure_drift(compile_drift(plan_baseline, names, None, classes))
    return metrics


def test_numeric_values_fall_into_the_same_bins_as_contract_numeric_bin() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.uniform(-1, 5, 500), np.array(EDGES), np.array([-1e9, 1e9])])
    metrics = plain_metrics(baseline(numeric("x")), ("x",), ("a", "b"))
    metrics.observe_rows(values.reshape(-1, 1), np.zeros(len(values), np.intp), values)
    found = feature_bins(render(Source(metrics)))
    expected: dict[str, int] = {}
    for value in values.tolist():
        label = numeric_bin(EDGES, value)
        assert label is not None
        expected[label] = expected.get(label, 0) + 1
    assert {b: found[("x", b)] for b in expected} == expected
    assert found[("x", MISSING_BIN)] == 0
    # An edge value belongs to the bin on its right ([edges[i-1], edges[i]) bins).
    assert numeric_bin(EDGES, 2.0) == "2"


def test_every_bin_is_exported_at_zero_before_any_traffic() -> None:
    plan = baseline(
        numeric("x"),
        categorical("colour", ["red", "green", OTHER_BIN]),
        predictions=Distribution(labels=["a", "b"], shares=[0.5, 0.5]),
    )
    metrics = ServingMetrics(LABELS)
    metrics.configure_model(("x",), ("a", "b"))
    metrics.configure_drift(
        compile_drift(plan, ("x", "colour"), ("numeric", "categorical"), ("a", "b"))
    )
    text = render(Source(metrics))
    assert feature_bins(text) == {
        **{("x", b): 0.0 for b in ("0", "1", "2", "3", MISSING_BIN)},
        **{("colour", b): 0.0 for b in ("red", "green", OTHER_BIN, MISSING_BIN)},
    }
    assert prediction_bins(text) == {"a": 0.0, "b": 0.0}
    assert series(text, "kiln_drift_unmonitored_features") == {(): 0.0}


def test_no_baseline_means_no_drift_series() -> None:
    metrics = ServingMetrics(LABELS)
    metrics.configure_model(("x",), ("a", "b"))
    metrics.configure_drift(None)
    text = render(Source(metrics)).decode()
    assert "kiln_feature_bin" not in text
    assert "kiln_prediction_bin" not in text
    assert "kiln_drift_unmonitored_features" not in text


def test_tabular_columns_count_missing_other_booleans_and_numbers() -> None:
    plan = baseline(
        numeric("length"),
        categorical("island", ["Biscoe", "Dream", OTHER_BIN]),
        categorical("male", ["false", "true"], kind="boolean"),
        categorical("year", ["2007", "2008"]),
    )
    names = ("island", "length", "male", "year")
    kinds = ("categorical", "numeric", "boolean", "categorical")
    metrics = ServingMetrics(LABELS)
    layout = TabularLayout((1, 2), names, (("island", 0, frozenset({"Biscoe", "Dream"})),))
    metrics.configure_model(("length", "male"), ("Adelie", "Gentoo"), layout)
    metrics.configure_drift(compile_drift(plan, names, kinds, ("Adelie", "Gentoo")))
    nan = float("nan")
    matrix = np.array(
        [
            ["Biscoe", 0.5, 1.0, "2007"],
            ["Dream", 2.0, 0.0, "2009"],
            ["Atlantis", nan, nan, nan],
            [nan, 9.0, 1.0, "2008"],
        ],
        dtype=object,
    )
    metrics.observe_rows(matrix, np.array([0, 1, 1, 0]), np.array(["Adelie"] * 4, dtype=object))
    found = feature_bins(render(Source(metrics)))
    assert {b: found[("island", b)] for b in ("Biscoe", "Dream", OTHER_BIN, MISSING_BIN)} == {
        "Biscoe": 1,
        "Dream": 1,
        OTHER_BIN: 1,  # a category the baseline does not name
        MISSING_BIN: 1,
    }
    assert [found[("length", b)] for b in ("0", "1", "2", "3", MISSING_BIN)] == [1, 0, 1, 1, 1]
    assert [found[("male", b)] for b in ("false", "true", OTHER_BIN, MISSING_BIN)] == [1, 2, 0, 1]
    assert [found[("year", b)] for b in ("2007", "2008", OTHER_BIN, MISSING_BIN)] == [1, 1, 1, 1]
    # The same answers as the contract's one-value functions.
    assert category_bin(["Biscoe", "Dream", OTHER_BIN], "Atlantis") == OTHER_BIN


def test_an_all_numeric_tabular_matrix_counts_nan_as_missing() -> None:
    plan = baseline(numeric("a"), numeric("b"))
    metrics = ServingMetrics(LABELS)
    layout = TabularLayout((0, 1), ("a", "b"), ())
    metrics.configure_model(("a", "b"), None, layout)
    metrics.configure_drift(compile_drift(plan, ("a", "b"), ("numeric", "numeric"), None))
    matrix = np.array([[np.nan, 1.5], [0.0, np.nan], [5.0, 2.5]])
    metrics.observe_rows(matrix, None, np.array([1.0, 2.0, 3.0]))
    found = feature_bins(render(Source(metrics)))
    assert found[("a", MISSING_BIN)] == 1 and found[("b", MISSING_BIN)] == 1
    assert found[("a", "0")] == 1 and found[("a", "3")] == 1
    assert found[("b", "1")] == 1 and found[("b", "2")] == 1


def test_classifier_predictions_count_by_class_label_and_unknown_classes_share_other() -> None:
    plan = baseline(
        numeric("x"), predictions=Distribution(labels=["setosa", "versicolor"], shares=[0.5, 0.5])
    )
    classes = ("setosa", "versicolor", "virginica")
    metrics = plain_metrics(plan, ("x",), classes)
    metrics.observe_rows(np.zeros((5, 1)), np.array([0, 0, 1, 2, 2]), np.array(["setosa"] * 5))
    assert prediction_bins(render(Source(metrics))) == {
        "setosa": 2,
        "versicolor": 1,
        OTHER_BIN: 2,
    }


def test_classifier_without_baseline_predictions_uses_the_model_classes() -> None:
    metrics = plain_metrics(baseline(numeric("x")), ("x",), ("0", "1"))
    metrics.observe_rows(np.zeros((3, 1)), np.array([1, 1, 0]), np.array([1, 1, 0]))
    assert prediction_bins(render(Source(metrics))) == {"0": 1, "1": 2}


def test_regressor_predictions_count_into_value_bins() -> None:
    plan = baseline(numeric("x"), predictions=Distribution(edges=[10.0, 20.0], shares=[0.3] * 3))
    metrics = plain_metrics(plan, ("x",), None)
    values = np.array([5.0, 10.0, 15.0, 25.0, 30.0])
    metrics.observe_rows(np.zeros((5, 1)), None, values)
    assert prediction_bins(render(Source(metrics))) == {"0": 1, "1": 2, "2": 2}


def test_features_beyond_the_cap_are_not_counted_and_reported_by_a_gauge() -> None:
    count = MAX_MONITORED_FEATURES + 6
    names = tuple(f"c{i}" for i in range(count))
    plan = baseline(*(numeric(name) for name in names))
    metrics = plain_metrics(plan, names, ("a", "b"))
    metrics.observe_rows(np.ones((2, count)), np.array([0, 1]), np.array(["a", "b"]))
    text = render(Source(metrics))
    counted = {feature for feature, _ in feature_bins(text)}
    assert counted == set(names[:MAX_MONITORED_FEATURES])
    assert series(text, "kiln_drift_unmonitored_features") == {(): 6.0}


def test_a_bare_model_without_names_matches_baseline_features_by_position() -> None:
    plan = baseline(numeric("sepal_length"), numeric("sepal_width"))
    metrics = plain_metrics(plan, ("f0", "f1"), ("a", "b"))
    metrics.observe_rows(np.array([[0.0, 2.5]]), np.array([0]), np.array(["a"]))
    found = feature_bins(render(Source(metrics)))
    assert found[("sepal_length", "0")] == 1 and found[("sepal_width", "2")] == 1


def test_a_baseline_feature_the_model_does_not_take_is_left_out() -> None:
    plan = baseline(numeric("x"), numeric("wingspan"))
    metrics = plain_metrics(plan, ("x", "y", "z"), ("a", "b"))
    assert {f for f, _ in feature_bins(render(Source(metrics)))} == {"x"}


def test_worker_snapshots_merge_the_bin_counts() -> None:
    plan = baseline(numeric("x"), predictions=Distribution(labels=["a", "b"], shares=[0.5, 0.5]))
    mine = plain_metrics(plan, ("x",), ("a", "b"))
    peer = plain_metrics(plan, ("x",), ("a", "b"))
    mine.observe_rows(np.array([[0.5], [2.5]]), np.array([0, 1]), np.array(["a", "b"]))
    peer.observe_rows(np.array([[0.7]]), np.array([0]), np.array(["a"]))
    found = render(Source(mine, [peer.snapshot()]))
    assert feature_bins(found)[("x", "0")] == 2
    assert feature_bins(found)[("x", "2")] == 1
    assert prediction_bins(found) == {"a": 2, "b": 1}


def test_a_snapshot_without_bins_merges_into_one_with_bins() -> None:
    empty = MetricsSnapshot()
    full = MetricsSnapshot(feature_bins=[[1, 2]], prediction_bins=[3])
    empty.merge(full)
    assert empty.feature_bins == [[1, 2]] and empty.prediction_bins == [3]
    full.merge(MetricsSnapshot())
    assert full.feature_bins == [[1, 2]]
