from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kiln.k8s.client import ApiError
from kiln.k8s.events import EventPoster

pytestmark = pytest.mark.unit

INVOLVED = {
    "apiVersion": "kiln.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "u"},
}


class SlowClient:
    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.posted: list[str] = []
        self.release = asyncio.Event()

    async def create(self, _resource: Any, _namespace: str, body: dict[str, Any]) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        if body["reason"] == "Boom":
            raise ApiError(500, "InternalError", "no")
        self.posted.append(body["reason"])


async def test_posting_returns_at_once_with_bounded_concurrency_and_drops_past_the_cap() -> None:
    client = SlowClient()
    poster = EventPoster(client, concurrency=2, max_pending=5)  # type: ignore[arg-type]
    for reason in ("A", "B", "Boom", "C", "D", "E", "F"):
        poster.post(INVOLVED, reason, "m")  # never blocks
    assert len(poster) == 5 and poster.dropped == 2
    await asyncio.sleep(0.01)
    assert client.most == 2
    client.release.set()
    await poster.drain()
    assert sorted(client.posted) == ["A", "B", "C", "D"]  # a failure is only logged
    assert len(poster) == 0


async def test_events_wait_while_the_operator_is_busy_but_not_forever() -> None:
    client = SlowClient()
    client.release.set()
    busy = True
    poster = EventPoster(client, busy=lambda: busy, max_defer=0.5)  # type: ignore[arg-type]
    poster.post(INVOLVED, "A", "m")
    await asyncio.sleep(0.2)
    assert client.posted == []  # deferred while busy
    busy = False
    await poster.drain()
    assert client.posted == ["A"]
    busy = True
    poster.post(INVOLVED, "B", "m")
    await poster.drain()  # busy for good: posted after max_defer anyway
    assert client.posted == ["A", "B"]
