"""The start-up queue and the Service cache the pod workers use to start pods quickly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from kiln.devcluster.nodeagent.context import StartupQueue
from kiln.devcluster.nodeagent.services import ServiceCache

pytestmark = pytest.mark.unit


def test_startup_queue_lets_pods_through_in_arrival_order() -> None:
    async def scenario() -> list[str]:
        queue = StartupQueue(slots=2, hold_seconds=10)
        order: list[str] = []

        async def pod(name: str, work: float) -> None:
            release = await queue.enter()
            order.append(name)
            await asyncio.sleep(work)
            release()
            release()  # idempotent

        await asyncio.gather(*(pod(f"p{i}", 0.01) for i in range(6)))
        return order

    assert asyncio.run(scenario()) == [f"p{i}" for i in range(6)]


def test_startup_queue_limits_pods_in_flight() -> None:
    async def scenario() -> int:
        queue = StartupQueue(slots=3, hold_seconds=10)
        inside = peak = 0

        async def pod() -> None:
            nonlocal inside, peak
            release = await queue.enter()
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1
            release()

        await asyncio.gather(*(pod() for _ in range(10)))
        return peak

    assert asyncio.run(scenario()) == 3


def test_a_slow_pod_gives_its_slot_back_after_the_hold_limit() -> None:
    async def scenario() -> float:
        queue = StartupQueue(slots=1, hold_seconds=0.05)
        await queue.enter()  # never released by its holder
        loop = asyncio.get_running_loop()
        started = loop.time()
        release = await asyncio.wait_for(queue.enter(), timeout=2)
        release()
        return loop.time() - started

    assert asyncio.run(scenario()) < 1.0


def _service(namespace: str, name: str, ip: str = "10.96.0.10") -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "resourceVersion": "1"},
        "spec": {"clusterIP": ip, "ports": [{"port": 80}]},
    }


class FakeApi:
    def __init__(self, items: list[dict[str, Any]], events: list[dict[str, Any]]):
        self.items = items
        self.events = events
        self.drained = asyncio.Event()

    async def get(self, path: str, **params: str) -> Any:
        assert path == "/api/v1/services"
        return {"metadata": {"resourceVersion": "5"}, "items": self.items}

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        assert params["resourceVersion"] == "5"
        for event in self.events:
            yield event
        self.events = []
        self.drained.set()
        await asyncio.sleep(3600)


def test_service_cache_answers_only_once_listed_and_follows_the_watch() -> None:
    async def scenario() -> None:
        api = FakeApi(
            [_service("default", "kubernetes", "10.96.0.1"), _service("team", "web")],
            [
                {"type": "ADDED", "object": _service("team", "db")},
                {"type": "DELETED", "object": _service("team", "web")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
            ],
        )
        cache = ServiceCache(api)  # type: ignore[arg-type]
        assert cache.get("default", "kubernetes") is False
        assert cache.namespace("team") is None
        task = asyncio.get_running_loop().create_task(cache.run())
        await asyncio.wait_for(api.drained.wait(), 2)
        kubernetes = cache.get("default", "kubernetes")
        assert isinstance(kubernetes, dict)
        assert kubernetes["spec"]["clusterIP"] == "10.96.0.1"
        assert cache.get("team", "web") is None
        assert [s["metadata"]["name"] for s in cache.namespace("team") or []] == ["db"]
        assert cache.namespace("empty") == []
        task.cancel()

    asyncio.run(scenario())
