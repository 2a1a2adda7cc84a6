"""The controller chassis: everything a Kiln controller does that is not its own decisions.

A controller is its `reconcile(key)`: observe the world, ask `kiln.core`, apply the answer.
The chassis around it, the same for every kind:

- kopf watches only *enqueue keys* (`enqueue`); an event that is the echo of this
  controller's own write is dropped by the informer cache, which also spares the
  reconcile its GET when the watch's copy is current (`read`);
- a bounded pool of workers reconciles keys from the work queue, never one key twice at
  once; a reconcile returns when to look again;
- status is written whole, with the resourceVersion the pass read as a precondition: a
  status computed from a stale copy never overwrites a newer one; on 409 the pass is
  simply run again from a fresh read (`write_status` returns False);
- one clock (`utcnow`, whole seconds: what the apiserver stores);
- one error path: whatever a reconcile raises becomes a condition on the object (Stalled
  with a reason when a person must act, Reconciling with the error when a retry may
  help) and a Warning Event, rate-limited, so a user sees it with `kubectl describe`.

The controllers live in kopf's memo (one per operator, `Controller.start_in`), not in
module globals; kopf's handlers find them there (`Controller.in_memo`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import aiohttp
import kopf
from pydantic import BaseModel, ValidationError

from kiln.api.common import Condition, KilnModel
from kiln.api.wire import GROUP
from kiln.core import failures
from kiln.core.failures import Failure
from kiln.k8s.client import ApiError, KubeClient, Resource
from kiln.k8s.events import EventPoster, RateLimiter
from kiln.k8s.informer import InformerCache, resource_version
from kiln.k8s.workqueue import WorkQueue, run_workers, stop_workers
from kiln.settings import OperatorSettings
from kiln.telemetry import RECONCILE_DURATION, RECONCILE_ERRORS

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)


def utcnow() -> datetime:
    """Now, in whole seconds: status timestamps round-trip through the apiserver unchanged."""
    return datetime.now(UTC).replace(microsecond=0)


def key_of(namespace: str | None, name: str) -> Key:
    return (namespace or "default", name)


def owner_keys(body: Mapping[str, Any], kind: str) -> list[Key]:
    """Keys of the Kiln objects of `kind` that own `body` (from its ownerReferences)."""
    metadata = body.get("metadata") or {}
    return [
        key_of(metadata.get("namespace"), owner["name"])
        for owner in metadata.get("ownerReferences") or []
        if owner.get("kind") == kind and str(owner.get("apiVersion", "")).startswith(GROUP + "/")
    ]


class Stalled(Exception):
    """Raised by a reconcile that cannot go on until a person changes something.

    `resync` is when to look again (None: only when an event arrives, e.g. for a spec
    that only its next edit can fix).
    """

    def __init__(
        self, reason: str, message: str, resync: float | None = failures.STALLED_RESYNC_SECONDS
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.resync = resync


def describe(error: Exception) -> Failure:
    """Any exception a reconcile raised, as the failure the user is shown."""
    if isinstance(error, Stalled):
        return Failure(error.reason, failures.compose(error.message), permanent=True)
    if isinstance(error, ApiError):
        return failures.api_failure(error.status, error.message, error.request)
    if isinstance(error, aiohttp.ClientError | OSError | TimeoutError):
        return failures.unreachable(str(error) or type(error).__name__)
    return failures.unexpected(type(error).__name__, str(error))


class Controller:
    """The chassis; a subclass sets the class attributes and implements `reconcile`."""

    kind: ClassVar[str]
    resource: ClassVar[Resource]
    status_type: ClassVar[type[KilnModel]]
    # Where kopf's memo holds the operator's instance.
    memo_key: ClassVar[str]
    # Identical failure Events of one object are posted at most once per this window.
    failure_event_window: ClassVar[float] = 600.0

    def __init__(
        self,
        client: KubeClient,
        settings: OperatorSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        workers: int = 1,
    ) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.workers = workers
        self.queue: WorkQueue[Key] = WorkQueue()
        self.cache: InformerCache[Key] = InformerCache()
        # Events wait while reconciles are queued: objects and statuses come first (and at
        # shutdown, when nothing will take the queued keys, they go at once).
        self.events = EventPoster(
            client, busy=lambda: len(self.queue) > 0 and not self.queue.shut_down
        )
        self._failure_events: RateLimiter[tuple[Key, str, str]] = RateLimiter(
            self.failure_event_window
        )
        self._failures: dict[Key, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # --- what a subclass provides --------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        """One pass; seconds until the next look (None: only when an event arrives)."""
        raise NotImplementedError

    def forget(self, key: Key) -> None:
        """Drop what the controller keeps in memory about a deleted object."""

    def with_failure(self, status: Any, failure: Failure, generation: int | None) -> Any:
        """The status showing `failure` (a subclass adds its own fields)."""
        conditions: list[Condition] = failures.failure_conditions(
            status.conditions, failure, self.clock(), generation
        )
        update: dict[str, Any] = {"conditions": conditions}
        if failure.permanent:
            update["observed_generation"] = generation
        return status.model_copy(update=update)

    # --- lifecycle, in kopf's memo -------------------------------------------------------

    @classmethod
    def in_memo(cls, memo: kopf.Memo) -> Self | None:
        """The instance kopf's memo holds (None before startup or after cleanup)."""
        found = memo.get(cls.memo_key)
        return found if isinstance(found, cls) else None

    @classmethod
    def start_in(cls, memo: kopf.Memo, make: Callable[[], Self]) -> None:
        """Start the instance in kopf's memo; make it first unless one is there already
        (a test's, with its own client)."""
        controller = cls.in_memo(memo)
        if controller is None:
            controller = memo[cls.memo_key] = make()
        controller.start()

    @classmethod
    async def stop_in(cls, memo: kopf.Memo) -> None:
        controller = cls.in_memo(memo)
        if controller is not None:
            await controller.stop()
            memo.pop(cls.memo_key, None)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.run()))

    async def run(self) -> None:
        await run_workers(self.queue, self.reconcile_reporting_failures, self.workers)

    async def stop(self) -> None:
        await stop_workers(self.queue, self._tasks)
        await self.events.close()
        await self.client.close()

    # --- the watch side ------------------------------------------------------------------

    def enqueue(self, key: Key, body: Mapping[str, Any], *, deleted: bool = False) -> None:
        """A watch event of the reconciled kind: reconcile unless it is our own echo."""
        if deleted:
            self.queue.forget(key)
            self.cache.forget(key)
            self._failures.pop(key, None)
            self.forget(key)
            return
        # kopf's Body is a read-only view of the watch's object; the reconcile only reads it.
        if self.cache.changed(key, dict(body)):
            self.queue.add(key)

    # --- reading and writing the reconciled object -----------------------------------------

    async def read(self, key: Key) -> dict[str, Any] | None:
        """The object: the watch's copy when current, else a GET; None when it is gone."""
        cached = self.cache.fresh(key)
        if cached is not None:
            self.cache.learn(key, cached)
            return cached
        namespace, name = key
        try:
            raw = await self.client.get(self.resource, namespace, name)
        except ApiError as e:
            if not e.not_found:
                raise
            self.queue.forget(key)
            self.cache.forget(key)
            self.forget(key)
            return None
        self.cache.learn(key, raw)
        return raw

    def status_patch(self, status: Any, resource_version: str | None) -> dict[str, Any]:
        """The whole status as a merge patch: fields that became empty are removed (null),
        inside nested objects too (a merge patch keeps a nested field it does not name, so
        a value that went away, such as a search's ETA, would otherwise stay on the object).

        With `resource_version`, the apiserver applies it only to that version of the
        object (409 otherwise).
        """
        wire = status.to_wire()
        explicit_nulls(status, wire)
        patch: dict[str, Any] = {"status": wire}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        return patch

    def _precondition(self, key: Key, raw: Mapping[str, Any]) -> str | None:
        """The version this pass read, or the newer one its own writes produced."""
        latest = self.cache.latest(key)
        if latest is not None and latest >= (resource_version(raw) or 0):
            return str(latest)
        value = (raw.get("metadata") or {}).get("resourceVersion")
        return str(value) if value else None

    async def write_status(self, key: Key, raw: Mapping[str, Any], status: Any) -> bool:
        """Write the status; False when the object changed since it was read (go again)."""
        namespace, name = key
        patch = self.status_patch(status, self._precondition(key, raw))
        try:
            written = await self.client.patch(
                self.resource, namespace, name, patch, subresource="status"
            )
        except ApiError as e:
            if not e.conflict:
                raise
            # What the pass did is idempotent by construction: go again from a fresh read.
            logger.info("%s %s/%s changed during the reconcile: again", self.kind, *key)
            self.cache.invalidate(key)
            return False
        self.cache.wrote(key, written)
        return True

    async def patch_metadata(self, key: Key, metadata: dict[str, Any]) -> None:
        """Merge-patch the object's metadata (annotations); its echo needs no pass."""
        namespace, name = key
        written = await self.client.patch(self.resource, namespace, name, {"metadata": metadata})
        self.cache.wrote(key, written)

    def post_event(
        self, raw: dict[str, Any], reason: str, message: str, *, warning: bool = False
    ) -> None:
        self.events.post(raw, reason, message, warning=warning)

    # --- the one error path --------------------------------------------------------------

    async def reconcile_reporting_failures(self, key: Key) -> float | None:
        """`reconcile`, timed; whatever it raises reaches the object's status and Events."""
        started = time.perf_counter()
        try:
            delay = await self.reconcile(key)
        except Exception as error:
            RECONCILE_ERRORS.labels(self.kind).inc()
            failure = describe(error)
            count = self._failures.get(key, 0) + 1
            self._failures[key] = count
            if isinstance(error, Stalled | ApiError):
                logger.warning("%s %s/%s: %s: %s", self.kind, *key, failure.reason, failure.message)
            else:
                logger.exception("%s %s/%s: reconcile failed", self.kind, *key)
            await self.report_failure(key, failure)
            if isinstance(error, Stalled):
                return error.resync
            return failures.retry_after(failure, count)
        finally:
            RECONCILE_DURATION.labels(self.kind).observe(time.perf_counter() - started)
        self._failures.pop(key, None)
        return delay

    async def report_failure(self, key: Key, failure: Failure) -> None:
        """The failure as a condition and a (rate-limited) Warning Event; never raises."""
        try:
            raw = await self.read(key)
            if raw is None:
                return
            try:
                previous = self.status_type.model_validate(raw.get("status") or {})
            except ValidationError:
                previous = self.status_type()
            generation = (raw.get("metadata") or {}).get("generation")
            status = self.with_failure(previous, failure, generation)
            if status != previous:
                await self.write_status(key, raw, status)
        except Exception as e:  # the apiserver may be what failed: the log is all that's left
            logger.warning("%s %s/%s: cannot record the failure: %s", self.kind, *key, e)
            return
        if self._failure_events.allow((key, failure.reason, failure.message), time.monotonic()):
            self.post_event(raw, failure.reason, failure.message, warning=True)


def explicit_nulls(model: BaseModel, wire: dict[str, Any]) -> None:
    """Name every field of `model` (and of its nested models) that `wire` leaves out, as
    null. Lists are replaced whole by a merge patch and need nothing."""
    for field_name, info in type(model).model_fields.items():
        key = info.alias or field_name
        value = getattr(model, field_name)
        if key not in wire:
            wire[key] = None
        elif isinstance(value, BaseModel) and isinstance(wire[key], dict):
            explicit_nulls(value, wire[key])
