"""A watch-fed cache of the cluster's Services, for the service-link env variables.

kubelet keeps an informer on Services for the same purpose instead of reading them for
every container start. Until the first list has arrived (or while the watch is broken
and being re-listed) `get` answers `None` and callers read the API directly.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kiln.devcluster.nodeagent.apiclient import ApiClient

log = logging.getLogger(__name__)


class ServiceCache:
    def __init__(self, api: ApiClient):
        self.api = api
        self.synced = False
        self._by_key: dict[tuple[str, str], dict[str, Any]] = {}

    def namespace(self, namespace: str) -> list[dict[str, Any]] | None:
        """The services of a namespace, or None when the cache cannot answer."""
        if not self.synced:
            return None
        return [s for (ns, _), s in self._by_key.items() if ns == namespace]

    def get(self, namespace: str, name: str) -> dict[str, Any] | bool | None:
        """The service, None when it does not exist, False when the cache cannot answer."""
        if not self.synced:
            return False
        return self._by_key.get((namespace, name))

    async def _list(self) -> str:
        listed = await self.api.get("/api/v1/services")
        self._by_key = {
            (s["metadata"]["namespace"], s["metadata"]["name"]): s
            for s in listed.get("items") or []
        }
        self.synced = True
        return str(listed["metadata"]["resourceVersion"])

    async def run(self) -> None:
        resource_version: str | None = None
        delay = 0.5
        while True:
            try:
                if resource_version is None:
                    resource_version = await self._list()
                async for event in self.api.watch(
                    "/api/v1/services",
                    {"resourceVersion": resource_version, "timeoutSeconds": "300"},
                ):
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        resource_version = None
                        break
                    resource_version = obj["metadata"].get("resourceVersion", resource_version)
                    if kind == "BOOKMARK":
                        continue
                    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                    if kind == "DELETED":
                        self._by_key.pop(key, None)
                    else:
                        self._by_key[key] = obj
                delay = 0.5
            except Exception as exc:  # never keep answering from a cache that stopped
                log.warning("service watch failed", extra={"error": str(exc)})
                self.synced = False
                resource_version = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
