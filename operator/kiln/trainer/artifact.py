"""The model file: skops bytes that are identical for identical models, and the input schema.

skops names each array file in its zip after ``id()`` of the array and stamps every entry
with the current time, so two saves of the same model differ byte for byte. We rewrite
the archive: ids renumbered in order of first appearance in ``schema.json`` (a consistent
renaming, so skops' memo still links shared objects), entries in a fixed order with a
fixed timestamp. The same model then always has the same sha256.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pandas as pd

# What a ModelVersion's FeatureSchema can hold (the artifact keeps every category).
from kiln.api.model_version import MAX_CATEGORY_LENGTH, MAX_RECORDED_CATEGORIES
from kiln.tabular.schema import TabularSchema

FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
SCHEMA_ENTRY = "schema.json"
ARTIFACT_FORMAT = "skops"


def dump_model(estimator: Any) -> bytes:
    import skops.io as sio

    return canonical_skops(sio.dumps(estimator))


def canonical_skops(raw: bytes) -> bytes:
    """Rewrite a skops archive so that its bytes depend only on the model."""
    with zipfile.ZipFile(io.BytesIO(raw)) as source:
        schema = json.loads(source.read(SCHEMA_ENTRY))
        files = {name: source.read(name) for name in source.namelist() if name != SCHEMA_ENTRY}
    ids: dict[int, int] = {}
    names: dict[str, str] = {}
    renamed = _renumber(schema, ids, names)
    unreferenced = sorted(set(files) - set(names))
    for name in unreferenced:  # not expected from skops, but never drop data
        names[name] = f"extra-{len(names)}-{name}"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as target:
        for old_name, new_name in names.items():
            _write(target, new_name, files[old_name])
        _write(target, SCHEMA_ENTRY, json.dumps(renamed, indent=2).encode())
    return out.getvalue()


def _renumber(node: Any, ids: dict[int, int], names: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_renumber(item, ids, names) for item in node]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "__id__" and isinstance(value, int):
            result[key] = ids.setdefault(value, len(ids) + 1)
        elif key == "file" and isinstance(value, str):
            suffix = value[value.rfind(".") :] if "." in value else ""
            result[key] = names.setdefault(value, f"{len(names) + 1:06d}{suffix}")
        else:
            result[key] = _renumber(value, ids, names)
    return result


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, whatever the build host
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def input_schema(schema: TabularSchema, target: pd.Series, estimator: Any) -> dict[str, Any]:
    """The ModelVersion's input schema: every raw column with its type and preparation."""
    document: dict[str, Any] = {
        "features": [_recorded_column(column.to_json()) for column in schema.columns],
        "target": {"name": str(target.name), "dtype": str(target.dtype)},
    }
    if schema.dropped:
        document["dropped"] = list(schema.dropped)
    classes = getattr(estimator, "classes_", None)
    if classes is not None:
        document["classes"] = [_json_scalar(c) for c in list(classes)]
    return document


def _recorded_column(column: dict[str, Any]) -> dict[str, Any]:
    """Categories as the ModelVersion can hold them (at most 64 of at most 64 chars)."""
    categories = column.get("categories")
    if categories is None:
        return column
    if len(categories) > MAX_RECORDED_CATEGORIES or any(
        len(c) > MAX_CATEGORY_LENGTH for c in categories
    ):
        column = {**column, "categoriesCount": len(categories)}
        kept = [c for c in categories if len(c) <= MAX_CATEGORY_LENGTH]
        column["categories"] = kept[:MAX_RECORDED_CATEGORIES]
    return column


def _json_scalar(value: Any) -> Any:
    item = value.item() if hasattr(value, "item") else value
    return item if isinstance(item, str | int | float | bool) or item is None else str(item)
