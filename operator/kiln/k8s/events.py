"""core/v1 Events about Kiln objects (what `kubectl describe` and `kubectl events` show)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from kiln.k8s.client import EVENTS, ApiError, KubeClient

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

COMPONENT = "kiln-operator"
MAX_EVENT_MESSAGE = 1024


def event_manifest(
    involved: dict[str, Any],
    reason: str,
    message: str,
    *,
    warning: bool = False,
    component: str = COMPONENT,
    now: datetime | None = None,
) -> dict[str, Any]:
    """An Event about `involved` (an object as the apiserver returned it)."""
    metadata = involved.get("metadata", {})
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{metadata.get('name', 'kiln')}.",
            "namespace": metadata.get("namespace") or "default",
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:MAX_EVENT_MESSAGE],
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def post_event(
    client: KubeClient,
    involved: dict[str, Any],
    reason: str,
    message: str,
    *,
    warning: bool = False,
    component: str = COMPONENT,
) -> None:
    """Post an Event; a failure is logged, never raised (Events are best effort)."""
    body = event_manifest(involved, reason, message, warning=warning, component=component)
    try:
        await client.create(EVENTS, body["metadata"]["namespace"], body)
    except (ApiError, OSError) as e:
        logger.warning("could not post event %s: %s", reason, e)


class EventPoster:
    """Posts Events in the background with bounded concurrency (fire and forget).

    A reconcile must not wait on Events: they are best effort and only for people, so
    `post` returns at once and at most `concurrency` Event POSTs are in flight. Past
    `max_pending` queued Events new ones are dropped (and logged): a storm of Events must
    not grow the operator's memory without bound.

    With `busy` (e.g. "the work queue has keys waiting"), Events yield to the work: while it
    says True an Event waits, up to `max_defer` seconds, so that during a burst the
    apiserver spends its time on pods and statuses first.
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        concurrency: int = 4,
        max_pending: int = 5000,
        component: str = COMPONENT,
        busy: Callable[[], bool] | None = None,
        max_defer: float = 10.0,
    ) -> None:
        self._client = client
        self._busy = busy
        self._max_defer = max_defer
        self._component = component
        self._max_pending = max_pending
        self._semaphore = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def post(
        self, involved: dict[str, Any], reason: str, message: str, *, warning: bool = False
    ) -> None:
        if len(self._tasks) >= self._max_pending:
            self.dropped += 1
            logger.warning("dropping event %s: %d events pending", reason, len(self._tasks))
            return
        # The manifest is built now: `involved` may change after this returns.
        body = event_manifest(involved, reason, message, warning=warning, component=self._component)
        task = asyncio.get_running_loop().create_task(self._send(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, body: dict[str, Any]) -> None:
        async with self._semaphore:
            if self._busy is not None:
                # Only the `concurrency` Events holding the semaphore poll the predicate.
                deadline = time.monotonic() + self._max_defer
                while self._busy() and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            try:
                await self._client.create(EVENTS, body["metadata"]["namespace"], body)
            except Exception as e:  # best effort: never an unretrieved task exception
                logger.warning("could not post event %s: %s", body.get("reason"), e)

    async def drain(self, within: float | None = 5.0) -> None:
        """Wait for the Events posted so far (at shutdown, and in tests)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)

    async def close(self) -> None:
        await self.drain()
        for task in list(self._tasks):
            task.cancel()


class RateLimiter(Generic[K]):
    """Lets a key through at most once per `window` seconds (the same failure, again and
    again, is one Event per window rather than one per retry)."""

    def __init__(self, window: float, max_keys: int = 10000) -> None:
        self.window = window
        self.max_keys = max_keys
        self._last: dict[K, float] = {}

    def allow(self, key: K, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            return False
        if len(self._last) >= self.max_keys:
            # Forget the windows that are over; a key seen again just passes once more.
            self._last = {k: t for k, t in self._last.items() if now - t < self.window}
        self._last[key] = now
        return True
