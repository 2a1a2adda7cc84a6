"""The watch's copy of each reconciled object, and the echoes of the controller's own writes.

kopf's watch delivers every object it sees; keeping the newest body lets a reconcile skip
its GET. Two rules keep that safe:

- a cached body older than anything the controller has itself read or written is stale
  (it predates our own last write): the reconcile GETs instead;
- an event whose resourceVersion is one this controller's own write produced is an echo:
  the pass that wrote it already acted on everything it wrote, so it needs no reconcile.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# Echoes that never came (a watch restart drops them) are forgotten oldest first past this.
MAX_PENDING_ECHOES = 8


def resource_version(obj: Mapping[str, Any]) -> int | None:
    """The object's resourceVersion as a number (etcd's revision), None when opaque."""
    value = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class InformerCache(Generic[K]):
    def __init__(self) -> None:
        self._bodies: dict[K, dict[str, Any]] = {}
        self._known: dict[K, int] = {}
        self._own_writes: dict[K, set[int]] = {}

    def observe(self, key: K, body: dict[str, Any]) -> None:
        """Remember the body the watch delivered (the watch never goes back in time)."""
        version = resource_version(body)
        if version is None:
            self._bodies.pop(key, None)
            return
        current = self._bodies.get(key)
        if current is not None and (resource_version(current) or 0) > version:
            return
        self._bodies[key] = body

    def changed(self, key: K, body: dict[str, Any]) -> bool:
        """Remember the body; whether it needs a reconcile (not when it is our own echo)."""
        self.observe(key, body)
        own = self._own_writes.get(key)
        version = resource_version(body)
        if own and version in own:
            own.discard(version)
            return False
        return True

    def learn(self, key: K, obj: Mapping[str, Any]) -> None:
        """A version of the object this controller has read: older cached copies are stale."""
        version = resource_version(obj)
        if version is not None and version > self._known.get(key, 0):
            self._known[key] = version

    def wrote(self, key: K, obj: Mapping[str, Any]) -> None:
        """The object as this controller's own write left it: its echo needs no reconcile."""
        self.learn(key, obj)
        version = resource_version(obj)
        if version is None:
            return
        own = self._own_writes.setdefault(key, set())
        if len(own) >= MAX_PENDING_ECHOES:
            own.discard(min(own))
        own.add(version)

    def latest(self, key: K) -> int | None:
        """The newest resourceVersion this controller has read or written."""
        return self._known.get(key)

    def fresh(self, key: K) -> dict[str, Any] | None:
        """The cached body when it is at least as new as anything read or written, else None."""
        cached = self._bodies.get(key)
        if cached is None:
            return None
        version = resource_version(cached)
        if version is None or version < self._known.get(key, 0):
            return None
        return cached

    def invalidate(self, key: K) -> None:
        """Drop the cached body (a write found it stale); the next read GETs."""
        self._bodies.pop(key, None)

    def forget(self, key: K) -> None:
        """The object is gone."""
        self._bodies.pop(key, None)
        self._known.pop(key, None)
        self._own_writes.pop(key, None)
