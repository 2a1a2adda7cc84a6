"""Which estimators a TrainingJob may name, and validation of their params before fitting.

Only classes on the allow-list can be instantiated: the dotted path comes from a user's
YAML, and importing arbitrary code from it would hand that user the trainer's identity.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kiln.trainer.errors import Reason, TrainingError

_FAMILIES: dict[str, tuple[str, ...]] = {
    "sklearn.linear_model": (
        "ARDRegression",
        "BayesianRidge",
        "ElasticNet",
        "ElasticNetCV",
        "GammaRegressor",
        "HuberRegressor",
        "Lars",
        "Lasso",
        "LassoCV",
        "LassoLars",
        "LinearRegression",
        "LogisticRegression",
        "LogisticRegressionCV",
        "OrthogonalMatchingPursuit",
        "Perceptron",
        "PoissonRegressor",
        "QuantileRegressor",
        "RANSACRegressor",
        "Ridge",
        "RidgeCV",
        "RidgeClassifier",
        "RidgeClassifierCV",
        "SGDClassifier",
        "SGDRegressor",
        "TheilSenRegressor",
        "TweedieRegressor",
    ),
    "sklearn.tree": (
        "DecisionTreeClassifier",
        "DecisionTreeRegressor",
        "ExtraTreeClassifier",
        "ExtraTreeRegressor",
    ),
    "sklearn.ensemble": (
        "AdaBoostClassifier",
        "AdaBoostRegressor",
        "BaggingClassifier",
        "BaggingRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
        "GradientBoostingClassifier",
        "GradientBoostingRegressor",
        "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
        "RandomForestClassifier",
        "RandomForestRegressor",
    ),
    "sklearn.svm": ("LinearSVC", "LinearSVR", "NuSVC", "NuSVR", "SVC", "SVR"),
    "sklearn.neighbors": (
        "KNeighborsClassifier",
        "KNeighborsRegressor",
        "NearestCentroid",
        "RadiusNeighborsClassifier",
        "RadiusNeighborsRegressor",
    ),
    "sklearn.naive_bayes": (
        "BernoulliNB",
        "CategoricalNB",
        "ComplementNB",
        "GaussianNB",
        "MultinomialNB",
    ),
}

ALLOWED_ESTIMATORS: frozenset[str] = frozenset(
    f"{module}.{name}" for module, names in _FAMILIES.items() for name in names
)


@dataclass(frozen=True)
class PreparedEstimator:
    """An unfitted estimator with validated params, ready to fit."""

    estimator: Any
    dotted_path: str
    is_classifier: bool
    effective_params: dict[str, Any]
    warnings: tuple[str, ...]


def resolve_estimator_class(dotted_path: str) -> type:
    if dotted_path not in ALLOWED_ESTIMATORS:
        suggestion = _closest(dotted_path, ALLOWED_ESTIMATORS) or _closest_by_class_name(
            dotted_path
        )
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        raise TrainingError(
            Reason.INVALID_ESTIMATOR,
            f"estimator {dotted_path!r} is not on the allow-list of scikit-learn classifiers "
            f"and regressors{hint}",
        )
    module_name, _, class_name = dotted_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        # On the list but gone from the installed scikit-learn (removed after deprecation).
        raise TrainingError(
            Reason.INVALID_ESTIMATOR,
            f"estimator {dotted_path!r} is not available in the installed scikit-learn",
        ) from exc
    if not isinstance(cls, type):
        raise TrainingError(Reason.INVALID_ESTIMATOR, f"{dotted_path!r} is not a class")
    return cls


def prepare_estimator(dotted_path: str, params: Mapping[str, Any], seed: int) -> PreparedEstimator:
    """Instantiate, check every param name and value, and seed ``random_state``."""
    from sklearn.base import is_classifier

    cls = resolve_estimator_class(dotted_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator = cls()
        class_name = cls.__name__
        valid_names = sorted(estimator.get_params(deep=False))
        for name in params:
            if name not in valid_names:
                raise TrainingError(
                    Reason.INVALID_PARAMS, _unknown_param_message(name, class_name, valid_names)
                )
        effective = dict(params)
        if "random_state" in valid_names and "random_state" not in effective:
            effective["random_state"] = seed
        try:
            estimator.set_params(**effective)
            validate = getattr(estimator, "_validate_params", None)
            if callable(validate):
                validate()
        except (ValueError, TypeError) as exc:
            raise TrainingError(Reason.INVALID_PARAMS, _first_line(exc)) from exc
    return PreparedEstimator(
        estimator=estimator,
        dotted_path=dotted_path,
        is_classifier=bool(is_classifier(estimator)),
        effective_params=effective,
        warnings=tuple(_first_line(w.message) for w in caught),
    )


def _unknown_param_message(name: str, class_name: str, valid_names: list[str]) -> str:
    suggestion = _closest(name, valid_names)
    if suggestion:
        return f"unknown parameter {name!r} for {class_name}; did you mean {suggestion!r}?"
    return f"unknown parameter {name!r} for {class_name} (valid: {', '.join(valid_names)})"


def _closest(word: str, candidates: Any) -> str | None:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _closest_by_class_name(dotted_path: str) -> str | None:
    """``RandomForestClassifier`` or ``sklearn.ensemble._forest.RandomForestClassifier``."""
    class_name = dotted_path.rpartition(".")[2]
    by_name = {path.rpartition(".")[2]: path for path in ALLOWED_ESTIMATORS}
    match = _closest(class_name, by_name)
    return by_name[match] if match else None


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
