"""Turn a fitted estimator into a predictor with a fast path where it is exactly equivalent.

scikit-learn's `predict` spends most of a single-row call on input validation
(`validate_data`, namespace dispatch, feature-name checks). The server has already
validated the matrix (shape, float64, finite), so for linear models whose `predict` is
the stock scikit-learn implementation the decision function is computed here with the
same numpy expression scikit-learn uses; the unit tests pin equality with
`estimator.predict`. Every other estimator is called as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model._base import (
    LinearClassifierMixin,
    LinearModel,
    MultiOutputLinearModel,
)

from kiln.server.protocol import PREDICT_OUTPUT, PROBA_OUTPUT, InputSchema, OutputTensor
from kiln.server.telemetry import TabularLayout
from kiln.tabular.schema import TabularSchema, schema_of


def _unchanged(features: np.ndarray) -> Any:
    return features


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predicted values for N rows; `class_indices` positions them in `classes` (classifiers)."""

    values: np.ndarray
    class_indices: np.ndarray | None


@dataclass(frozen=True)
class Predictor:
    estimator: Any
    schema: InputSchema
    predict_datatype: str
    classes: tuple[str, ...] | None  # label strings, for metrics
    predict: Callable[[np.ndarray], Prediction]
    fast_path: bool
    # What the estimator takes, from the request matrix: the matrix itself for a bare
    # estimator, the canonical DataFrame for a tabular pipeline.
    prepare: Callable[[np.ndarray], Any] = _unchanged
    layout: TabularLayout | None = None
    # predict_proba from the request matrix, when a fast path computes it.
    proba: Callable[[np.ndarray], np.ndarray] | None = None
    fast_path_kind: str = ""

    @property
    def tabular(self) -> TabularSchema | None:
        return self.schema.columns

    def warmup_features(self) -> np.ndarray:
        """One row the model must accept: zeros, or every column missing (imputed)."""
        columns = self.schema.columns
        if columns is None:
            return np.zeros((1, self.schema.n_features))
        if columns.all_numeric:
            return np.full((1, len(columns.columns)), np.nan)
        return np.full((1, len(columns.columns)), np.nan, dtype=object)

    @property
    def available_outputs(self) -> frozenset[str]:
        outputs = {PREDICT_OUTPUT}
        if hasattr(self.estimator, "predict_proba"):
            outputs.add(PROBA_OUTPUT)
        return frozenset(outputs)

    def outputs(
        self, features: np.ndarray, predicted: np.ndarray, names: list[str]
    ) -> list[OutputTensor]:
        """Output tensors for the requested names (predict_proba computed on demand)."""
        tensors: list[OutputTensor] = []
        for name in names:
            if name == PREDICT_OUTPUT:
                tensors.append(OutputTensor(name, self.predict_datatype, predicted))
                continue
            if self.proba is not None:
                probabilities = np.asarray(self.proba(features), np.float64)
            else:
                probabilities = np.asarray(
                    self.estimator.predict_proba(self.prepare(features)), np.float64
                )
            tensors.append(OutputTensor(name, "FP64", probabilities))
        return tensors


def build_predictor(estimator: Any, feature_names: tuple[str, ...] | None = None) -> Predictor:
    tabular = schema_of(estimator)
    if tabular is not None:
        # The pipeline names its own columns; names from the ModelVersion (which may be a
        # shortened list) are not needed.
        return build_tabular_predictor(estimator, tabular)
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, int | np.integer) or n_features < 1:
        raise ValueError("the model does not declare n_features_in_; is it a fitted estimator?")
    names = feature_names or _estimator_feature_names(estimator)
    if names is not None and len(names) != n_features:
        raise ValueError(f"{len(names)} feature names given for a model of {n_features} features")
    schema = InputSchema(n_features=int(n_features), feature_names=names)
    classes = getattr(estimator, "classes_", None)
    if classes is not None and getattr(classes, "ndim", 0) == 1:
        classes_array = np.asarray(classes)
        datatype = _datatype_of(classes_array)
        fast = _linear_classifier_fast_path(estimator, classes_array)
        predict = fast or _classifier_slow_path(estimator, classes_array)
        labels = tuple(str(label) for label in classes_array)
        return Predictor(estimator, schema, datatype, labels, predict, fast is not None)
    fast = _linear_regressor_fast_path(estimator)
    predict = fast or _regressor_slow_path(estimator)
    return Predictor(estimator, schema, "FP64", None, predict, fast is not None)


