"""Data preparation: infer each column's type, plan its preparation, build the pipeline.

``plan_preparation`` is a pure decision (table + spec -> a plan, or a ``TrainingError``
naming the column); ``build_pipeline`` turns the plan into one scikit-learn ``Pipeline``
(a ``ColumnTransformer`` with one small pipeline per column, then the estimator) that is
fitted on the training split only and saved as a single artifact, so the server applies
exactly the preparation the model was trained with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from kiln.api.preprocessing import ColumnPreprocessing, PreprocessingSpec
from kiln.tabular.coerce import CoercionError, canonical_column, category_text
from kiln.tabular.schema import (
    DEFAULT_DATE_PARTS,
    SCHEMA_ATTRIBUTE,
    ColumnKind,
    ColumnSchema,
    TabularSchema,
)
from kiln.trainer.errors import Reason, TrainingError

# Estimators whose splits do not care about scale and prefer one column per categorical.
TREE_ESTIMATOR_PREFIXES = ("sklearn.tree.", "sklearn.ensemble.", "xgboost.", "lightgbm.")
# Estimators whose fit depends on feature scale (penalties, distances, kernels).
SCALED_ESTIMATOR_PREFIXES = ("sklearn.linear_model.", "sklearn.svm.", "sklearn.neighbors.")
# A text column with at least this many distinct values, distinct in most rows, reads as
# an identifier (a name, a ticket number): one-hot encoding it learns nothing.
IDENTIFIER_MIN_DISTINCT = 50
IDENTIFIER_DISTINCT_SHARE = 0.5
DEFAULT_MAX_CATEGORIES = 32


@dataclass(frozen=True)
class PreparationPlan:
    """What to do with every feature column, before any fitting."""

    columns: tuple[ColumnSchema, ...]
    max_categories: Mapping[str, int]
    dropped: tuple[str, ...]
    warnings: tuple[str, ...]

    def schema(self) -> TabularSchema:
        return TabularSchema(columns=self.columns, dropped=self.dropped)


def infer_kind(series: pd.Series) -> ColumnKind | None:
    """The column's type from its values; None when every value is missing."""
    present = series.dropna()
    if present.empty:
        return None
    if pd.api.types.is_bool_dtype(series.dtype):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "datetime"
    if pd.api.types.is_numeric_dtype(series.dtype):
        return "numeric"
    if all(isinstance(v, bool | np.bool_) for v in present.tolist()):
        return "boolean"  # a CSV bool column with empty cells reads as object
    return "categorical"


def looks_like_identifier(series: pd.Series) -> bool:
    present = series.dropna()
    distinct = present.nunique()
    return distinct >= IDENTIFIER_MIN_DISTINCT and distinct > IDENTIFIER_DISTINCT_SHARE * len(
        present
    )


def plan_preparation(
    frame: pd.DataFrame,
    features: Sequence[str],
    estimator_path: str,
    spec: PreprocessingSpec | None,
    *,
    protected: Sequence[str] = (),
) -> PreparationPlan:
    """Decide every feature's type and preparation; raise naming the column when invalid."""
    spec = spec or PreprocessingSpec()
    overrides = {c.name: c for c in spec.columns}
    for name in overrides:
        if name not in frame.columns:
            raise TrainingError(
                Reason.INVALID_SPEC,
                f"spec.preprocessing.columns[{name}]: the dataset has no column {name!r}",
            )
        if name in protected:
            raise TrainingError(
                Reason.INVALID_SPEC,
                f"spec.preprocessing.columns[{name}]: {name!r} is the target or the "
                "sensitive column, not a feature",
            )
        if name not in features:
            raise TrainingError(
                Reason.INVALID_SPEC,
                f"spec.preprocessing.columns[{name}]: {name!r} is not among spec.dataset.features",
            )
    tree_model = estimator_path.startswith(TREE_ESTIMATOR_PREFIXES)
    columns: list[ColumnSchema] = []
    limits: dict[str, int] = {}
    dropped: list[str] = []
    warnings: list[str] = []
    for name in features:
        override = overrides.get(name) or ColumnPreprocessing(name=name)
        if override.drop:
            dropped.append(name)
            continue
        series = frame[name]
        inferred = infer_kind(series)
        if override.type is None and inferred is None:
            dropped.append(name)
            warnings.append(f"column {name!r} is empty in every row and was left out")
            continue
        if override.type is None and inferred == "categorical" and looks_like_identifier(series):
            dropped.append(name)
            warnings.append(
                f"column {name!r} has a distinct value in most rows (an identifier?) and was "
                "left out; set spec.preprocessing.columns[].type: categorical to keep it"
            )
            continue
        kind: ColumnKind = override.type or inferred or "numeric"
        _check_kind_fits(name, kind, override, inferred, series)
        column = _column_plan(
            name,
            kind,
            str(series.dtype),
            bool(series.isna().any()),
            override,
            spec,
            estimator_path,
            tree_model,
        )
        columns.append(column)
        if column.encoder is not None:
            limits[name] = override.max_categories or (
                spec.categorical.max_categories if spec.categorical else DEFAULT_MAX_CATEGORIES
            )
    if not columns:
        raise TrainingError(
            Reason.INVALID_DATASET,
            "no feature column is left after preparation (all dropped or empty)",
        )
    return PreparationPlan(tuple(columns), limits, tuple(dropped), tuple(warnings))


