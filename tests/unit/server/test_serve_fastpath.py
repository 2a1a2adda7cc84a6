"""Fast paths give exactly the estimator's own predictions (no tolerance anywhere)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from tests.support.tabular import column_inputs, penguins, random_penguin_rows

from kiln.api.preprocessing import PreprocessingSpec
from kiln.server.artifact import deserialise
from kiln.server.fastpath import compile_preparation, estimator_fast_path
from kiln.server.predictor import build_predictor
from kiln.server.protocol import parse_infer_request
from kiln.tabular.coerce import canonical_frame
from kiln.tabular.schema import schema_of
from kiln.trainer.artifact import dump_model
from kiln.trainer.preprocessing import (
    attach_schema,
    build_pipeline,
    canonical_features,
    plan_preparation,
    with_categories,
)

pytestmark = pytest.mark.unit


def training_data(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).round(2)  # rounded: many exact ties on split thresholds
    score = x[:, 0] + 0.5 * x[:, 1] * x[:, 2] - x[:, 3]
    edges = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
    return x, np.searchsorted(edges, score)


def thresholds(model: Any) -> np.ndarray:
    """Every split value of the model's trees, and the floats either side of it."""
    trees: list[Any] = []
    if hasattr(model, "estimators_"):
        for item in np.ravel(np.asarray(model.estimators_, dtype=object)):
            trees.append(item.tree_)
    values: list[float] = []
    for tree in trees:
        values.extend(float(t) for t, f in zip(tree.threshold, tree.feature, strict=True) if f >= 0)
    if hasattr(model, "_predictors"):
        for iteration in model._predictors:
            for predictor in iteration:
                nodes = predictor.nodes
                values.extend(
                    float(v) for v in nodes["num_threshold"][~nodes["is_leaf"].astype(bool)]
                )
    if hasattr(model, "booster_"):  # LightGBM
        splits = model.booster_.trees_to_dataframe()["threshold"].dropna()
        values.extend(float(v) for v in splits)
    if hasattr(model, "get_booster"):  # XGBoost: its own dump of every split
        splits = model.get_booster().trees_to_dataframe()["Split"].dropna()
        values.extend(float(v) for v in splits)
    # A split of the present values against the missing ones has an infinite threshold.
    base = np.asarray(values)
    base = base[np.isfinite(base)]
    # float32 neighbours too: forests compare in float32, HistGradientBoosting in float64.
    near32 = base.astype(np.float32)
    neighbours = [
        base,
        np.nextafter(base, np.inf),
        np.nextafter(base, -np.inf),
        np.nextafter(near32, np.float32(np.inf)).astype(np.float64),
        np.nextafter(near32, np.float32(-np.inf)).astype(np.float64),
    ]
    probes = np.unique(np.concatenate(neighbours))
    return probes[np.abs(probes) <= np.finfo(np.float32).max]  # what a float32 model takes