def _estimator_feature_names(estimator: Any) -> tuple[str, ...] | None:
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return None
    return tuple(str(name) for name in names)


def _datatype_of(values: np.ndarray) -> str:
    kind = values.dtype.kind
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    if kind == "b":
        return "BOOL"
    return "BYTES"


def _dense_coefficients(estimator: Any) -> tuple[np.ndarray, Any] | None:
    coef = getattr(estimator, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.dtype.kind != "f":
        return None  # sparse (sparsified) or unusual coefficients: use the estimator
    return coef, estimator.intercept_


def _linear_classifier_fast_path(
    estimator: Any, classes: np.ndarray
) -> Callable[[np.ndarray], Prediction] | None:
    kind = type(estimator)
    if not (
        getattr(kind, "predict", None) is LinearClassifierMixin.predict
        and getattr(kind, "decision_function", None) is LinearClassifierMixin.decision_function
    ):
        return None
    dense = _dense_coefficients(estimator)
    if dense is None:
        return None
    coef, intercept = dense
    coef_t = coef.T if coef.ndim == 2 else coef

    # Same arithmetic as LinearClassifierMixin.decision_function + predict.
    if coef.ndim == 2 and coef.shape[0] > 1:

        def predict_multiclass(features: np.ndarray) -> Prediction:
            indices = (features @ coef_t + intercept).argmax(axis=1)
            return Prediction(classes.take(indices), indices)

        return predict_multiclass

    def predict_binary(features: np.ndarray) -> Prediction:
        scores = (features @ coef_t + intercept).reshape(-1)
        indices = (scores > 0).astype(np.intp)
        return Prediction(classes.take(indices), indices)

    return predict_binary


def _linear_regressor_fast_path(estimator: Any) -> Callable[[np.ndarray], Prediction] | None:
    kind = type(estimator)
    if not (
        getattr(kind, "predict", None) in (LinearModel.predict, MultiOutputLinearModel.predict)
        and getattr(kind, "_decision_function", None) is LinearModel._decision_function
    ):
        return None
    dense = _dense_coefficients(estimator)
    if dense is None:
        return None
    coef, intercept = dense
    coef_t = coef if coef.ndim == 1 else coef.T
    if coef.ndim == 2 and coef.shape[0] != 1:
        return None  # multi-output regression: let the estimator shape its output

    def predict_values(features: np.ndarray) -> Prediction:
        values = features @ coef_t + intercept
        return Prediction(np.asarray(values, np.float64).reshape(-1), None)

    return predict_values


def _classifier_slow_path(
    estimator: Any, classes: np.ndarray, prepare: Callable[[np.ndarray], Any] = _unchanged
) -> Callable[[np.ndarray], Prediction]:
    sorted_classes = (
        bool(np.all(classes[:-1] < classes[1:])) if classes.dtype.kind != "O" else False
    )
    lookup = {label: index for index, label in enumerate(classes.tolist())}

    def predict(features: np.ndarray) -> Prediction:
        values = np.asarray(estimator.predict(prepare(features)))
        if sorted_classes:
            indices = np.searchsorted(classes, values)
        else:
            indices = np.fromiter((lookup[v] for v in values.tolist()), np.intp, len(values))
        return Prediction(values, indices)

    return predict


def _regressor_slow_path(
    estimator: Any, prepare: Callable[[np.ndarray], Any] = _unchanged
) -> Callable[[np.ndarray], Prediction]:
    def predict(features: np.ndarray) -> Prediction:
        values = np.asarray(estimator.predict(prepare(features)), np.float64)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        return Prediction(values, None)

    return predict


# --- tabular pipelines ------------------------------------------------------------------


def build_tabular_predictor(pipeline: Any, tabular: TabularSchema) -> Predictor:
    """A Kiln pipeline (preparation + estimator), with a fast path when one is exact."""
    schema = InputSchema(
        n_features=len(tabular.columns), feature_names=tabular.names, columns=tabular
    )
    prepare = frame_builder(tabular)
    layout = tabular_layout(tabular)
    classes = getattr(pipeline, "classes_", None)
    is_classifier = classes is not None and getattr(classes, "ndim", 0) == 1
    classes_array = np.asarray(classes) if is_classifier else None
    if classes_array is not None:
        slow = _classifier_slow_path(pipeline, classes_array, prepare)
        datatype, labels = _datatype_of(classes_array), tuple(str(c) for c in classes_array)
    else:
        slow = _regressor_slow_path(pipeline, prepare)
        datatype, labels = "FP64", None
    fast = _tabular_fast_path(pipeline, tabular, classes_array, slow)
    if fast is None:
        return Predictor(pipeline, schema, datatype, labels, slow, False, prepare, layout)
    predict, proba, kind = fast
    return Predictor(
        pipeline, schema, datatype, labels, predict, True, prepare, layout, proba, kind
    )


def _tabular_fast_path(
    pipeline: Any,
    tabular: TabularSchema,
    classes: np.ndarray | None,
    slow: Callable[[np.ndarray], Prediction],
) -> (
    tuple[Callable[[np.ndarray], Prediction], Callable[[np.ndarray], np.ndarray] | None, str] | None
):
    from sklearn.pipeline import Pipeline

    from kiln.server.fastpath import compile_preparation, estimator_fast_path

    if type(pipeline) is not Pipeline or len(pipeline.steps) != 2:
        return None
    preparation = compile_preparation(pipeline.steps[0][1], tabular)
    if preparation is None:
        return None
    final = pipeline.steps[1][1]
    model = estimator_fast_path(final)
    linear = None
    if model is None:
        linear = (
            _linear_classifier_fast_path(final, classes)
            if classes is not None
            else _linear_regressor_fast_path(final)
        )
    kind = model.kind if model is not None else ("linear" if linear else "estimator")

    def prepared(features: np.ndarray) -> np.ndarray | None:
        matrix = preparation(features)
        # A value the preparation left missing (impute: none) goes to the estimator's own
        # validation, which accepts or refuses it as in training.
        return matrix if np.isfinite(matrix).all() else None

    def predict(features: np.ndarray) -> Prediction:
        matrix = prepared(features)
        if matrix is None:
            return slow(features)
        if linear is not None:
            return linear(matrix)
        if model is None:
            return _own_prediction(final, matrix, classes)
        values = model.predict(matrix)
        if classes is None:
            return Prediction(np.asarray(values, np.float64).reshape(-1), None)
        return Prediction(classes.take(values), values)

    proba_fn = model.predict_proba if model is not None else None
    has_proba = hasattr(final, "predict_proba")

    def predict_proba(features: np.ndarray) -> np.ndarray:
        matrix = prepared(features)
        if matrix is None:
            return np.asarray(pipeline.predict_proba(frame_builder(tabular)(features)))
        if proba_fn is not None:
            return proba_fn(matrix)
        return np.asarray(final.predict_proba(matrix))

    return predict, (predict_proba if has_proba else None), kind


def _own_prediction(estimator: Any, matrix: np.ndarray, classes: np.ndarray | None) -> Prediction:
    values = np.asarray(estimator.predict(matrix))
    if classes is None:
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        return Prediction(np.asarray(values, np.float64), None)
    lookup = {label: index for index, label in enumerate(classes.tolist())}
    indices = np.fromiter((lookup[v] for v in values.tolist()), np.intp, len(values))
    return Prediction(values, indices)


def frame_builder(tabular: TabularSchema) -> Callable[[np.ndarray], Any]:
    """Request matrix -> the DataFrame the pipeline was fitted on (same names and dtypes)."""
    import pandas as pd

    numeric = [column.kind in ("numeric", "boolean") for column in tabular.columns]
    names = tabular.names

    def to_frame(features: np.ndarray) -> Any:
        data = {}
        for index, name in enumerate(names):
            values = features[:, index]
            if numeric[index]:
                values = values.astype(np.float64)
            # Explicit dtypes: pandas 3 would infer its own string dtype from text.
            data[name] = pd.Series(values, dtype=values.dtype, copy=False)
        return pd.DataFrame(data, copy=False)

    return to_frame


def tabular_layout(tabular: TabularSchema) -> TabularLayout:
    return TabularLayout(
        numeric_positions=tuple(
            index
            for index, column in enumerate(tabular.columns)
            if column.kind in ("numeric", "boolean")
        ),
        column_names=tabular.names,
        categorical=tuple(
            (column.name, index, frozenset(column.categories or ()))
            for index, column in enumerate(tabular.columns)
            if column.kind == "categorical"
        ),
    )


def drift_feature_names(tabular: TabularSchema) -> tuple[str, ...]:
    return tuple(c.name for c in tabular.columns if c.kind in ("numeric", "boolean"))
