from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kiln.k8s.client import ApiError
from kiln.k8s.events import EventPoster, RateLimiter

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


def test_the_rate_limiter_lets_a_key_through_once_per_window() -> None:
    limiter: RateLimiter[tuple[str, str]] = RateLimiter(window=600)
    key = ("ml/iris", "ObjectRejected")
    assert limiter.allow(key, now=0.0)
    assert not limiter.allow(key, now=1.0)
    assert not limiter.allow(key, now=599.9)
    assert limiter.allow(key, now=600.0)  # a new window
    assert not limiter.allow(key, now=601.0)


def test_the_rate_limiter_keeps_each_key_and_reason_apart() -> None:
    limiter: RateLimiter[tuple[str, str]] = RateLimiter(window=600)
    assert limiter.allow(("ml/iris", "ObjectRejected"), now=0.0)
    assert limiter.allow(("ml/iris", "Forbidden"), now=1.0)  # another reason
    assert limiter.allow(("ml/wine", "ObjectRejected"), now=2.0)  # another object
    assert not limiter.allow(("ml/iris", "ObjectRejected"), now=3.0)


def test_the_rate_limiter_forgets_ended_windows_past_its_size_but_not_open_ones() -> None:
    limiter: RateLimiter[str] = RateLimiter(window=10, max_keys=2)
    assert limiter.allow("a", now=0.0)
    assert limiter.allow("b", now=5.0)
    assert limiter.allow("c", now=12.0)  # full: "a"'s window is over and is forgotten
    assert not limiter.allow("b", now=13.0)  # "b"'s window is still open
    assert limiter.allow("a", now=13.0)