def probe_rows(model: Any, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    random_rows = rng.normal(scale=1.5, size=(400, 5))
    cut = thresholds(model)
    at_thresholds = rng.choice(cut, size=(600, 5)) if len(cut) else np.zeros((0, 5))
    # Mix: some columns on thresholds, others random.
    mixed = np.where(rng.random((600, 5)) < 0.5, at_thresholds, rng.normal(size=(600, 5)))
    return np.ascontiguousarray(np.vstack([random_rows, at_thresholds, mixed]))


CLASSIFIERS = [
    RandomForestClassifier(n_estimators=30, random_state=0),
    ExtraTreesClassifier(n_estimators=30, random_state=0),
    GradientBoostingClassifier(n_estimators=30, random_state=0),
    HistGradientBoostingClassifier(max_iter=30, random_state=0),
]
REGRESSORS = [
    RandomForestRegressor(n_estimators=30, random_state=0),
    ExtraTreesRegressor(n_estimators=30, random_state=0),
    GradientBoostingRegressor(n_estimators=30, random_state=0),
    HistGradientBoostingRegressor(max_iter=30, random_state=0),
]


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("model", CLASSIFIERS, ids=lambda m: type(m).__name__)
def test_tree_classifiers_match_their_own_predict_and_proba(model: Any, classes: int) -> None:
    x, y = training_data(600, classes, seed=classes)
    model.fit(x, y)
    fast = estimator_fast_path(model)
    assert fast is not None and fast.predict_proba is not None
    rows = probe_rows(model, seed=5)
    np.testing.assert_array_equal(model.classes_.take(fast.predict(rows)), model.predict(rows))
    np.testing.assert_array_equal(fast.predict_proba(rows), model.predict_proba(rows))
    for row in rows[:50]:  # one row at a time, as single requests arrive
        single = row.reshape(1, -1)
        np.testing.assert_array_equal(fast.predict_proba(single), model.predict_proba(single))


@pytest.mark.parametrize("model", REGRESSORS, ids=lambda m: type(m).__name__)
def test_tree_regressors_match_their_own_predict(model: Any) -> None:
    x, y = training_data(600, 2, seed=9)
    target = x[:, 0] * 3 + y
    model.fit(x, target)
    fast = estimator_fast_path(model)
    assert fast is not None
    rows = probe_rows(model, seed=6)
    np.testing.assert_array_equal(fast.predict(rows), model.predict(rows))


def with_gaps(rows: np.ndarray, share: float, seed: int) -> np.ndarray:
    """The rows with a share of their cells NaN, and a few rows missing every value."""
    rng = np.random.default_rng(seed)
    gapped = np.where(rng.random(rows.shape) < share, np.nan, rows)
    return np.ascontiguousarray(np.vstack([gapped, np.full((3, rows.shape[1]), np.nan)]))


def takes_nan(model: Any) -> bool:
    from sklearn.utils import get_tags

    return bool(get_tags(model).input_tags.allow_nan)


# The tree models whose scikit-learn accepts NaN (fitted with gaps, each split learns
# where missing values go); GradientBoosting does not, and is served NaN-free.
NAN_CLASSIFIERS = [m for m in CLASSIFIERS if takes_nan(m)]
NAN_REGRESSORS = [m for m in REGRESSORS if takes_nan(m)]


def test_the_installed_scikit_learn_trees_and_forests_take_nan() -> None:
    names = {type(m).__name__ for m in NAN_CLASSIFIERS + NAN_REGRESSORS}
    assert {"RandomForestClassifier", "ExtraTreesClassifier", "RandomForestRegressor",
            "ExtraTreesRegressor", "HistGradientBoostingClassifier",
            "HistGradientBoostingRegressor"} <= names  # fmt: skip
    assert not takes_nan(GradientBoostingClassifier())


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("model", NAN_CLASSIFIERS, ids=lambda m: type(m).__name__)
def test_tree_classifiers_fitted_with_gaps_match_their_own_on_missing_values(
    model: Any, classes: int
) -> None:
    x, y = training_data(600, classes, seed=20 + classes)
    model = clone(model).fit(with_gaps(x, 0.1, seed=1)[:-3], y)
    fast = estimator_fast_path(model)
    assert fast is not None and fast.predict_proba is not None
    rows = with_gaps(probe_rows(model, seed=7), 0.2, seed=2)
    assert np.isnan(rows).any(axis=1).mean() > 0.5
    np.testing.assert_array_equal(model.classes_.take(fast.predict(rows)), model.predict(rows))
    np.testing.assert_array_equal(fast.predict_proba(rows), model.predict_proba(rows))
    for row in rows[-60:]:  # one row at a time, the all-missing ones included
        single = row.reshape(1, -1)
        np.testing.assert_array_equal(fast.predict_proba(single), model.predict_proba(single))


@pytest.mark.parametrize("model", NAN_REGRESSORS, ids=lambda m: type(m).__name__)
def test_tree_regressors_fitted_with_gaps_match_their_own_on_missing_values(model: Any) -> None:
    x, y = training_data(600, 2, seed=30)
    model = clone(model).fit(with_gaps(x, 0.1, seed=3)[:-3], x[:, 0] * 3 + y)
    fast = estimator_fast_path(model)
    assert fast is not None
    rows = with_gaps(probe_rows(model, seed=8), 0.2, seed=4)
    np.testing.assert_array_equal(fast.predict(rows), model.predict(rows))


def test_a_forest_fitted_without_gaps_matches_its_own_on_missing_values() -> None:
    x, y = training_data(600, 3, seed=31)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y)
    fast = estimator_fast_path(model)
    assert fast is not None and fast.predict_proba is not None
    rows = with_gaps(probe_rows(model, seed=9), 0.2, seed=5)
    np.testing.assert_array_equal(fast.predict_proba(rows), model.predict_proba(rows))


def test_forests_walk_their_trees_directly_on_the_installed_scikit_learn() -> None:
    # The equality tests above then pin the direct walk, not the per-tree predict_proba.
    from kiln.server.fastpath import _tree_proba_is_its_leaf_values

    assert _tree_proba_is_its_leaf_values()


