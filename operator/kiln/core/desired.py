"""Whether an object the apiserver returned already has the state Kiln wants for it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def contains(current: Any, desired: Any) -> bool:
    """Whether `current` already has everything `desired` says (apiserver defaults aside):
    maps may hold more keys, lists must match item by item, anything else must be equal.
    A patch is sent only when this is False."""
    if isinstance(desired, Mapping):
        return isinstance(current, Mapping) and all(
            contains(current.get(k), v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(contains(c, d) for c, d in zip(current, desired, strict=True))
        )
    return bool(current == desired)
