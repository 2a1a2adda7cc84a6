"""Fast paths for Kiln pipelines: the preparation in numpy, trees through their own routines.

A one-row call through scikit-learn's ``Pipeline.predict`` pays for a pandas DataFrame,
``ColumnTransformer`` dispatch and input validation in every step, and for forests a
joblib dispatch: tens of milliseconds on a busy machine, of which the arithmetic is a
few microseconds. Here:

- ``compile_preparation`` turns the fitted ``ColumnTransformer`` into one function over
  the request matrix. Numeric steps repeat scikit-learn's own expressions on float64
  (``X[nan] = statistic``, ``X -= mean_``, ``X /= scale_``, ``X *= scale_; X += min_``), so
  the results are bit-identical; encoders are looked up in a table built once by calling
  the fitted encoder itself on every known category and on one unseen value.
- ``estimator_fast_path`` predicts from the prepared matrix with the estimator's own
  lower-level routines: each tree's walk (``tree_.predict``, what its
  ``predict(X, check_input=False)`` returns) summed in the same order and divided as the
  forest does (no joblib), gradient boosting's
  ``predict_stages``, HistGradientBoosting's ``_predict_iterations``, the linear
  ``X @ coef_.T + intercept_``; XGBoost and LightGBM through their own ``predict`` on
  the prepared matrix (their wrappers are thin; the cost was the preparation).

Anything not recognised exactly (another step type, an unusual parameter, a non-finite
prepared value that the estimator's own validation must judge) falls back to the
estimator's own code. The unit tests pin equality with ``pipeline.predict`` and
``predict_proba`` on many random rows, split thresholds and missing values.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from kiln.tabular.schema import TabularSchema

Block = Callable[[np.ndarray], np.ndarray]
_UNSEEN = "\x00kiln: a category no training row had\x00"


@dataclass(frozen=True)
class ModelFastPath:
    """Prepared float64 matrix -> class indices (classifiers) or values, and probabilities."""

    predict: Callable[[np.ndarray], np.ndarray]
    predict_proba: Callable[[np.ndarray], np.ndarray] | None
    kind: str


# --- the preparation ---------------------------------------------------------------------


def compile_preparation(transformer: Any, tabular: TabularSchema) -> Block | None:
    """Request matrix (canonical columns) -> the ColumnTransformer's output, or None."""
    from sklearn.compose import ColumnTransformer

    if type(transformer) is not ColumnTransformer or transformer.sparse_output_:
        return None
    positions = {name: index for index, name in enumerate(tabular.names)}
    blocks: list[tuple[int, Block]] = []
    for name, fitted, columns in transformer.transformers_:
        if name == "remainder":
            if fitted != "drop" and len(columns):
                return None
            continue
        if fitted == "drop":
            continue
        if not (isinstance(columns, list) and len(columns) == 1 and columns[0] in positions):
            return None
        column = next(c for c in tabular.columns if c.name == columns[0])
        block = _compile_column(fitted, column.kind)
        if block is None:
            return None
        blocks.append((positions[columns[0]], block))

    def prepare(features: np.ndarray) -> np.ndarray:
        parts = [block(features[:, [position]]) for position, block in blocks]
        return np.ascontiguousarray(np.hstack(parts), dtype=np.float64)

    return prepare


def _compile_column(fitted: Any, kind: str) -> Block | None:
    from sklearn.pipeline import Pipeline

    numeric_input = kind in ("numeric", "boolean")
    if fitted == "passthrough":
        return (lambda x: x.astype(np.float64)) if numeric_input else None
    steps = [step for _, step in fitted.steps] if type(fitted) is Pipeline else [fitted]
    compiled: list[Block] = []
    text = not numeric_input  # the block holds object (text) values until encoded
    for step in steps:
        block, text = _compile_step(step, text)
        if block is None:
            return None
        compiled.append(block)
    if text:
        return None

    def run(values: np.ndarray) -> np.ndarray:
        out = values if not numeric_input else values.astype(np.float64)
        for block in compiled:
            out = block(out)
        return out

    return run