def test_a_forest_with_parallel_jobs_keeps_its_own_predict() -> None:
    x, y = training_data(200, 2, seed=1)
    model = RandomForestClassifier(n_estimators=5, n_jobs=2, random_state=0).fit(x, y)
    assert estimator_fast_path(model) is None


# --- the preparation -------------------------------------------------------------------------


def mixed_table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "colour": pd.Series(
                rng.choice(["red", "green", "blue", "teal", "plum", None], n), dtype=object
            ),
            "size": np.where(rng.random(n) < 0.1, np.nan, rng.normal(10, 3, n).round(1)),
            "flag": pd.Series(rng.choice([True, False, None], n), dtype=object),
            "code": rng.integers(1, 6, n),
            "when": pd.Series(
                rng.choice(["2024-01-31", "2023-07-04T10:30:00", None, "2021-02-28"], n),
                dtype=object,
            ),
            "weight": rng.exponential(2, n).round(2),
            "y": rng.integers(0, 3, n),
        }
    )


PREPARATIONS = {
    "defaults": {},
    "every-option": {
        "columns": [
            {
                "name": "colour",
                "encoder": "onehot",
                "maxCategories": 3,
                "impute": "constant",
                "fillValue": "none",
            },
            {"name": "size", "impute": "constant", "fillValue": "-1", "scaling": "minmax"},
            {"name": "code", "type": "categorical", "encoder": "ordinal"},
            {"name": "when", "type": "datetime", "dateParts": ["year", "month", "dayofweek"]},
            {"name": "weight", "impute": "mean", "scaling": "standard"},
        ]
    },
}


@pytest.mark.parametrize("estimator", ["sklearn.linear_model.LogisticRegression",
                                       "sklearn.ensemble.RandomForestClassifier"])  # fmt: skip
@pytest.mark.parametrize("preparation", list(PREPARATIONS))
def test_compiled_preparation_equals_the_column_transformer(
    preparation: str, estimator: str
) -> None:
    table = mixed_table(300, seed=2)
    spec = PreprocessingSpec.model_validate(PREPARATIONS[preparation])
    features = [c for c in table.columns if c != "y"]
    plan = plan_preparation(table, features, estimator, spec, protected=["y"])
    frame = canonical_features(table, plan)
    plan = with_categories(plan, frame)
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    model = (
        LogisticRegression(max_iter=300)
        if "linear" in estimator
        else RandomForestClassifier(n_estimators=10, random_state=0)
    )
    pipeline = build_pipeline(plan, model).fit(frame, table.y)
    attach_schema(pipeline, plan.schema())
    loaded = deserialise(dump_model(pipeline), "skops", allow_pickle=False)
    tabular = schema_of(loaded)
    assert tabular is not None
    prepare = compile_preparation(loaded.steps[0][1], tabular)
    assert prepare is not None
    # New rows: unseen colours and codes, gaps everywhere, out-of-range numbers.
    fresh = mixed_table(500, seed=3)
    fresh.loc[::7, "colour"] = "ultraviolet"
    fresh.loc[::5, "code"] = 9
    fresh.loc[::11, "weight"] = np.nan
    canonical = canonical_frame(tabular, {c: fresh[c].tolist() for c in tabular.names})
    matrix = np.empty((len(fresh), len(tabular.names)), dtype=object)
    for index, name in enumerate(tabular.names):
        matrix[:, index] = canonical[name].to_numpy(dtype=object)
    np.testing.assert_array_equal(prepare(matrix), loaded.steps[0][1].transform(canonical))
    predictor = build_predictor(loaded)
    assert predictor.fast_path
    np.testing.assert_array_equal(predictor.predict(matrix).values, loaded.predict(canonical))


# --- whole pipelines as served ---------------------------------------------------------------

FAMILIES = {
    "sklearn.linear_model.LogisticRegression": ({"max_iter": 500}, "linear"),
    "sklearn.ensemble.RandomForestClassifier": ({"n_estimators": 25}, "forest"),
    "sklearn.ensemble.ExtraTreesClassifier": ({"n_estimators": 25}, "forest"),
    "sklearn.ensemble.GradientBoostingClassifier": ({"n_estimators": 20}, "gradient-boosting"),
    "sklearn.ensemble.HistGradientBoostingClassifier": ({"max_iter": 20}, "hist-gradient-boosting"),
    "xgboost.XGBClassifier": ({"n_estimators": 20}, "xgboost"),
    "lightgbm.LGBMClassifier": ({"n_estimators": 20}, "lightgbm"),
}


