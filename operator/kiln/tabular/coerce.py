"""Raw column values -> the canonical arrays the fitted pipeline takes.

One function per column type, used by the trainer on the loaded table and by the server
on request tensors: numbers become float64 with NaN for missing; categories become
Python ``str`` objects (numeric codes written the way the training table wrote them,
``3`` not ``3.0``) with NaN for missing; booleans become 1.0 / 0.0 / NaN; dates stay
text until the pipeline parses them. NaN is the only missing marker because
scikit-learn's imputers test ``x != x`` on object columns: a ``None`` would slip through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kiln.tabular.schema import ColumnSchema, TabularSchema


class CoercionError(ValueError):
    """A value that cannot be read as its column's type; the message names the column."""


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    # pandas.NA and NaT: compare unequal to themselves or refuse bool(); no pandas import.
    return type(value).__name__ in ("NAType", "NaTType")


def category_text(value: Any) -> Any:
    """A category as text, or NaN when missing. 3, 3.0 and "3" are the same category."""
    if is_missing(value):
        return np.nan
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value)


def categorical_values(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for index, value in enumerate(values.tolist() if isinstance(values, np.ndarray) else values):
        out[index] = category_text(value)
    return out


def numeric_values(values: Sequence[Any] | np.ndarray, column: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind in "iufb":
        return array.astype(np.float64)
    out = np.empty(len(array), dtype=np.float64)
    for index, value in enumerate(array.tolist()):
        if is_missing(value):
            out[index] = np.nan
        elif isinstance(value, bool | int | float | np.number):
            out[index] = float(value)
        else:
            raise CoercionError(f"column {column!r}: {value!r} is not a number")
    return out


def boolean_values(values: Sequence[Any] | np.ndarray, column: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind == "b":
        return array.astype(np.float64)
    out = np.empty(len(array), dtype=np.float64)
    for index, value in enumerate(array.tolist()):
        if is_missing(value):
            out[index] = np.nan
        elif isinstance(value, bool) or value in (0, 1):
            out[index] = 1.0 if value else 0.0
        else:
            raise CoercionError(f"column {column!r}: {value!r} is not a boolean")
    return out


def datetime_values(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for index, value in enumerate(values.tolist() if isinstance(values, np.ndarray) else values):
        out[index] = np.nan if is_missing(value) else str(value)
    return out


def canonical_column(column: ColumnSchema, values: Sequence[Any] | np.ndarray) -> np.ndarray:
    if column.kind == "numeric":
        return numeric_values(values, column.name)
    if column.kind == "boolean":
        return boolean_values(values, column.name)
    if column.kind == "categorical":
        return categorical_values(values)
    return datetime_values(values)


def canonical_frame(schema: TabularSchema, columns: Mapping[str, Any]) -> Any:
    """The pandas DataFrame the pipeline takes: schema order, canonical dtypes."""
    import pandas as pd

    data = {}
    for column in schema.columns:
        values = canonical_column(column, columns[column.name])
        # An explicit object dtype: pandas 3 would otherwise infer its own string dtype,
        # which scikit-learn's imputers and encoders treat differently from object.
        data[column.name] = pd.Series(values, dtype=values.dtype, copy=False)
    return pd.DataFrame(data)
