"""Kill a controller right after the Nth apiserver write of a pass, then restart it.

A real crash can land between any two requests; the apiserver then holds whatever the
writes before it made. `KillingClient` is the operator's own client with a fuse: it lets
the first N writes (POST, PATCH, PUT, DELETE, Events aside) reach kmock's apiserver, and
raises `Killed` right after the Nth one answered. `Killed` is a BaseException, as a
SIGKILL is not an error a reconcile could report: the chassis' error path never sees it.
Everything after it in the pass (further writes, Events) never happens; the test then
reconciles with a fresh controller on a fresh client, which knows only the API state.

`sweep` first runs the pass unkilled to count its writes W, then for every N in 1..W
builds the same starting state in a namespace of its own, kills after write N, restarts,
and hands the result to the test's assertions.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kiln.k8s.client import Credentials, KubeClient

# The namespace of the sweep's unkilled run: what a clean pass writes and posts.
DRY_RUN = "dry-run"
logger = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Killed(BaseException):
    """The operator process died here (not an Exception: nothing in the pass catches it)."""


class KillingClient(KubeClient):
    """A KubeClient that dies right after its `kill_after`-th write (None: never)."""

    def __init__(self, server: str, kill_after: int | None = None) -> None:
        super().__init__(Credentials(server=server, ssl_context=False))
        self.kill_after = kill_after
        self.writes: list[str] = []
        self.dead = False

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if self.dead:
            raise Killed(f"{method} {path} after the kill")
        answer = await super().request(method, path, **kwargs)
        # Events are best-effort and posted after everything else: not a kill point that
        # could leave anything half done.
        if method.upper() in WRITE_METHODS and not path.endswith("/events"):
            self.writes.append(f"{method} {path}")
            if self.kill_after is not None and len(self.writes) >= self.kill_after:
                self.dead = True
                raise Killed(f"killed after write {len(self.writes)}: {method} {path}")
        return answer


def abandon(controller: Any) -> None:
    """Drop a killed controller's pending Events: a dead process posts nothing more."""
    for task in list(controller.events._tasks):
        task.cancel()


@dataclass
class SweepResult:
    writes: list[str]
    kills: int = 0
    outcomes: list[str] = field(default_factory=list)


async def sweep(
    server: str,
    setup: Callable[[str], Awaitable[None]],
    make: Callable[[KubeClient], Any],
    name: str,
    check: Callable[[str, int], Awaitable[None]],
    *,
    passes_after_restart: int = 4,
    while_down: Callable[[str], Awaitable[None]] | None = None,
) -> SweepResult:
    """Kill the pass after each of its writes in turn; restart; let `check` judge.

    Every run gets a namespace of its own, so each starts from the same state:
    `setup(namespace)` creates it; `make` builds a controller on a client; `check(namespace,
    n)` asserts on the API state after the restarted controller has run
    `passes_after_restart` passes (n: the write the pass was killed after);
    `while_down(namespace)` is what a user does between the kill and the restart.
    """
    await setup(DRY_RUN)
    dry = KillingClient(server)
    clean = make(dry)
    await clean.reconcile((DRY_RUN, name))
    await clean.events.drain()
    await dry.close()
    result = SweepResult(writes=[w.replace(f"/{DRY_RUN}/", "/<ns>/") for w in dry.writes])
    assert result.writes, "the pass under test makes no write: nothing to sweep"
    for n in range(1, len(result.writes) + 1):
        namespace = f"kill-{n}"
        await setup(namespace)
        doomed_client = KillingClient(server, kill_after=n)
        doomed = make(doomed_client)
        try:
            await doomed.reconcile((namespace, name))
        except Killed:
            result.kills += 1
        abandon(doomed)
        await doomed_client.close()
        if while_down is not None:
            await while_down(namespace)
        survivor_client = KillingClient(server)
        survivor = make(survivor_client)
        for _ in range(passes_after_restart):
            await survivor.reconcile_reporting_failures((namespace, name))
        await survivor.events.drain()
        await survivor_client.close()
        await check(namespace, n)
        result.outcomes.append(f"killed after write {n} ({result.writes[n - 1]}): converged")
    assert result.kills == len(result.writes), "a kill point was never reached"
    # `pytest -m chaos --log-cli-level=INFO` shows, per path, what was swept.
    logger.info("%d writes swept, %d kills: %s", len(result.writes), result.kills, result.writes)
    return result