def accepts_missing_values(estimator: Any) -> bool:
    """The estimator's own word (scikit-learn's ``allow_nan`` tag) on NaN in its input."""
    try:
        from sklearn.utils import get_tags  # scikit-learn >= 1.6
    except ImportError:  # pragma: no cover - scikit-learn 1.4 and 1.5
        return bool(estimator._get_tags().get("allow_nan", False))
    return bool(get_tags(estimator).input_tags.allow_nan)


def check_missing_values_accepted(
    plan: PreparationPlan, spec: PreprocessingSpec | None, estimator: Any
) -> None:
    """``impute: none`` keeps a column's gaps as NaN: refuse it before fitting when the
    estimator does not take NaN, instead of letting its ``fit`` fail on them."""
    kept = [c for c in plan.columns if c.impute == "none" and c.nullable]
    if not kept or accepts_missing_values(estimator):
        return
    column = kept[0]
    own = {c.name for c in (spec.columns if spec else ()) if c.impute == "none"}
    field = (
        f"spec.preprocessing.columns[{column.name}]"
        if column.name in own
        else "spec.preprocessing.numeric"
    )
    others = f" (and {len(kept) - 1} more column(s))" if len(kept) > 1 else ""
    raise TrainingError(
        Reason.INVALID_SPEC,
        f"{field}: impute: none keeps the missing values of column {column.name!r}{others}, "
        f"but {type(estimator).__name__} does not accept missing values; choose mean, "
        "median, most_frequent or constant, or an estimator that accepts them "
        "(HistGradientBoosting, XGBoost, LightGBM, scikit-learn trees and forests)",
    )


def _check_kind_fits(
    name: str,
    kind: ColumnKind,
    override: ColumnPreprocessing,
    inferred: ColumnKind | None,
    series: pd.Series,
) -> None:
    numbers_only = override.impute in ("mean", "median", "none") or override.scaling is not None
    if inferred == "categorical" and override.type is None and numbers_only:
        what = f"impute: {override.impute}" if override.impute else "scaling"
        raise TrainingError(
            Reason.INVALID_SPEC,
            f"spec.preprocessing.columns[{name}]: {what} needs a number column, but "
            f"{name!r} holds text (inferred categorical); set type: numeric to parse it",
        )
    if kind == "numeric" and inferred not in ("numeric", "boolean", None):
        parsed = pd.to_numeric(series, errors="coerce")
        bad = series[parsed.isna() & series.notna()]
        if not bad.empty:
            raise TrainingError(
                Reason.INVALID_DATASET,
                f"column {name!r} is declared numeric but row {int(bad.index[0])} holds "
                f"{bad.iloc[0]!r}",
            )
    if kind == "boolean" and inferred not in ("boolean", None):
        values = set(series.dropna().tolist())
        if not values <= {0, 1}:
            raise TrainingError(
                Reason.INVALID_DATASET,
                f"column {name!r} is declared boolean but holds values other than "
                f"true/false/0/1, e.g. {sorted(map(str, values))[:3]}",
            )
    if kind == "datetime":
        text = series.dropna().astype(str)
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
        bad = text[parsed.isna()]
        if not bad.empty:
            raise TrainingError(
                Reason.INVALID_DATASET,
                f"column {name!r} is declared datetime but {bad.iloc[0]!r} is not an ISO-8601 date",
            )


