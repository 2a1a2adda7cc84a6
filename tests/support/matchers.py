"""Condition and Event matchers shared by every tier (plain dicts, as the API returns them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kiln.api.common import KilnModel


def _plain(obj: Mapping[str, Any] | KilnModel) -> Mapping[str, Any]:
    """A pydantic model (kiln.api) as the apiserver would return it; a dict as it is."""
    return obj.to_wire() if isinstance(obj, KilnModel) else obj


def _conditions(obj: Mapping[str, Any] | KilnModel) -> list[Mapping[str, Any]]:
    plain = _plain(obj)
    status = plain.get("status", plain) or {}
    return list(status.get("conditions") or [])


def condition(obj: Mapping[str, Any] | KilnModel, type_: str) -> dict[str, Any] | None:
    """The condition of `type_` in an object's (or a bare status's) conditions."""
    return next((dict(c) for c in _conditions(obj) if c.get("type") == type_), None)


def condition_reasons(obj: Mapping[str, Any] | KilnModel) -> dict[str, tuple[str, str]]:
    """Every condition of an object (or a bare status) as type -> (status, reason)."""
    return {c["type"]: (c["status"], c.get("reason", "")) for c in _conditions(obj)}


def has_condition(
    obj: Mapping[str, Any] | KilnModel,
    type_: str,
    status: str = "True",
    *,
    reason: str | None = None,
    message_has: Iterable[str] = (),
) -> bool:
    """Whether the object shows `type_`=`status` (with that reason and message parts)."""
    found = condition(obj, type_)
    return (
        found is not None
        and found.get("status") == status
        and (reason is None or found.get("reason") == reason)
        and all(part in (found.get("message") or "") for part in message_has)
    )


def events_matching(
    events: Iterable[Mapping[str, Any]],
    *,
    about: str | None = None,
    reason: str | None = None,
    type_: str | None = None,
    message_has: Iterable[str] = (),
) -> list[Mapping[str, Any]]:
    """The Events (core/v1 dicts) about object `about` with that reason, type and message."""
    parts = list(message_has)
    return [
        e
        for e in events
        if (about is None or (e.get("involvedObject") or {}).get("name") == about)
        and (reason is None or e.get("reason") == reason)
        and (type_ is None or e.get("type") == type_)
        and all(p in (e.get("message") or "") for p in parts)
    ]


def posted_events(kmock: Any) -> list[Mapping[str, Any]]:
    """Every Event POSTed to kmock's emulator, in order (it keeps one per generateName)."""
    return [
        r.data
        for r in kmock
        if str(r.method).upper().endswith("POST") and r.url.path.endswith("/events")
    ]
