"""The predictor's fast path gives exactly what estimator.predict gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import (
    ElasticNet,
    LinearRegression,
    LogisticRegression,
    Perceptron,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from tests.support.serving import IRIS_FEATURES, iris

from kiln.server.predictor import build_predictor
from kiln.server.protocol import PREDICT_OUTPUT, PROBA_OUTPUT

pytestmark = pytest.mark.unit


def probe_rows() -> np.ndarray:
    """Training rows, random rows well outside the data, and rows on decision boundaries."""
    features, _ = iris()
    generator = np.random.default_rng(0)
    wild = generator.normal(0, 50, size=(500, 4))
    return np.ascontiguousarray(np.vstack([features, wild, np.zeros((1, 4))]))


def binary_iris() -> tuple[np.ndarray, np.ndarray]:
    features, target = iris()
    return features, (target == 2).astype(np.int64)


def string_iris() -> tuple[np.ndarray, np.ndarray]:
    features, target = iris()
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)
    return features, names[target]


CLASSIFIERS: list[tuple[str, Any, Any]] = [
    ("logreg multiclass", LogisticRegression(max_iter=1000), iris),
    ("logreg binary", LogisticRegression(max_iter=1000), binary_iris),
    ("logreg string labels", LogisticRegression(max_iter=1000), string_iris),
    ("linear svc", LinearSVC(), iris),
    ("sgd classifier", SGDClassifier(random_state=0), iris),
    ("perceptron binary", Perceptron(random_state=0), binary_iris),
]


@pytest.mark.parametrize(
    ("label", "estimator", "data"), CLASSIFIERS, ids=[c[0] for c in CLASSIFIERS]
)
def test_linear_classifier_fast_path_equals_predict(label: str, estimator: Any, data: Any) -> None:
    features, target = data()
    estimator.fit(features, target)
    predictor = build_predictor(estimator)
    assert predictor.fast_path, f"{label} should use the numpy fast path"
    rows = probe_rows()
    prediction = predictor.predict(rows)
    expected = estimator.predict(rows)
    np.testing.assert_array_equal(prediction.values, expected)
    assert prediction.values.dtype == expected.dtype
    assert prediction.class_indices is not None
    np.testing.assert_array_equal(estimator.classes_[prediction.class_indices], expected)


@pytest.mark.parametrize("estimator", [LinearRegression(), Ridge(alpha=0.5)], ids=["ols", "ridge"])
def test_linear_regressor_fast_path_equals_predict(estimator: Any) -> None:
    features, _target = iris()
    estimator.fit(features[:, :3], features[:, 3])
    predictor = build_predictor(estimator)
    rows = np.ascontiguousarray(probe_rows()[:, :3])
    np.testing.assert_array_equal(predictor.predict(rows).values, estimator.predict(rows))
    assert predictor.predict_datatype == "FP64"


def test_ridge_fast_path_is_used() -> None:
    features, _ = iris()
    predictor = build_predictor(LinearRegression().fit(features[:, :3], features[:, 3]))
    assert predictor.fast_path


@pytest.mark.parametrize(
    "estimator",
    [
        RandomForestClassifier(n_estimators=5, random_state=0),
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        RidgeClassifier(),  # overrides predict (multilabel support)
    ],
    ids=["forest", "pipeline", "ridge-classifier"],
)
def test_other_classifiers_call_the_estimator(estimator: Any) -> None:
    features, target = iris()
    estimator.fit(features, target)
    predictor = build_predictor(estimator)
    assert not predictor.fast_path
    rows = probe_rows()
    prediction = predictor.predict(rows)
    np.testing.assert_array_equal(prediction.values, estimator.predict(rows))
    assert prediction.class_indices is not None
    np.testing.assert_array_equal(estimator.classes_[prediction.class_indices], prediction.values)


def test_overridden_decision_function_is_not_fast_pathed() -> None:
    features, _ = iris()
    estimator = ElasticNet(alpha=0.1).fit(features[:, :3], features[:, 3])
    predictor = build_predictor(estimator)
    assert not predictor.fast_path  # ElasticNet overrides _decision_function
    rows = np.ascontiguousarray(probe_rows()[:, :3])
    np.testing.assert_array_equal(predictor.predict(rows).values, estimator.predict(rows))


def test_regressor_without_fast_path_gives_float_values() -> None:
    features, _ = iris()
    estimator = RandomForestRegressor(n_estimators=3, random_state=0).fit(features, features[:, 0])
    predictor = build_predictor(estimator)
    prediction = predictor.predict(features[:5])
    assert prediction.class_indices is None
    np.testing.assert_array_equal(prediction.values, estimator.predict(features[:5]))


def test_string_labels_make_a_bytes_output_and_metrics_labels() -> None:
    features, target = string_iris()
    predictor = build_predictor(LogisticRegression(max_iter=1000).fit(features, target))
    assert predictor.predict_datatype == "BYTES"
    assert predictor.classes == ("setosa", "versicolor", "virginica")


def test_integer_labels_make_an_int64_output() -> None:
    features, target = iris()
    predictor = build_predictor(LogisticRegression(max_iter=1000).fit(features, target))
    assert predictor.predict_datatype == "INT64"
    assert predictor.available_outputs == {PREDICT_OUTPUT, PROBA_OUTPUT}


def test_proba_output_equals_predict_proba() -> None:
    features, target = iris()
    estimator = LogisticRegression(max_iter=1000).fit(features, target)
    predictor = build_predictor(estimator)
    rows = features[:7]
    tensors = predictor.outputs(rows, predictor.predict(rows).values, [PROBA_OUTPUT])
    np.testing.assert_array_equal(tensors[0].values, estimator.predict_proba(rows))
    assert tensors[0].datatype == "FP64"


def test_feature_names_come_from_a_dataframe_fit() -> None:
    features, target = iris()
    frame = pd.DataFrame(features, columns=list(IRIS_FEATURES))
    predictor = build_predictor(LogisticRegression(max_iter=1000).fit(frame, target))
    assert predictor.schema.feature_names == IRIS_FEATURES
    assert predictor.schema.n_features == 4


def test_feature_names_given_must_match_the_feature_count() -> None:
    features, target = iris()
    estimator = LogisticRegression(max_iter=1000).fit(features, target)
    with pytest.raises(ValueError, match="3 feature names"):
        build_predictor(estimator, ("a", "b", "c"))


def test_an_unfitted_estimator_is_refused() -> None:
    with pytest.raises(ValueError, match="n_features_in_"):
        build_predictor(LogisticRegression())
