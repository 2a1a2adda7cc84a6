"""spec.preprocessing: how the trainer prepares the table, overriding what it infers.

Without it the trainer infers every column's type (numeric, boolean, categorical) and
builds the preparation itself; see docs/trainer.md. Each rule below is also a CEL rule in
the CRD, so a contradictory setting is refused at `kubectl apply` with the field named.
Settings whose validity depends on the data (a column that does not exist, `mean` on a
text column) fail the run with `InvalidSpec` / `InvalidDataset` naming the column.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from kiln.api.cel import rule, rules
from kiln.api.common import KilnModel
from kiln.api.fields import ColumnName

ColumnType = Literal["numeric", "boolean", "categorical", "datetime"]
ImputeStrategy = Literal["mean", "median", "most_frequent", "constant", "none"]
CategoricalImpute = Literal["most_frequent", "constant"]
Encoder = Literal["onehot", "ordinal"]
Scaling = Literal["standard", "minmax", "none"]
DatePart = Literal["year", "month", "day", "dayofweek", "dayofyear", "hour", "minute"]

MAX_COLUMN_OVERRIDES = 256
MAX_CATEGORIES_LIMIT = 1024
# A fill value is recorded in the ModelVersion's input schema, whose strings are short.
MAX_FILL_VALUE = 64

_COLUMN = "spec.preprocessing.columns[]"
_SETTINGS = ("type", "impute", "fillValue", "encoder", "scaling", "dateParts", "maxCategories")


class ColumnPreprocessing(KilnModel):
    """Settings for one column; anything left out is inferred."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "!has(self.drop) || !self.drop || ("
                + " && ".join(f"!has(self.{name})" for name in _SETTINGS)
                + ")",
                f"{_COLUMN}: drop: true cannot be combined with other settings",
            ),
            rule(
                "!has(self.impute) || self.impute != 'constant' || has(self.fillValue)",
                f"{_COLUMN}: impute: constant needs fillValue",
            ),
            rule(
                "!has(self.fillValue) || (has(self.impute) && self.impute == 'constant')",
                f"{_COLUMN}: fillValue is only used with impute: constant",
            ),
            rule(
                "!has(self.type) || self.type == 'categorical' || "
                "(!has(self.encoder) && !has(self.maxCategories))",
                f"{_COLUMN}: encoder and maxCategories apply to type: categorical only",
            ),
            rule(
                "!has(self.type) || self.type != 'categorical' || "
                "!has(self.impute) || !(self.impute in ['mean', 'median', 'none'])",
                f"{_COLUMN}: a categorical column is imputed with most_frequent or constant",
            ),
            rule(
                "!has(self.type) || self.type != 'categorical' || !has(self.scaling)",
                f"{_COLUMN}: scaling applies to numeric, boolean and datetime columns",
            ),
            rule(
                "!has(self.dateParts) || (has(self.type) && self.type == 'datetime')",
                f"{_COLUMN}: dateParts needs type: datetime",
            ),
        )
    )

    name: ColumnName = Field(description="The column these settings apply to.")
    drop: bool | None = Field(default=None, description="Leave the column out of the model.")
    type: ColumnType | None = Field(
        default=None,
        description="Override the inferred type, e.g. categorical for a numeric code, "
        "datetime to parse dates into parts.",
    )
    impute: ImputeStrategy | None = Field(
        default=None,
        description="Missing values: mean, median, most_frequent, constant (with "
        "fillValue), or none (keep NaN, for estimators that accept it).",
    )
    fill_value: str | None = Field(
        default=None,
        max_length=MAX_FILL_VALUE,
        description="The value for impute: constant (a number for numeric columns).",
    )
    encoder: Encoder | None = Field(
        default=None,
        description="onehot or ordinal; unseen categories are tolerated at serving time "
        "either way (all-zero / infrequent one-hot, or ordinal -1).",
    )
    max_categories: int | None = Field(
        default=None,
        ge=2,
        le=MAX_CATEGORIES_LIMIT,
        description="Keep at most this many categories; rarer ones share one column.",
    )
    scaling: Scaling | None = Field(default=None, description="standard, minmax or none.")
    date_parts: list[DatePart] | None = Field(
        default=None,
        min_length=1,
        max_length=7,
        description="Parts of a datetime column the model sees (default year, month, day, "
        "dayofweek).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    @model_validator(mode="after")
    def _consistent(self) -> ColumnPreprocessing:
        path = f"spec.preprocessing.columns[{self.name}]"
        settings = (
            self.type,
            self.impute,
            self.fill_value,
            self.encoder,
            self.scaling,
            self.date_parts,
            self.max_categories,
        )
        if self.drop and any(s is not None for s in settings):
            raise ValueError(f"{path}: drop: true cannot be combined with other settings")
        if self.impute == "constant" and self.fill_value is None:
            raise ValueError(f"{path}: impute: constant needs fillValue")
        if self.fill_value is not None and self.impute != "constant":
            raise ValueError(f"{path}: fillValue is only used with impute: constant")
        if self.type not in (None, "categorical") and (
            self.encoder is not None or self.max_categories is not None
        ):
            raise ValueError(f"{path}: encoder and maxCategories apply to type: categorical only")
        if self.type == "categorical" and self.impute in ("mean", "median", "none"):
            raise ValueError(
                f"{path}: a categorical column is imputed with most_frequent or constant"
            )
        if self.type == "categorical" and self.scaling is not None:
            raise ValueError(f"{path}: scaling applies to numeric, boolean and datetime columns")
        if self.date_parts is not None and self.type != "datetime":
            raise ValueError(f"{path}: dateParts needs type: datetime")
        return self


class NumericDefaults(KilnModel):
    """Settings for every numeric column without its own."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "!has(self.impute) || self.impute != 'constant' || has(self.fillValue)",
                "spec.preprocessing.numeric: impute: constant needs fillValue",
            ),
        )
    )

    impute: ImputeStrategy | None = Field(
        default=None, description="Missing numbers (default median)."
    )
    fill_value: str | None = Field(
        default=None, max_length=MAX_FILL_VALUE, description="For impute: constant."
    )
    scaling: Literal["auto", "standard", "minmax", "none"] = Field(
        default="auto",
        description="auto: standard scaling for estimators that need it (linear models, "
        "SVMs, neighbours), none for the others.",
    )

    @model_validator(mode="after")
    def _constant_has_value(self) -> NumericDefaults:
        if self.impute == "constant" and self.fill_value is None:
            raise ValueError("spec.preprocessing.numeric: impute: constant needs fillValue")
        return self


class CategoricalDefaults(KilnModel):
    """Settings for every categorical column without its own."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "!has(self.impute) || self.impute != 'constant' || has(self.fillValue)",
                "spec.preprocessing.categorical: impute: constant needs fillValue",
            ),
        )
    )

    impute: CategoricalImpute | None = Field(
        default=None, description="Missing categories (default most_frequent)."
    )
    fill_value: str | None = Field(
        default=None, max_length=MAX_FILL_VALUE, description="For impute: constant."
    )
    encoder: Literal["auto", "onehot", "ordinal"] = Field(
        default="auto",
        description="auto: ordinal for tree models (forests, boosting, XGBoost, LightGBM), "
        "onehot for the others.",
    )
    max_categories: int = Field(
        default=32,
        ge=2,
        le=MAX_CATEGORIES_LIMIT,
        description="Categories kept per column; rarer ones share one (infrequent) column.",
    )

    @model_validator(mode="after")
    def _constant_has_value(self) -> CategoricalDefaults:
        if self.impute == "constant" and self.fill_value is None:
            raise ValueError("spec.preprocessing.categorical: impute: constant needs fillValue")
        return self


class PreprocessingSpec(KilnModel):
    """Overrides of the inferred data preparation (all optional)."""

    drop_duplicate_rows: bool = Field(
        default=False, description="Drop exact duplicate rows before the split."
    )
    numeric: NumericDefaults | None = Field(default=None, description="Numeric columns.")
    categorical: CategoricalDefaults | None = Field(
        default=None, description="Categorical (text) columns."
    )
    columns: list[ColumnPreprocessing] = Field(
        default_factory=list,
        max_length=MAX_COLUMN_OVERRIDES,
        description="Per-column settings, which win over the type-wide ones.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _unique_columns(self) -> PreprocessingSpec:
        seen: set[str] = set()
        for column in self.columns:
            if column.name in seen:
                raise ValueError(f"spec.preprocessing.columns: {column.name!r} is listed twice")
            seen.add(column.name)
        return self


__all__ = [
    "CategoricalDefaults",
    "ColumnPreprocessing",
    "ColumnType",
    "NumericDefaults",
    "PreprocessingSpec",
]