def _compile_step(step: Any, text: bool) -> tuple[Block | None, bool]:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import (
        FunctionTransformer,
        MinMaxScaler,
        OneHotEncoder,
        OrdinalEncoder,
        StandardScaler,
    )

    kind = type(step)
    if kind is SimpleImputer:
        return _imputer(step, text), text
    if kind in (OneHotEncoder, OrdinalEncoder) and text:
        return _encoder(step), False
    if kind is StandardScaler and not text:
        return _standard_scaler(step), False
    if kind is MinMaxScaler and not text:
        return _min_max_scaler(step), False
    if kind is FunctionTransformer and text:
        from kiln.tabular.transforms import date_parts

        if step.func is not date_parts or step.inverse_func is not None or step.validate:
            return None, text
        parts = list((step.kw_args or {}).get("parts", ()))
        return (lambda values: date_parts(values, parts)), False
    return None, text


def _imputer(step: Any, text: bool) -> Block | None:
    if step.add_indicator or not _is_nan(step.missing_values):
        return None
    statistics = np.asarray(step.statistics_)
    if text:
        fill = statistics[0]
        if not isinstance(fill, str):
            return None

        def impute_text(values: np.ndarray) -> np.ndarray:
            out = values.copy()
            out[out != out] = fill  # NaN, the canonical missing marker
            return out

        return impute_text
    stats = statistics.astype(np.float64)
    if not np.isfinite(stats).all():
        return None  # an all-missing training column: let scikit-learn decide

    def impute_numbers(values: np.ndarray) -> np.ndarray:
        missing = np.isnan(values)
        if not missing.any():
            return values
        out = values.copy()
        out[missing] = np.broadcast_to(stats, out.shape)[missing]
        return out

    return impute_numbers


