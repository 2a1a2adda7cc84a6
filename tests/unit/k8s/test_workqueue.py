from __future__ import annotations

import asyncio

import pytest

from kiln.k8s.workqueue import WorkQueue, run_workers

pytestmark = pytest.mark.unit


async def test_a_key_added_twice_while_queued_is_processed_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == "b"


async def test_a_key_added_while_processing_is_processed_again_afterwards() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    assert len(queue) == 0  # not handed to a second worker meanwhile
    assert key is not None
    queue.done(key)
    assert len(queue) == 1


async def test_add_after_waits_and_the_earliest_request_wins() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 5)
    queue.add_after("a", 0.05)
    got = await asyncio.wait_for(queue.get(), 1)
    assert got == "a"
    assert queue.delayed == 0


async def test_forget_drops_a_delayed_key() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.05)
    queue.forget("a")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.2)


async def test_workers_never_process_one_key_concurrently_and_retry_failures() -> None:
    queue: WorkQueue[str] = WorkQueue()
    running: set[str] = set()
    overlaps = 0
    calls: dict[str, int] = {}

    async def reconcile(key: str) -> float | None:
        nonlocal overlaps
        if key in running:
            overlaps += 1
        running.add(key)
        calls[key] = calls.get(key, 0) + 1
        await asyncio.sleep(0.01)
        queue.add(key) if calls[key] == 1 else None  # an event arrives mid-reconcile
        running.discard(key)
        if key == "boom" and calls[key] < 3:
            raise RuntimeError("transient")
        return None

    task = asyncio.create_task(run_workers(queue, reconcile, workers=4))
    for key in ("a", "b", "boom"):
        queue.add(key)
    await asyncio.sleep(3.5)
    queue.shutdown()
    await asyncio.wait_for(task, 2)
    assert overlaps == 0
    assert calls["a"] == 2 and calls["b"] == 2
    assert calls["boom"] >= 3


async def test_a_burst_is_spread_over_the_workers_and_shutdown_stops_them_all() -> None:
    queue: WorkQueue[int] = WorkQueue()
    running = 0
    most = 0

    async def reconcile(key: int) -> float | None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        return None

    task = asyncio.create_task(run_workers(queue, reconcile, workers=8))
    await asyncio.sleep(0.01)  # every worker parked
    for key in range(40):
        queue.add(key)
    await asyncio.sleep(0.4)
    assert most == 8 and len(queue) == 0
    queue.shutdown()
    await asyncio.wait_for(task, 1)