@pytest.mark.parametrize("estimator", list(FAMILIES))
def test_each_family_is_served_through_its_fast_path(estimator: str) -> None:
    params, kind = FAMILIES[estimator]
    model = penguins(estimator, json.dumps(params, sort_keys=True))
    predictor = build_predictor(deserialise(model.artifact, "skops", allow_pickle=False))
    assert (predictor.fast_path, predictor.fast_path_kind) == (True, kind)
    rows = random_penguin_rows(200, seed=8)
    body = json.dumps({"inputs": column_inputs(rows)}).encode()
    features = parse_infer_request(body, predictor.schema, predictor.available_outputs).features
    np.testing.assert_array_equal(predictor.predict(features).values, model.trainer_predict(rows))
    (proba,) = predictor.outputs(features, predictor.predict(features).values, ["predict_proba"])
    np.testing.assert_array_equal(proba.values, model.trainer_predict(rows, proba=True))


def test_values_left_missing_go_to_the_estimators_own_validation() -> None:
    table = mixed_table(300, seed=4)[["size", "weight", "y"]]
    spec = PreprocessingSpec.model_validate({"numeric": {"impute": "none"}})
    plan = plan_preparation(table, ["size", "weight"], "sklearn.ensemble.X", spec)
    frame = canonical_features(table, plan)
    pipeline = build_pipeline(plan, HistGradientBoostingClassifier(max_iter=10)).fit(frame, table.y)
    attach_schema(pipeline, plan.schema())
    predictor = build_predictor(pipeline)
    matrix = frame.to_numpy(dtype=np.float64)
    assert np.isnan(matrix).any()  # NaN reaches HistGradientBoosting, which accepts it
    np.testing.assert_array_equal(predictor.predict(matrix).values, pipeline.predict(frame))


@pytest.mark.parametrize("classes", [2, 3])
def test_lightgbm_booster_path_matches_the_classifier(classes: int) -> None:
    from lightgbm import LGBMClassifier

    x, y = training_data(600, classes, seed=11)
    labels = np.array(["a", "b", "c"], dtype=object)[y]
    model = LGBMClassifier(n_estimators=30, verbose=-1, random_state=0).fit(x, labels)
    fast = estimator_fast_path(model)
    assert fast is not None and fast.kind == "lightgbm" and fast.predict_proba is not None
    rows = np.vstack([probe_rows(model, seed=3), np.full((3, 5), np.nan)])
    np.testing.assert_array_equal(fast.predict_proba(rows), model.predict_proba(rows))
    np.testing.assert_array_equal(model.classes_.take(fast.predict(rows)), model.predict(rows))


@pytest.mark.parametrize("classes", [2, 3])
def test_xgboost_path_matches_the_classifier_on_its_split_thresholds(classes: int) -> None:
    from xgboost import XGBClassifier

    from kiln.tabular.transforms import EncodedLabelClassifier

    x, y = training_data(600, classes, seed=12)
    labels = np.array(["a", "b", "c"], dtype=object)[y]
    model = EncodedLabelClassifier(XGBClassifier(n_estimators=30, random_state=0))
    model.fit(with_gaps(x, 0.05, seed=6)[:-3], labels)  # as kiln-train wraps it
    fast = estimator_fast_path(model)
    assert fast is not None and fast.kind == "xgboost" and fast.predict_proba is not None
    cut = thresholds(model.estimator_)
    assert len(cut) > 100
    rows = np.vstack([probe_rows(model.estimator_, seed=4), with_gaps(x[:200], 0.3, seed=7)])
    np.testing.assert_array_equal(fast.predict_proba(rows), model.predict_proba(rows))
    np.testing.assert_array_equal(model.classes_.take(fast.predict(rows)), model.predict(rows))
    # The bare classifier (labels 0..K-1) goes through the same routines.
    bare = model.estimator_
    fast = estimator_fast_path(bare)
    assert fast is not None and fast.predict_proba is not None
    np.testing.assert_array_equal(fast.predict_proba(rows), bare.predict_proba(rows))
    np.testing.assert_array_equal(bare.classes_.take(fast.predict(rows)), bare.predict(rows))


def test_xgboost_path_matches_the_regressor_on_its_split_thresholds() -> None:
    from xgboost import XGBRegressor

    x, y = training_data(600, 2, seed=13)
    model = XGBRegressor(n_estimators=30, random_state=0).fit(x, x[:, 0] * 3 + y)
    fast = estimator_fast_path(model)
    assert fast is not None and fast.kind == "xgboost"
    rows = with_gaps(probe_rows(model, seed=5), 0.1, seed=8)
    np.testing.assert_array_equal(fast.predict(rows), model.predict(rows))
