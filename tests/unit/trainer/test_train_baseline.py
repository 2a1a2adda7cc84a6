"""The training baseline: profiles of a known table, bins the server reproduces, bytes."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from kiln.contract.monitoring import (
    NUMERIC_BINS,
    OTHER_BIN,
    TOP_CATEGORIES,
    Baseline,
    Distribution,
    FeatureProfile,
    feature_bin,
    numeric_bin,
)
from kiln.tabular.coerce import canonical_frame
from kiln.tabular.schema import ColumnSchema, TabularSchema
from kiln.trainer.baseline import (
    baseline_bytes,
    numeric_distribution,
    numeric_edges,
    predictions_profile,
    training_baseline,
)
from kiln.trainer.metrics import Predictions

pytestmark = pytest.mark.unit

ROWS = 120
COLUMNS = (
    ColumnSchema("repeats", "numeric", "float64", True),
    ColumnSchema("constant", "numeric", "float64", False),
    ColumnSchema("colour", "categorical", "str", True),
    ColumnSchema("member", "boolean", "bool", False),
    ColumnSchema("joined", "datetime", "str", False),
)


def _raw() -> dict[str, list[object]]:
    """Raw values as a request (or a CSV) gives them, before coercion."""
    repeats: list[object] = [float(i % 4) if i % 3 else 7.5 for i in range(ROWS)]
    for i in range(0, ROWS, 10):
        repeats[i] = None  # 10 % missing
    colour: list[object] = [f"c{i % (TOP_CATEGORIES + 5):02d}" for i in range(ROWS)]
    colour[1] = None
    return {
        "repeats": repeats,
        "constant": [3.0] * ROWS,
        "colour": colour,
        "member": [i % 4 == 0 for i in range(ROWS)],
        "joined": ["2024-01-02T03:04:05Z"] * ROWS,
    }


def _table() -> pd.DataFrame:
    """The canonical training split, as the trainer's x_train holds it."""
    return canonical_frame(TabularSchema(columns=COLUMNS), _raw())


def _classifier_predictions() -> Predictions:
    return Predictions(
        y_true=np.array(["b", "a", "a", "c", "a", "b"], dtype=object),
        y_pred=np.array(["a", "a", "a", "c", "b", "b"], dtype=object),
        classes=["a", "b", "c"],
    )


def _baseline() -> Baseline:
    return training_baseline(COLUMNS, _table(), _classifier_predictions(), True)


def test_profile_of_a_known_table() -> None:
    baseline = _baseline()
    assert baseline.rows == ROWS and baseline.task == "classification"
    assert [f.name for f in baseline.features] == [c.name for c in COLUMNS]
    by_name = {f.name: f for f in baseline.features}

    repeats = by_name["repeats"]
    assert repeats.kind == "numeric"
    assert repeats.missing_rate == pytest.approx(0.1)
    # Five distinct values (0, 1, 2, 3, 7.5): at most five non-empty bins, not ten.
    dist = repeats.distribution
    assert dist.count == ROWS - 12
    assert dist.edges == sorted(set(dist.edges or []))
    assert 1 < len(dist.shares) <= 5 and all(s > 0 for s in dist.shares)
    assert len(dist.shares) == len(dist.edges or []) + 1

    constant = by_name["constant"].distribution
    assert (constant.edges, constant.shares, constant.count) == ([], [1.0], ROWS)

    colour = by_name["colour"]
    assert colour.kind == "categorical"
    assert colour.missing_rate == pytest.approx(1 / ROWS, abs=1e-6)
    labels = colour.distribution.labels or []
    assert len(labels) == TOP_CATEGORIES + 1 and labels[-1] == OTHER_BIN
    assert OTHER_BIN not in labels[:-1]

    member = by_name["member"]
    assert member.kind == "boolean"
    assert member.distribution.labels == ["False", "True"]
    assert member.distribution.shares == [0.75, 0.25]

    joined = by_name["joined"]
    assert joined.kind == "datetime" and joined.missing_rate == 0.0
    assert joined.distribution.shares == [] and joined.distribution.count == 0


def test_shares_sum_to_one() -> None:
    baseline = _baseline()
    binned = [f.distribution for f in baseline.features if f.distribution.count]
    for dist in [*binned, baseline.predictions, baseline.labels]:
        assert dist is not None
        assert sum(dist.shares) == pytest.approx(1.0, abs=1e-5)
        assert all(0 <= s <= 1 for s in dist.shares)


def _counted(profile: FeatureProfile, values: list[object]) -> list[float]:
    """Shares as the server counts them: feature_bin on each value."""
    bins = [feature_bin(profile, v) for v in values]
    present = [b for b in bins if b is not None]
    counts = Counter(present)
    return [round(counts[label] / len(present), 6) for label in profile.distribution.bin_labels()]


def test_the_servers_binning_of_the_training_values_reproduces_the_shares() -> None:
    baseline = _baseline()
    canonical = _table()
    raw = _raw()
    for profile in baseline.features:
        if not profile.distribution.shares:
            continue
        # The coerced values the pipeline takes, and the raw values a request sends.
        for values in (canonical[profile.name].tolist(), raw[profile.name]):
            assert _counted(profile, values) == profile.distribution.shares, profile.name


