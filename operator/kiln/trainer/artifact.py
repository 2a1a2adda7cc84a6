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


def input_schema(
    frame: pd.DataFrame, features: list[str], target: str, estimator: Any
) -> dict[str, Any]:
    """What the model server needs to accept a request: feature order, dtypes, labels."""
    schema: dict[str, Any] = {
        "features": [{"name": name, "dtype": str(frame[name].dtype)} for name in features],
        "target": {"name": target, "dtype": str(frame[target].dtype)},
    }
    classes = getattr(estimator, "classes_", None)
    if classes is not None:
        schema["classes"] = [_json_scalar(c) for c in list(classes)]
    return schema


def _json_scalar(value: Any) -> Any:
    item = value.item() if hasattr(value, "item") else value
    return item if isinstance(item, str | int | float | bool) or item is None else str(item)