def _column_plan(
    name: str,
    kind: ColumnKind,
    dtype: str,
    nullable: bool,
    override: ColumnPreprocessing,
    spec: PreprocessingSpec,
    estimator_path: str,
    tree_model: bool,
) -> ColumnSchema:
    if kind == "categorical":
        defaults = spec.categorical
        impute: str = override.impute or (defaults.impute if defaults else None) or "most_frequent"
        fill = (
            override.fill_value if override.impute else (defaults.fill_value if defaults else None)
        )
        default_encoder = defaults.encoder if defaults else "auto"
        encoder = override.encoder or (
            default_encoder
            if default_encoder != "auto"
            else ("ordinal" if tree_model else "onehot")
        )
        return ColumnSchema(
            name,
            kind,
            dtype,
            nullable,
            impute=impute,
            fill_value=fill if impute == "constant" else None,
            encoder=encoder,
        )
    numeric = spec.numeric
    default_impute = "most_frequent" if kind == "boolean" else "median"
    impute = override.impute or (numeric.impute if numeric else None) or default_impute
    # A column's own impute brings its own fillValue; the type-wide one goes with its impute.
    fill = override.fill_value if override.impute else (numeric.fill_value if numeric else None)
    if impute == "constant":
        _number(fill, name)
    scaling = override.scaling or (numeric.scaling if numeric else "auto")
    if scaling == "auto":
        scaling = "standard" if estimator_path.startswith(SCALED_ESTIMATOR_PREFIXES) else "none"
    date_parts = None
    if kind == "datetime":
        date_parts = tuple(override.date_parts or DEFAULT_DATE_PARTS)
    return ColumnSchema(
        name,
        kind,
        dtype,
        nullable,
        impute=impute,
        fill_value=fill if impute == "constant" else None,
        scaling=None if scaling == "none" else scaling,
        date_parts=date_parts,
    )


def _number(text: str | None, column: str) -> float:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise TrainingError(
            Reason.INVALID_SPEC,
            f"spec.preprocessing: fillValue {text!r} for numeric column {column!r} is not a "
            "finite number",
        )
    return value


# --- canonical values ------------------------------------------------------------------


def canonical_features(frame: pd.DataFrame, plan: PreparationPlan) -> pd.DataFrame:
    """The feature columns as the pipeline takes them (the server builds the same frame)."""
    data = {}
    for column in plan.columns:
        raw = frame[column.name]
        if column.kind == "numeric" and not pd.api.types.is_numeric_dtype(raw.dtype):
            raw = pd.to_numeric(raw, errors="coerce")  # checked in plan_preparation
        values = raw.to_numpy(dtype=object, na_value=np.nan)
        try:
            canonical = canonical_column(column, values)
        except CoercionError as exc:
            raise TrainingError(Reason.INVALID_DATASET, str(exc)) from exc
        data[column.name] = pd.Series(canonical, index=frame.index, dtype=canonical.dtype)
    return pd.DataFrame(data, index=frame.index)


def with_categories(plan: PreparationPlan, train: pd.DataFrame) -> PreparationPlan:
    """Record the categories each categorical column had in the training split."""
    columns = []
    for column in plan.columns:
        if column.kind == "categorical":
            seen = sorted({category_text(v) for v in train[column.name].dropna().tolist()})
            column = replace(column, categories=tuple(seen))
        columns.append(column)
    return replace(plan, columns=tuple(columns))


# --- the pipeline ----------------------------------------------------------------------


def build_preparation(plan: PreparationPlan) -> Any:
    from sklearn.compose import ColumnTransformer

    transformers = [
        (
            f"col{index}",
            _column_transformer(column, plan.max_categories.get(column.name)),
            [column.name],
        )
        for index, column in enumerate(plan.columns)
    ]
    return ColumnTransformer(
        transformers, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=False
    )


def build_pipeline(plan: PreparationPlan, estimator: Any) -> Any:
    from sklearn.pipeline import Pipeline

    return Pipeline([("prepare", build_preparation(plan)), ("model", estimator)])


def attach_schema(pipeline: Any, schema: TabularSchema) -> None:
    """The artifact carries its own input schema, so the server needs nothing beside it."""
    setattr(pipeline, SCHEMA_ATTRIBUTE, schema.to_json())


def _column_transformer(column: ColumnSchema, max_categories: int | None) -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        MinMaxScaler,
        OneHotEncoder,
        OrdinalEncoder,
        StandardScaler,
    )

    from kiln.tabular.transforms import date_part_names, date_parts

    steps: list[tuple[str, Any]] = []
    if column.kind == "datetime":
        steps.append(
            (
                "parse",
                FunctionTransformer(
                    date_parts,
                    kw_args={"parts": list(column.date_parts or DEFAULT_DATE_PARTS)},
                    feature_names_out=date_part_names,
                ),
            )
        )
    if column.impute not in (None, "none"):
        fill: Any = None
        if column.impute == "constant":
            fill = (
                column.fill_value if column.kind == "categorical" else float(column.fill_value or 0)
            )
        steps.append(
            (
                "impute",
                SimpleImputer(strategy=column.impute, fill_value=fill, keep_empty_features=True),
            )
        )
    if column.encoder == "onehot":
        steps.append(
            (
                "encode",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    max_categories=max_categories,
                    sparse_output=False,
                ),
            )
        )
    elif column.encoder == "ordinal":
        steps.append(
            (
                "encode",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=-1,
                    max_categories=max_categories,
                ),
            )
        )
    if column.scaling == "standard":
        steps.append(("scale", StandardScaler()))
    elif column.scaling == "minmax":
        steps.append(("scale", MinMaxScaler()))
    if not steps:
        return "passthrough"
    return Pipeline(steps)
