"""A keyed work queue with delayed requeue, like client-go's workqueue.

Watch events (of a TrainingJob, or of a pod it owns) only *enqueue the key* of the object;
workers reconcile one key at a time. The guarantees that make the reconcile safe:

- a key is processed by at most one worker at a time (no two reconciles of the same
  TrainingJob race each other and create two pods);
- a key added while it is queued is not queued twice (a burst of events = one reconcile);
- a key added while it is being processed is processed once more afterwards (no event is
  lost);
- `add_after(key, delay)` schedules a reconcile later (backoff, deadlines, cron); an
  earlier request for the same key wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

logger = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._queue: deque[K] = deque()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._counter = itertools.count()
        # Idle workers, each parked on a future; an add wakes exactly one (no thundering
        # herd when a burst of events meets many workers).
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shutdown = False

    def __len__(self) -> int:
        """Keys waiting for a worker (the queue depth), not counting delayed ones."""
        return len(self._queue)

    @property
    def shut_down(self) -> bool:
        return self._shutdown

    @property
    def delayed(self) -> int:
        return len(self._due)

    def add(self, key: K) -> None:
        if self._shutdown:
            return
        self._due.pop(key, None)
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        when = self._clock() + delay
        current = self._due.get(key)
        if current is not None and current <= when:
            return
        self._due[key] = when
        heapq.heappush(self._delayed, (when, next(self._counter), key))
        # A parked worker recomputes how long to sleep (this key may be the soonest).
        self._wake_one()

    def forget(self, key: K) -> None:
        """Drop any delayed reconcile of the key (the object is gone)."""
        self._due.pop(key, None)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _promote_due(self) -> float | None:
        """Move delayed keys whose time has come into the queue; seconds to the next one."""
        now = self._clock()
        while self._delayed:
            when, _, key = self._delayed[0]
            if self._due.get(key) != when:
                heapq.heappop(self._delayed)  # superseded or forgotten
                continue
            if when > now:
                return when - now
            heapq.heappop(self._delayed)
            del self._due[key]
            self.add(key)
        return None

    async def get(self) -> K | None:
        """The next key to process (None after shutdown). Call `done(key)` afterwards."""
        while True:
            if self._shutdown:
                return None
            wait = self._promote_due()
            if self._queue:
                key = self._queue.popleft()
                self._queued.discard(key)
                self._processing.add(key)
                if self._queue:
                    self._wake_one()  # more work: hand it to another idle worker
                return key
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, timeout=wait)
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass the wake-up on rather than lose it
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def shutdown(self) -> None:
        self._shutdown = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


async def run_workers(
    queue: WorkQueue[K],
    reconcile: Callable[[K], Awaitable[float | None]],
    workers: int,
) -> None:
    """Process keys until the queue shuts down. `reconcile` returns a requeue delay or None.

    An exception is logged and the key retried with a growing delay (1 s … 60 s).
    """
    failures: dict[K, int] = {}

    async def worker() -> None:
        while True:
            key = await queue.get()
            if key is None:
                return
            try:
                delay = await reconcile(key)
            except asyncio.CancelledError:
                queue.done(key)
                raise
            except Exception:
                count = failures.get(key, 0) + 1
                failures[key] = count
                retry = min(2 ** (count - 1), 60)
                logger.exception("reconcile of %s failed (retry in %ss)", key, retry)
                queue.done(key)
                queue.add_after(key, retry)
                continue
            failures.pop(key, None)
            queue.done(key)
            if delay is not None:
                queue.add_after(key, delay)

    await asyncio.gather(*(worker() for _ in range(workers)))


async def stop_workers(queue: WorkQueue[K], tasks: list[asyncio.Task[None]]) -> None:
    """Shut the queue down and wait for the worker tasks to end (at operator cleanup)."""
    queue.shutdown()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    tasks.clear()
