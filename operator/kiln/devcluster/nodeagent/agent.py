"""The agent process: registers the node, watches its pods and runs a worker per pod."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from kiln.devcluster.nodeagent import cgroups, network, procscan
from kiln.devcluster.nodeagent.apiclient import ApiError
from kiln.devcluster.nodeagent.containers import monitor_server
from kiln.devcluster.nodeagent.context import NodeContext
from kiln.devcluster.nodeagent.logserver import build_app
from kiln.devcluster.nodeagent.node import NodeRegistration
from kiln.devcluster.nodeagent.podworker import PodWorker
from kiln.devcluster.nodeagent.services import ServiceCache

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, ctx: NodeContext, registration: NodeRegistration):
        self.ctx = ctx
        self.registration = registration
        self.workers: dict[str, PodWorker] = {}

    def find_pod(self, namespace: str, name: str) -> PodWorker | None:
        matches = [
            w for w in self.workers.values()
            if w.namespace == namespace and w.name == name and not w.done.is_set()
        ]  # fmt: skip
        return matches[-1] if matches else None

    def _on_pod(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None and worker.done.is_set():
            return
        if worker is None:
            worker = PodWorker(self.ctx, pod)
            self.workers[uid] = worker
            worker.start()
        else:
            worker.update(pod)

    def _on_pod_gone(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is None:
            return
        if worker.done.is_set():
            del self.workers[uid]  # kept until now so late events cannot revive the pod
        else:
            worker.vanish()

    def _remove_orphans(self, live_uids: set[str]) -> None:
        """Pods we hold on disk (or in cgroups) that the API no longer has: clean up."""
        memory_roots = [self.ctx.memory.root] if self.ctx.memory is not None else []
        known = live_uids | set(self.workers)
        if self.ctx.pods_dir.exists():
            for pod_dir in self.ctx.pods_dir.iterdir():
                if pod_dir.name in known:
                    continue
                log.info("removing orphaned pod", extra={"uid": pod_dir.name})
                remove_pod_leftovers(pod_dir, memory_roots)
                network.teardown_pod_network(pod_dir.name)
                self.ctx.ipam.release(pod_dir.name)
        for root in memory_roots:
            for pod_cgroup in root.iterdir() if root.is_dir() else []:
                if pod_cgroup.is_dir() and pod_cgroup.name not in known:
                    log.info("removing orphaned pod cgroup", extra={"uid": pod_cgroup.name})
                    cgroups.remove_tree(pod_cgroup)

    async def _list(self) -> str:
        listed = await self.ctx.api.get(
            "/api/v1/pods", fieldSelector=f"spec.nodeName={self.ctx.node_name}"
        )
        uids = set()
        for pod in listed.get("items") or []:
            uids.add(pod["metadata"]["uid"])
            self._on_pod(pod)
        for uid in list(self.workers):
            if uid not in uids:
                self._on_pod_gone(uid)
        self._remove_orphans(uids)
        return str(listed["metadata"]["resourceVersion"])

    async def watch_pods(self) -> None:
        params = {"fieldSelector": f"spec.nodeName={self.ctx.node_name}", "timeoutSeconds": "300"}
        resource_version = None
        delay = 0.5
        while True:
            try:
                if resource_version is None:
                    resource_version = await self._list()
                async for event in self.ctx.api.watch(
                    "/api/v1/pods", {**params, "resourceVersion": resource_version}
                ):
                    kind = event["type"]
                    obj = event["object"]
                    if kind == "ERROR":
                        resource_version = None  # 410 Gone: start over from a fresh list
                        break
                    resource_version = obj["metadata"].get("resourceVersion", resource_version)
                    if kind in ("ADDED", "MODIFIED"):
                        self._on_pod(obj)
                    elif kind == "DELETED":
                        self._on_pod_gone(obj["metadata"]["uid"])
                delay = 0.5
            except (TimeoutError, ApiError, OSError, ValueError) as exc:
                log.warning("pod watch failed", extra={"error": str(exc)})
                resource_version = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def run(self, port: int, ssl_context: Any) -> None:
        runner = web.AppRunner(build_app(self.find_pod), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host="0.0.0.0", port=port, ssl_context=ssl_context)
        await site.start()
        log.info("kubelet API listening", extra={"port": port})
        while True:
            try:
                await self.registration.register()
                break
            except (ApiError, OSError) as exc:
                log.warning("node registration failed, retrying", extra={"error": str(exc)})
                await asyncio.sleep(2)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        monitors = monitor_server(str(self.ctx.pods_dir))
        monitors.start()  # the first pod should not wait for the fork server to boot
        if self.ctx.services is None:
            self.ctx.services = ServiceCache(self.ctx.api)
        tasks = [
            loop.create_task(self.registration.heartbeat_forever()),
            loop.create_task(self.ctx.services.run()),
            loop.create_task(self.watch_pods()),
        ]
        await stop.wait()
        # Containers keep running across an agent restart (they are adopted); `cleanup`
        # removes them for good.
        log.info("node agent stopping")
        for task in tasks:
            task.cancel()
        await runner.cleanup()
        await self.ctx.api.close()
        monitors.close()


def remove_pod_leftovers(pod_dir: Path, memory_roots: Sequence[Path] = ()) -> None:
    """Kill every monitor and container process recorded under a pod dir, then delete it
    and the pod's memory cgroups under `memory_roots`."""
    pids: list[int] = []
    for state_file in pod_dir.glob("containers/*/state.json"):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if procscan.is_same_process(int(state["pid"]), state.get("pidStartTicks")):
            pids.append(int(state["pid"]))
        if procscan.start_ticks(int(state.get("monitorPid", 0)) or -1) is not None:
            pids.append(int(state["monitorPid"]))
    netns, _ = network.names_for(pod_dir.name)
    inode = network.netns_inode(netns)
    if inode is not None:
        pids += procscan.pids_in_netns({inode})
    procscan.kill_all(pids)
    procscan.wait_gone(pids, 5.0)
    for root in memory_roots:
        cgroups.remove_tree(root / pod_dir.name)
    shutil.rmtree(pod_dir, ignore_errors=True)