def _encoder(step: Any) -> Block | None:
    categories = step.categories_
    if len(categories) != 1 or getattr(step, "drop", None) is not None:
        return None
    known = list(categories[0])
    if not all(isinstance(c, str) for c in known) or _UNSEEN in known:
        return None
    probe = np.array([*known, _UNSEEN], dtype=object).reshape(-1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "unknown categories found": the probe's own
        try:
            rows = np.asarray(step.transform(probe), dtype=np.float64)
        except ValueError:
            return None  # handle_unknown="error": unseen values must raise as before
    table = {category: rows[index] for index, category in enumerate(known)}
    unseen = rows[-1]
    width = rows.shape[1]

    def encode(values: np.ndarray) -> np.ndarray:
        column = values[:, 0].tolist()
        out = np.empty((len(column), width), dtype=np.float64)
        for index, value in enumerate(column):
            out[index] = table.get(value, unseen)
        return out

    return encode


def _standard_scaler(step: Any) -> Block:
    mean = step.mean_ if step.with_mean else None
    scale = step.scale_ if step.with_std else None

    def standardise(values: np.ndarray) -> np.ndarray:
        out = values.copy()
        if mean is not None:
            out -= mean
        if scale is not None:
            out /= scale
        return out

    return standardise


def _min_max_scaler(step: Any) -> Block:
    low, high = step.feature_range

    def rescale(values: np.ndarray) -> np.ndarray:
        out = values.copy()
        out *= step.scale_
        out += step.min_
        if step.clip:
            np.clip(out, low, high, out=out)
        return out

    return rescale


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


# --- the estimator -----------------------------------------------------------------------


def estimator_fast_path(estimator: Any) -> ModelFastPath | None:
    """Own-routine predictions from a prepared float64 matrix, for the known families."""
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

    kind = type(estimator)
    if kind in (RandomForestClassifier, ExtraTreesClassifier):
        return _forest_classifier(estimator)
    if kind in (RandomForestRegressor, ExtraTreesRegressor):
        return _forest_regressor(estimator)
    if kind is GradientBoostingClassifier:
        return _gradient_boosting(estimator, classifier=True)
    if kind is GradientBoostingRegressor:
        return _gradient_boosting(estimator, classifier=False)
    if kind is HistGradientBoostingClassifier:
        return _hist_gradient_boosting(estimator, classifier=True)
    if kind is HistGradientBoostingRegressor:
        return _hist_gradient_boosting(estimator, classifier=False)
    return _library_booster(estimator)


def _single_output(estimator: Any) -> bool:
    return getattr(estimator, "n_outputs_", 1) == 1


def _sequential(estimator: Any) -> bool:
    # With n_jobs > 1 the forest sums trees in thread order: not reproducible bit for bit.
    return estimator.n_jobs in (None, 1)


def _float32(features: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(features, dtype=np.float32)


@functools.cache
def _tree_proba_is_its_leaf_values() -> bool:
    """Whether the installed ``DecisionTreeClassifier.predict_proba`` is exactly
    ``tree_.predict(X)[:, :n_classes_]`` (scikit-learn >= 1.4 stores class fractions in
    ``tree_.value``; earlier versions normalised them in ``predict_proba``)."""
    import inspect

    from sklearn.tree import DecisionTreeClassifier

    try:
        source = inspect.getsource(DecisionTreeClassifier.predict_proba)
    except (OSError, TypeError):
        return False
    return "normalizer" not in source and "return proba[:, : self.n_classes_]" in source


def _forest_classifier(forest: Any) -> ModelFastPath | None:
    if not (_single_output(forest) and _sequential(forest)):
        return None
    trees = list(forest.estimators_)
    n_classes = int(forest.n_classes_)
    # Each tree's predict_proba(X, check_input=False) is check_is_fitted (which scans the
    # tree's attributes), a feature-count check and then tree_.predict: the scan costs
    # about three times the tree walk, 50 times per call for 50 trees. The server has
    # checked the matrix, so the walk alone is called, with the same slice.
    if _tree_proba_is_its_leaf_values():
        leaf_values = [(tree.tree_.predict, int(tree.n_classes_)) for tree in trees]

        def tree_probas(x: np.ndarray) -> Iterator[np.ndarray]:
            for walk, classes in leaf_values:
                yield walk(x)[:, :classes]
    else:

        def tree_probas(x: np.ndarray) -> Iterator[np.ndarray]:
            for tree in trees:
                yield tree.predict_proba(x, check_input=False)

    # RandomForestClassifier.predict_proba: each tree's predict_proba(X, check_input=False)
    # added in order into float64 zeros, then divided by the number of trees.
    def predict_proba(features: np.ndarray) -> np.ndarray:
        x = _float32(features)
        proba = np.zeros((x.shape[0], n_classes), dtype=np.float64)
        for tree_proba in tree_probas(x):
            proba += tree_proba
        proba /= len(trees)
        return proba

    def predict(features: np.ndarray) -> np.ndarray:
        return np.argmax(predict_proba(features), axis=1)

    return ModelFastPath(predict, predict_proba, "forest")


def _forest_regressor(forest: Any) -> ModelFastPath | None:
    if not (_single_output(forest) and _sequential(forest)):
        return None
    trees = list(forest.estimators_)
    # DecisionTreeRegressor.predict(X, check_input=False) is tree_.predict(X)[:, 0] after
    # the checks the server has made (see _forest_classifier).
    walks = [tree.tree_.predict for tree in trees]

    def predict(features: np.ndarray) -> np.ndarray:
        x = _float32(features)
        total = np.zeros(x.shape[0], dtype=np.float64)
        for walk in walks:
            total += walk(x)[:, 0]
        total /= len(trees)
        return total

    return ModelFastPath(predict, None, "forest")


def _gradient_boosting(model: Any, *, classifier: bool) -> ModelFastPath | None:
    from sklearn.base import is_classifier
    from sklearn.ensemble._gb import _init_raw_predictions
    from sklearn.ensemble._gradient_boosting import predict_stages

    # BaseGradientBoosting._raw_predict without the input validation.
    def raw(features: np.ndarray) -> np.ndarray:
        x = _float32(features)
        if model.init_ == "zero":
            values = np.zeros((x.shape[0], model.n_trees_per_iteration_), dtype=np.float64)
        else:
            values = _init_raw_predictions(x, model.init_, model._loss, is_classifier(model))
        predict_stages(model.estimators_, x, model.learning_rate, values)
        return values

    if not classifier:
        return ModelFastPath(lambda f: raw(f).ravel(), None, "gradient-boosting")

    def decision(features: np.ndarray) -> np.ndarray:
        values = raw(features)
        return values.ravel() if values.shape[1] == 1 else values

    def predict(features: np.ndarray) -> np.ndarray:
        scores = decision(features)
        if scores.ndim == 1:
            return (scores >= 0).astype(int)
        return np.argmax(scores, axis=1)

    def predict_proba(features: np.ndarray) -> np.ndarray:
        return np.asarray(model._loss.predict_proba(decision(features)))

    return ModelFastPath(predict, predict_proba, "gradient-boosting")


def _hist_gradient_boosting(model: Any, *, classifier: bool) -> ModelFastPath | None:
    if model._preprocessor is not None:
        return None  # its own categorical preprocessing: use the estimator

    # BaseHistGradientBoosting._raw_predict without the input validation, on one thread:
    # each row is summed by one thread in the same order whatever the thread count, and
    # waking OpenMP threads costs more than a small batch.
    def raw(features: np.ndarray) -> np.ndarray:
        values = np.zeros(
            shape=(features.shape[0], model.n_trees_per_iteration_),
            dtype=model._baseline_prediction.dtype,
            order="F",
        )
        values += model._baseline_prediction
        model._predict_iterations(features, model._predictors, values, False, 1)
        return values

    if not classifier:
        return ModelFastPath(
            lambda f: np.asarray(model._loss.link.inverse(raw(f).ravel())),
            None,
            "hist-gradient-boosting",
        )

    def predict(features: np.ndarray) -> np.ndarray:
        values = raw(features)
        if values.shape[1] == 1:
            return (values.ravel() > 0).astype(int)
        return np.argmax(values, axis=1)

    def predict_proba(features: np.ndarray) -> np.ndarray:
        return np.asarray(model._loss.predict_proba(raw(features)))

    return ModelFastPath(predict, predict_proba, "hist-gradient-boosting")


def _library_booster(estimator: Any) -> ModelFastPath | None:
    """XGBoost and LightGBM: their own predict on the prepared matrix."""
    from kiln.tabular.transforms import EncodedLabelClassifier

    inner = estimator.estimator_ if type(estimator) is EncodedLabelClassifier else estimator
    module = type(inner).__module__.split(".", 1)[0]
    if module not in ("xgboost", "lightgbm"):
        return None
    classifier = hasattr(estimator, "classes_")
    if not classifier:
        return ModelFastPath(
            lambda f: np.asarray(estimator.predict(f), dtype=np.float64), None, module
        )
    if type(estimator) is EncodedLabelClassifier:
        return ModelFastPath(
            # EncodedLabelClassifier.predict: the inner model predicts class indices.
            lambda f: np.asarray(inner.predict(f)).astype(np.intp).reshape(-1),
            lambda f: np.asarray(inner.predict_proba(f)),
            module,
        )
    if module == "lightgbm" and not callable(estimator.objective):
        return _lightgbm_classifier(estimator)
    lookup = {label: index for index, label in enumerate(np.asarray(estimator.classes_).tolist())}

    def predict(features: np.ndarray) -> np.ndarray:
        labels = np.asarray(estimator.predict(features)).tolist()
        return np.fromiter((lookup[label] for label in labels), np.intp, len(labels))

    return ModelFastPath(predict, lambda f: np.asarray(estimator.predict_proba(f)), module)


def _lightgbm_classifier(estimator: Any) -> ModelFastPath:
    """LGBMClassifier.predict_proba / predict, straight to its Booster's predict.

    The wrapper re-validates the matrix and rebuilds its parameter dict on every call
    (about a millisecond); the Booster computes the same probabilities from the same trees.
    """
    booster = estimator.booster_
    multiclass = estimator.n_classes_ > 2

    def predict_proba(features: np.ndarray) -> np.ndarray:
        result = np.asarray(booster.predict(features, num_threads=1))
        if multiclass:
            return result
        return np.vstack((1.0 - result, result)).transpose()

    def predict(features: np.ndarray) -> np.ndarray:
        return np.argmax(predict_proba(features), axis=1)

    return ModelFastPath(predict, predict_proba, "lightgbm")
