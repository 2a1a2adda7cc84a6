"""The input schema of a tabular model: every raw column, its type, and how it is prepared.

The trainer stores it in the artifact (as JSON in the pipeline attribute
``kiln_input_schema_``) and in the ModelVersion; the server reads it from the artifact,
so a model always carries the description of the inputs it was fitted on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

ColumnKind = Literal["numeric", "boolean", "categorical", "datetime"]
COLUMN_KINDS: tuple[ColumnKind, ...] = ("numeric", "boolean", "categorical", "datetime")
DATE_PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "hour", "minute")
DEFAULT_DATE_PARTS = ("year", "month", "day", "dayofweek")

# The pipeline attribute that carries the schema inside the skops artifact.
SCHEMA_ATTRIBUTE = "kiln_input_schema_"
SCHEMA_FORMAT = 1


@dataclass(frozen=True)
class ColumnSchema:
    """One raw input column as the model expects it."""

    name: str
    kind: ColumnKind
    dtype: str  # the column's dtype in the training table, as pandas named it
    nullable: bool  # missing values were seen in the training data
    categories: tuple[str, ...] | None = None  # categorical: values seen in the training split
    impute: str | None = None
    fill_value: str | None = None
    encoder: str | None = None
    scaling: str | None = None
    date_parts: tuple[str, ...] | None = None

    @property
    def accepts_numbers(self) -> bool:
        """Numbers are valid on the wire: numeric/boolean columns, and numeric codes."""
        return self.kind in ("numeric", "boolean") or (
            self.kind == "categorical" and _is_numeric_dtype_name(self.dtype)
        )

    def to_json(self) -> dict[str, Any]:
        """camelCase, unset fields left out: the ModelVersion's FeatureSchema shape."""
        document: dict[str, Any] = {
            "name": self.name,
            "type": self.kind,
            "dtype": self.dtype,
            "nullable": self.nullable,
        }
        optional = {
            "categories": list(self.categories) if self.categories is not None else None,
            "impute": self.impute,
            "fillValue": self.fill_value,
            "encoder": self.encoder,
            "scaling": self.scaling,
            "dateParts": list(self.date_parts) if self.date_parts is not None else None,
        }
        document.update({k: v for k, v in optional.items() if v is not None})
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ColumnSchema:
        kind = document.get("type")
        if kind not in COLUMN_KINDS:
            raise ValueError(f"column {document.get('name')!r} has unknown type {kind!r}")
        categories = document.get("categories")
        parts = document.get("dateParts")
        return cls(
            name=str(document["name"]),
            kind=cast(ColumnKind, kind),
            dtype=str(document.get("dtype", "")),
            nullable=bool(document.get("nullable", False)),
            categories=tuple(str(c) for c in categories) if categories is not None else None,
            impute=document.get("impute"),
            fill_value=document.get("fillValue"),
            encoder=document.get("encoder"),
            scaling=document.get("scaling"),
            date_parts=tuple(parts) if parts is not None else None,
        )


@dataclass(frozen=True)
class TabularSchema:
    """The model's raw inputs in the order the pipeline takes them."""

    columns: tuple[ColumnSchema, ...]
    dropped: tuple[str, ...] = field(default=())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def all_numeric(self) -> bool:
        """True when a plain [N, F] number matrix can carry every column."""
        return all(column.kind in ("numeric", "boolean") for column in self.columns)

    def to_json(self) -> str:
        document = {
            "format": SCHEMA_FORMAT,
            "columns": [column.to_json() for column in self.columns],
            "dropped": list(self.dropped),
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TabularSchema:
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("format") != SCHEMA_FORMAT:
            raise ValueError("not a Kiln input schema (format 1)")
        return cls(
            columns=tuple(ColumnSchema.from_json(c) for c in document["columns"]),
            dropped=tuple(str(name) for name in document.get("dropped", ())),
        )


def schema_of(model: Any) -> TabularSchema | None:
    """The schema a Kiln-trained pipeline carries, or None for a bare estimator."""
    text = getattr(model, SCHEMA_ATTRIBUTE, None)
    if not isinstance(text, str):
        return None
    return TabularSchema.from_json(text)


def _is_numeric_dtype_name(dtype: str) -> bool:
    return dtype.startswith(("int", "uint", "float", "Int", "UInt", "Float"))
