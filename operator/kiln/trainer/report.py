"""The termination message: compact JSON the operator reads from the Pod status.

Kubernetes keeps at most 4096 bytes of it, so a report that would be longer is shrunk
step by step (per-group fairness values, warnings, category lists, the list of dropped
columns, then feature dtypes, then params, then the tail of the class and feature lists)
and marked ``truncated``; the full report is uploaded next to the model as
``report.json``. The artifact and baseline references are never shrunk away.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from kiln.trainer.errors import Reason

# Kubernetes truncates beyond 4096; stay clear of the edge.
MAX_MESSAGE_BYTES = 4000
# In UTF-8 bytes, leaving room for the other keys of a failure report.
MAX_FAILURE_TEXT = 2000


def encode(report: dict[str, Any]) -> bytes:
    return json.dumps(report, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def failure_report(reason: Reason, message: str) -> dict[str, Any]:
    raw = message.encode()
    text = message
    if len(raw) > MAX_FAILURE_TEXT:
        # Cut on bytes, dropping a multi-byte character split at the edge.
        text = raw[: MAX_FAILURE_TEXT - 3].decode(errors="ignore") + "…"
    return {
        "ok": False,
        "reason": reason.label,
        "message": text,
        "exitCode": reason.exit_code,
        "retryable": reason.retryable,
    }


def bounded(report: dict[str, Any], limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """The report encoded in at most ``limit`` bytes, shrunk only as far as needed."""
    current = report
    data = encode(current)
    for shrink in _SHRINK_STEPS:
        if len(data) <= limit:
            return data
        current = copy.deepcopy(current)
        current["truncated"] = True
        current = shrink(current, limit)
        data = encode(current)
    if len(data) <= limit:
        return data
    essentials = {k: report[k] for k in _ESSENTIAL_KEYS if k in report}
    essentials["truncated"] = True
    data = encode(essentials)
    if len(data) <= limit:
        return data
    return encode({"ok": report.get("ok", False), "truncated": True})


_ESSENTIAL_KEYS = (
    "ok",
    "reason",
    "message",
    "exitCode",
    "artifact",
    "baseline",
    "dataset",
    "reportUri",
)


Shrink = Callable[[dict[str, Any], int], dict[str, Any]]


def _drop_fairness_groups(report: dict[str, Any], limit: int) -> dict[str, Any]:
    fairness = report.get("fairness")
    if isinstance(fairness, dict):
        fairness.pop("groups", None)
    return report


def _drop_categories(report: dict[str, Any], limit: int) -> dict[str, Any]:
    """Categories go first: the artifact carries them, the ModelVersion keeps the count."""
    schema = report.get("inputSchema")
    if isinstance(schema, dict) and isinstance(schema.get("features"), list):
        for feature in schema["features"]:
            if isinstance(feature, dict) and isinstance(feature.get("categories"), list):
                feature.setdefault("categoriesCount", len(feature["categories"]))
                del feature["categories"]
    return report


def _drop_dropped_columns(report: dict[str, Any], limit: int) -> dict[str, Any]:
    schema = report.get("inputSchema")
    if isinstance(schema, dict):
        schema.pop("dropped", None)
    return report


def _feature_names_only(report: dict[str, Any], limit: int) -> dict[str, Any]:
    schema = report.get("inputSchema")
    if isinstance(schema, dict) and isinstance(schema.get("features"), list):
        schema["features"] = [f["name"] if isinstance(f, dict) else f for f in schema["features"]]
    return report


def _truncate_list(key: str) -> Shrink:
    def shrink(report: dict[str, Any], limit: int) -> dict[str, Any]:
        schema = report.get("inputSchema")
        if not isinstance(schema, dict) or not isinstance(schema.get(key), list):
            return report
        items = schema[key]
        schema[f"{key}Count"] = len(items)
        # Largest prefix that fits: binary search over the length.
        low, high = 0, len(items)
        while low < high:
            middle = (low + high + 1) // 2
            schema[key] = items[:middle]
            if len(encode(report)) <= limit:
                low = middle
            else:
                high = middle - 1
        schema[key] = items[:low]
        return report

    return shrink


def _drop(key: str) -> Shrink:
    def shrink(report: dict[str, Any], limit: int) -> dict[str, Any]:
        report.pop(key, None)
        return report

    return shrink


_SHRINK_STEPS: tuple[Shrink, ...] = (
    _drop_fairness_groups,
    _drop("warnings"),
    _drop_categories,
    _drop_dropped_columns,
    _feature_names_only,
    _drop("params"),
    _truncate_list("classes"),
    _truncate_list("features"),
)
