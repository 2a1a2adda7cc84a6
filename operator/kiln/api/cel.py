"""CEL validation rules (`x-kubernetes-validations`) attached to models and fields.

Rules live next to the fields they guard; `kiln.api.crdgen` copies them into the CRD. Each
message names the field, because that is what a user sees at `kubectl apply` time.
"""

from __future__ import annotations

from typing import Any

CEL_KEY = "x-kubernetes-validations"


def rule(expression: str, message: str) -> dict[str, str]:
    """One CEL rule with the message the apiserver returns when it is false."""
    return {"rule": expression, "message": message}


def rules(*items: dict[str, str]) -> dict[str, Any]:
    """`json_schema_extra` carrying the given rules."""
    return {CEL_KEY: list(items)}


def min_le_max(path: str) -> dict[str, str]:
    """Both bounds optional, at least one set, and min <= max when both are."""
    return rule(
        "!has(self.min) || !has(self.max) || self.min <= self.max",
        f"{path}: min must be less than or equal to max",
    )


def at_least_one_bound(path: str) -> dict[str, str]:
    return rule("has(self.min) || has(self.max)", f"{path}: set min, max or both")


def matches(regex: str) -> str:
    """CEL that tests `self` against an RE2 regex (a raw CEL string: no escape doubling)."""
    if "'" in regex:
        raise ValueError("regex must not contain a single quote")
    return f"self.matches(r'{regex}')"
