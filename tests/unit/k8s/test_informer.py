"""The informer cache: the watch's newest copy, stale copies refused, our own echoes skipped."""

from __future__ import annotations

from typing import Any

import pytest

from kiln.k8s.informer import MAX_PENDING_ECHOES, InformerCache

pytestmark = pytest.mark.unit

KEY = ("ml", "iris")


def body(version: int | str | None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "iris", "namespace": "ml"}
    if version is not None:
        metadata["resourceVersion"] = str(version)
    return {"metadata": metadata, "spec": spec}


def test_the_watchs_newest_copy_is_served_and_an_older_one_never_replaces_it() -> None:
    cache: InformerCache[tuple[str, str]] = InformerCache()
    cache.observe(KEY, body(10, replicas=2))
    cache.observe(KEY, body(7, replicas=1))  # a late event of an older version
    assert cache.fresh(KEY) == body(10, replicas=2)


def test_a_cached_copy_older_than_what_the_controller_read_or_wrote_is_not_served() -> None:
    cache: InformerCache[tuple[str, str]] = InformerCache()
    cache.observe(KEY, body(10))
    cache.learn(KEY, body(12))  # a GET saw 12: the watch's 10 predates it
    assert cache.fresh(KEY) is None
    cache.observe(KEY, body(12))
    assert cache.fresh(KEY) == body(12)
    cache.wrote(KEY, body(13))  # our own status write
    assert cache.fresh(KEY) is None and cache.latest(KEY) == 13


def test_the_echo_of_our_own_write_needs_no_reconcile_but_anyone_elses_change_does() -> None:
    cache: InformerCache[tuple[str, str]] = InformerCache()
    cache.wrote(KEY, body(13))
    assert cache.changed(KEY, body(13)) is False  # our echo
    assert cache.changed(KEY, body(13)) is True  # delivered again: no longer known as ours
    assert cache.changed(KEY, body(14)) is True  # a person's edit
    assert cache.fresh(KEY) == body(14)  # either way the body is kept


def test_echoes_that_never_arrive_are_forgotten_oldest_first() -> None:
    cache: InformerCache[tuple[str, str]] = InformerCache()
    for version in range(1, MAX_PENDING_ECHOES + 2):
        cache.wrote(KEY, body(version))
    assert cache.changed(KEY, body(1)) is True  # the oldest was dropped
    assert cache.changed(KEY, body(MAX_PENDING_ECHOES + 1)) is False


def test_a_deleted_object_leaves_nothing_behind() -> None:
    cache: InformerCache[tuple[str, str]] = InformerCache()
    cache.observe(KEY, body(5))
    cache.wrote(KEY, body(6))
    cache.forget(KEY)
    assert cache.fresh(KEY) is None and cache.latest(KEY) is None
    # A new object of the same name (versions start anywhere) is served and reconciled.
    assert cache.changed(KEY, body(6)) is True
    assert cache.fresh(KEY) == body(6)


def test_an_opaque_resource_version_is_never_served_from_the_cache() -> None:
    cache: InformerCache[tuple[str, str]] = InformerCache()
    cache.observe(KEY, body(5))
    cache.observe(KEY, body("not-a-number"))
    assert cache.fresh(KEY) is None
    cache.observe(KEY, body(None))
    assert cache.fresh(KEY) is None


def test_invalidate_drops_the_copy_but_keeps_what_was_learned() -> None:
    cache: InformerCache[tuple[str, str]] = InformerCache()
    cache.observe(KEY, body(5))
    cache.learn(KEY, body(5))
    cache.invalidate(KEY)
    assert cache.fresh(KEY) is None and cache.latest(KEY) == 5
