"""Which estimators a TrainingJob may name, and validation of their params before fitting.

Only classes on the allow-list can be instantiated: the dotted path comes from a user's
YAML, and importing arbitrary code from it would hand that user the trainer's identity.
scikit-learn estimators are checked against their own ``_parameter_constraints``;
XGBoost and LightGBM, which check values only inside ``fit``, against the constraint
tables below, written with scikit-learn's own constraint vocabulary.
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
    "xgboost": ("XGBClassifier", "XGBRegressor"),
    "lightgbm": ("LGBMClassifier", "LGBMRegressor"),
}

# Defaults that keep a run reproducible and its stdout JSON lines: LightGBM prints its own
# warnings unless verbose=-1, and needs `deterministic` for identical models across runs.
_LIBRARY_DEFAULTS: dict[str, dict[str, Any]] = {
    "lightgbm": {"verbose": -1, "deterministic": True, "force_row_wise": True},
}
# LightGBM takes these as **kwargs (absent from get_params); they are still accepted.
_EXTRA_PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "lightgbm": ("verbose", "deterministic", "force_row_wise", "force_col_wise"),
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
    # XGBoost's classifier takes only labels 0..K-1: wrap it so the model keeps the user's.
    encode_labels: bool = False

    @property
    def library(self) -> str:
        return self.dotted_path.split(".", 1)[0]


def resolve_estimator_class(dotted_path: str) -> type:
    if dotted_path not in ALLOWED_ESTIMATORS:
        suggestion = _closest(dotted_path, ALLOWED_ESTIMATORS) or _closest_by_class_name(
            dotted_path
        )
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        raise TrainingError(
            Reason.INVALID_ESTIMATOR,
            f"estimator {dotted_path!r} is not on the allow-list of scikit-learn, XGBoost "
            f"and LightGBM classifiers and regressors{hint}",
        )
    module_name, _, class_name = dotted_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        # On the list but gone from the installed scikit-learn (removed after deprecation).
        raise TrainingError(
            Reason.INVALID_ESTIMATOR,
            f"estimator {dotted_path!r} is not available in the installed libraries",
        ) from exc
    if not isinstance(cls, type):
        raise TrainingError(Reason.INVALID_ESTIMATOR, f"{dotted_path!r} is not a class")
    return cls


def accepted_param_names(estimator: Any, library: str) -> list[str]:
    """Every param name the trainer lets through to ``estimator`` (an unfitted instance).

    Also the source of the operator's table (kiln.api.estimator_params, regenerated by
    `make estimator-params`), so the two refuse the same names.
    """
    return sorted({*estimator.get_params(deep=False), *_EXTRA_PARAM_NAMES.get(library, ())})


def prepare_estimator(dotted_path: str, params: Mapping[str, Any], seed: int) -> PreparedEstimator:
    """Instantiate, check every param name and value, and seed ``random_state``."""
    from sklearn.base import is_classifier

    cls = resolve_estimator_class(dotted_path)
    library = dotted_path.split(".", 1)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator = cls()
        class_name = cls.__name__
        valid_names = accepted_param_names(estimator, library)
        for name in params:
            if name not in valid_names:
                raise TrainingError(
                    Reason.INVALID_PARAMS, _unknown_param_message(name, class_name, valid_names)
                )
        effective = {**_LIBRARY_DEFAULTS.get(library, {}), **params}
        if "random_state" in valid_names and "random_state" not in effective:
            effective["random_state"] = seed
        try:
            if library in BOOSTING_CONSTRAINTS:
                validate_boosting_params(library, class_name, effective)
            estimator.set_params(**effective)
            # XGBoost and LightGBM inherit _validate_params without _parameter_constraints.
            validate = getattr(estimator, "_validate_params", None)
            if library == "sklearn" and callable(validate):
                validate()
        except (ValueError, TypeError) as exc:
            raise TrainingError(Reason.INVALID_PARAMS, _first_line(exc)) from exc
    classifier = bool(is_classifier(estimator))
    return PreparedEstimator(
        estimator=estimator,
        dotted_path=dotted_path,
        is_classifier=classifier,
        effective_params=effective,
        warnings=tuple(_first_line(w.message) for w in caught),
        encode_labels=classifier and library == "xgboost",
    )


def _boosting_constraints() -> dict[str, dict[str, list[Any]]]:
    from numbers import Integral, Real

    from sklearn.utils._param_validation import Interval, StrOptions

    def at_least(low: float, kind: type = Real) -> list[Any]:
        return [Interval(kind, low, None, closed="left"), None]

    positive = [Interval(Real, 0, None, closed="neither"), None]
    fraction = [Interval(Real, 0, 1, closed="right"), None]
    common: dict[str, list[Any]] = {
        "n_estimators": at_least(1, Integral),
        "learning_rate": positive,
        "subsample": fraction,
        "colsample_bytree": fraction,
        "reg_alpha": at_least(0),
        "reg_lambda": at_least(0),
        "min_child_weight": at_least(0),
        "n_jobs": [Integral, None],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both"), None],
        "objective": [str, None],
        "importance_type": [str, None],
    }
    return {
        "xgboost": {
            **common,
            "max_depth": at_least(0, Integral),
            "max_leaves": at_least(0, Integral),
            "max_bin": at_least(2, Integral),
            "grow_policy": [StrOptions({"depthwise", "lossguide"}), None],
            "booster": [StrOptions({"gbtree", "gblinear", "dart"}), None],
            "tree_method": [StrOptions({"auto", "exact", "approx", "hist"}), None],
            "gamma": at_least(0),
            "max_delta_step": at_least(0),
            "colsample_bylevel": fraction,
            "colsample_bynode": fraction,
            "scale_pos_weight": positive,
            "base_score": [Real, None],
            "num_parallel_tree": at_least(1, Integral),
            "verbosity": [Interval(Integral, 0, 3, closed="both"), None],
            "missing": [Real],
            "device": [StrOptions({"cpu"}), None],
            "eval_metric": [str, list, None],
            # No eval_set is given to fit, so early stopping and callbacks cannot work.
            "early_stopping_rounds": [None],
            "callbacks": [None],
            "enable_categorical": ["boolean"],
            "max_cat_to_onehot": at_least(1, Integral),
        },
        "lightgbm": {
            **common,
            "boosting_type": [StrOptions({"gbdt", "dart", "rf"})],
            "num_leaves": [Interval(Integral, 2, 131072, closed="both")],
            "max_depth": [Interval(Integral, -1, None, closed="left")],
            "subsample_for_bin": [Interval(Integral, 1, None, closed="left")],
            "class_weight": [dict, StrOptions({"balanced"}), None],
            "min_split_gain": [Interval(Real, 0, None, closed="left")],
            "min_child_samples": [Interval(Integral, 0, None, closed="left")],
            "subsample_freq": [Interval(Integral, 0, None, closed="left")],
            "importance_type": [StrOptions({"split", "gain"})],
            "verbose": [Integral],
            "deterministic": ["boolean"],
            "force_row_wise": ["boolean"],
            "force_col_wise": ["boolean"],
        },
    }


BOOSTING_CONSTRAINTS = ("xgboost", "lightgbm")


def validate_boosting_params(library: str, class_name: str, params: Mapping[str, Any]) -> None:
    """Check values before fitting, as scikit-learn's own estimators do (raises ValueError)."""
    from sklearn.utils._param_validation import validate_parameter_constraints

    constraints = _boosting_constraints()[library]
    known = {name: value for name, value in params.items() if name in constraints}
    validate_parameter_constraints(constraints, known, caller_name=class_name)


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
