"""Kubernetes resource quantities ("500m", "1Gi", "2e3") as exact decimals (pure)."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
            "P": Decimal("1e15"), "E": Decimal("1e18")}  # fmt: skip


def parse_quantity(text: str | int | float) -> Decimal:
    raw = str(text).strip()
    for suffix, factor in _BINARY.items():
        if raw.endswith(suffix):
            return _number(raw[: -len(suffix)], raw) * factor
    for suffix in ("n", "u", "m", "k", "M", "G", "T", "P", "E"):
        if raw.endswith(suffix):
            return _number(raw[: -len(suffix)], raw) * _DECIMAL[suffix]
    return _number(raw, raw)


def _number(digits: str, whole: str) -> Decimal:
    try:
        value = Decimal(digits)
    except InvalidOperation as exc:
        raise ValueError(f"invalid quantity {whole!r}") from exc
    if not value.is_finite():
        raise ValueError(f"invalid quantity {whole!r}")
    return value


def ceil_ratio(value: Decimal, divisor: Decimal) -> int:
    """What kubelet exposes for a resourceFieldRef: value / divisor rounded up."""
    if divisor <= 0:
        raise ValueError("divisor must be positive")
    return math.ceil(value / divisor)
