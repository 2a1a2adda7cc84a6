"""What every pod worker shares: the API client, node identity and host settings."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.devcluster.nodeagent.apiclient import ApiClient, ApiError
from kiln.devcluster.nodeagent.cgroups import MemoryCgroups
from kiln.devcluster.nodeagent.images import ImageConfig
from kiln.devcluster.nodeagent.ipam import IpamStore
from kiln.devcluster.nodeagent.services import ServiceCache

log = logging.getLogger(__name__)


class StartupQueue:
    """Lets a few pods at a time through their first start, in arrival order.

    Pods that arrive together otherwise share the CPU evenly and all become Running at
    the end of the burst; taking them (nearly) in turn gets the first ones going first
    at the same total throughput. A pod keeps its slot for at most `hold_seconds`, so a
    slow one (a retried API call, a hanging volume) holds up the others only briefly.
    """

    def __init__(self, slots: int = 4, hold_seconds: float = 0.5):
        self.slots = slots
        self.hold_seconds = hold_seconds
        self._semaphore: asyncio.Semaphore | None = None

    async def enter(self) -> Callable[[], None]:
        """Wait for a slot; returns the (idempotent) function that gives it back."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.slots)
        semaphore = self._semaphore
        await semaphore.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                timer.cancel()
                semaphore.release()

        timer = asyncio.get_running_loop().call_later(self.hold_seconds, release)
        return release


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class NodeContext:
    api: ApiClient
    node_name: str
    node_ip: str
    bridge: str
    pod_cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    state_dir: Path
    image_map: list[ImageConfig]
    venv_bin: str
    traverse: list[str]
    expose: list[str]
    mask: list[str]
    allocatable: dict[str, str]
    services: ServiceCache | None = None
    memory: MemoryCgroups | None = None  # None: memory limits are not enforced on this host
    startup: StartupQueue = field(default_factory=StartupQueue)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def ipam(self) -> IpamStore:
        return IpamStore(self.state_dir / "ipam.json", self.pod_cidr, self.gateway)

    @property
    def pods_dir(self) -> Path:
        return self.state_dir / "pods"

    def background(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def event(
        self,
        pod: Mapping[str, Any],
        reason: str,
        message: str,
        warning: bool = False,
        container: str | None = None,
    ) -> None:
        """Record a Kubernetes Event for the pod, without waiting for the API."""
        self.background(self._post_event(pod, reason, message, warning, container))

    async def _post_event(
        self,
        pod: Mapping[str, Any],
        reason: str,
        message: str,
        warning: bool,
        container: str | None,
    ) -> None:
        metadata = pod["metadata"]
        now = now_rfc3339()
        involved: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": metadata["namespace"],
            "name": metadata["name"],
            "uid": metadata["uid"],
        }
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": metadata["name"] + ".",
                "namespace": metadata["namespace"],
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": "kubelet", "host": self.node_name},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node_name,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.api.request(
                "POST", f"/api/v1/namespaces/{metadata['namespace']}/events", body=body, attempts=2
            )
        except ApiError as exc:
            log.debug("event not recorded", extra={"reason": reason, "error": str(exc)})