def test_numeric_bin_reproduces_numeric_shares() -> None:
    rng = np.random.default_rng(7)
    values = np.round(rng.normal(50, 10, 997), 1)
    dist = numeric_distribution(values)
    assert len(dist.shares) == NUMERIC_BINS
    counts = Counter(numeric_bin(dist.edges or [], float(v)) for v in values)
    assert [round(counts[str(i)] / len(values), 6) for i in range(NUMERIC_BINS)] == dist.shares
    # Quantile bins: each holds about a tenth.
    assert all(abs(s - 0.1) < 0.02 for s in dist.shares)


def test_numeric_edges_for_repeats_and_constants() -> None:
    assert numeric_edges(np.array([5.0] * 20)) == []
    assert numeric_edges(np.array([np.nan, np.nan])) == []
    assert numeric_edges(np.array([0.0] * 90 + [1.0] * 10)) == [1.0]
    # An edge never sits at the minimum (an empty first bin).
    edges = numeric_edges(np.array([1.0] * 50 + list(range(2, 52))))
    assert edges[0] > 1.0
    assert numeric_distribution(np.array([])).shares == []
    with_infinity = numeric_distribution(np.array([1.0, 2.0, np.inf, -np.inf]))
    assert all(np.isfinite(with_infinity.edges or []))
    assert sum(with_infinity.shares) == pytest.approx(1.0) and with_infinity.count == 4


def test_baseline_bytes_are_reproducible_and_canonical() -> None:
    first = baseline_bytes(_baseline())
    second = baseline_bytes(_baseline())
    assert first == second
    document = json.loads(first)
    assert first == (json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n").encode()
    assert "missingRate" in document["features"][0]  # camelCase, as every Kiln document
    assert Baseline.model_validate_json(first) == _baseline()


def test_classifier_prediction_profile_follows_the_class_order() -> None:
    predicted, truth = predictions_profile(_classifier_predictions(), True)
    assert predicted.labels == ["a", "b", "c"]
    assert predicted.shares == [0.5, 0.333333, 0.166667]
    assert truth.labels == ["a", "b", "c"]
    assert truth.shares == [0.5, 0.333333, 0.166667] and truth.count == 6


def test_classifier_labels_are_the_str_of_numeric_classes() -> None:
    predictions = Predictions(
        y_true=np.array([0, 1, 1, 2]),
        y_pred=np.array([0, 1, 1, 1]),
        classes=list(np.array([0, 1, 2])),
    )
    predicted, truth = predictions_profile(predictions, True)
    assert predicted.labels == ["0", "1", "2"]
    assert predicted.shares == [0.25, 0.75, 0.0]
    assert truth.shares == [0.25, 0.5, 0.25]


def test_a_held_out_label_the_model_never_saw_is_other() -> None:
    predictions = Predictions(
        y_true=np.array(["a", "z"], dtype=object),
        y_pred=np.array(["a", "a"], dtype=object),
        classes=["a", "b"],
    )
    predicted, truth = predictions_profile(predictions, True)
    assert predicted.labels == ["a", "b"]
    assert truth.labels == ["a", "b", OTHER_BIN] and truth.shares == [0.5, 0.0, 0.5]


def test_regressor_prediction_profile_is_quantile_bins() -> None:
    rng = np.random.default_rng(1)
    y_true = rng.normal(100, 20, 400)
    y_pred = y_true + rng.normal(0, 5, 400)
    predicted, truth = predictions_profile(Predictions(y_true=y_true, y_pred=y_pred), False)
    for dist, values in ((predicted, y_pred), (truth, y_true)):
        assert dist.labels is None and len(dist.shares) == NUMERIC_BINS
        assert dist.count == 400
        counts = Counter(numeric_bin(dist.edges or [], float(v)) for v in values)
        assert [round(counts[str(i)] / 400, 6) for i in range(NUMERIC_BINS)] == dist.shares
    baseline = training_baseline(COLUMNS[:1], _table(), Predictions(y_true, y_pred), False)
    assert baseline.task == "regression"


def test_feature_bin_names_request_values_like_the_training_values() -> None:
    boolean = FeatureProfile(
        name="b",
        kind="boolean",
        distribution=Distribution(labels=["False", "True"], shares=[0.5, 0.5], count=2),
    )
    assert [feature_bin(boolean, v) for v in (True, 1, 1.0, np.float64(1.0))] == ["True"] * 4
    assert [feature_bin(boolean, v) for v in (False, 0, 0.0)] == ["False"] * 3
    assert feature_bin(boolean, None) is None and feature_bin(boolean, float("nan")) is None
    category = FeatureProfile(
        name="c",
        kind="categorical",
        distribution=Distribution(labels=["3", "x", OTHER_BIN], shares=[0.4, 0.4, 0.2]),
    )
    assert [feature_bin(category, v) for v in (3, 3.0, "3", np.int64(3))] == ["3"] * 4
    assert feature_bin(category, "y") == OTHER_BIN
    numeric = FeatureProfile(
        name="n",
        kind="numeric",
        distribution=Distribution(edges=[1.0, 2.0], shares=[0.3, 0.3, 0.4]),
    )
    assert [feature_bin(numeric, v) for v in (0.5, 1, 2.0, np.float32(9))] == ["0", "1", "2", "2"]
    assert feature_bin(numeric, np.float64("nan")) is None
    dated = FeatureProfile(name="d", kind="datetime", distribution=Distribution())
    assert feature_bin(dated, "2024-01-01") is None
