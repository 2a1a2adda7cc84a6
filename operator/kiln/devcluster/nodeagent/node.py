"""The Node object and its heartbeat Lease."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kiln.devcluster import config
from kiln.devcluster.nodeagent.apiclient import ApiClient, ApiError
from kiln.devcluster.nodeagent.context import now_rfc3339

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 10.0
LEASE_DURATION_SECONDS = 40
MAX_PODS = 110
# Whether this node enforces `resources.limits.memory` (cgroups): `enforced`/`unenforced`,
# with the cgroup tree or the reason in the detail annotation.
MEMORY_LIMITS_ANNOTATION = "kiln.dev/memory-limits"
MEMORY_LIMITS_DETAIL_ANNOTATION = "kiln.dev/memory-limits-detail"


def memory_limit_annotations(
    enforced_by: str | None, unenforced_reason: str = ""
) -> dict[str, str]:
    """The Node's annotations saying whether memory limits are enforced, and how or why not."""
    if enforced_by:
        return {MEMORY_LIMITS_ANNOTATION: "enforced", MEMORY_LIMITS_DETAIL_ANNOTATION: enforced_by}
    return {
        MEMORY_LIMITS_ANNOTATION: "unenforced",
        MEMORY_LIMITS_DETAIL_ANNOTATION: unenforced_reason or "no usable memory cgroup",
    }


def memory_kib(meminfo: str) -> int:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    raise ValueError("MemTotal missing from /proc/meminfo")


def node_resources() -> dict[str, str]:
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{memory_kib(Path('/proc/meminfo').read_text())}Ki",
        "pods": str(MAX_PODS),
        "ephemeral-storage": "10Gi",
    }


def _conditions(now: str, previous: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    wanted = [
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kiln node agent is posting ready status"),
    ]
    conditions = []
    for kind, status, reason, message in wanted:
        before = previous.get(kind) or {}
        transition = before.get("lastTransitionTime") if before.get("status") == status else now
        conditions.append({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": transition or now,
        })  # fmt: skip
    return conditions


def node_status(
    node_ip: str, port: int, resources: Mapping[str, str], now: str, previous: Mapping[str, Any]
) -> dict[str, Any]:
    previous_conditions = {c["type"]: c for c in previous.get("conditions") or []}
    uname = platform.uname()
    return {
        "capacity": dict(resources),
        "allocatable": dict(resources),
        "conditions": _conditions(now, previous_conditions),
        "addresses": [
            {"type": "InternalIP", "address": node_ip},
            {"type": "Hostname", "address": platform.node() or "localhost"},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": _machine_id(),
            "systemUUID": _machine_id(),
            "bootID": _boot_id(),
            "kernelVersion": uname.release,
            "osImage": _os_image(),
            "containerRuntimeVersion": "kiln://0.1.0",
            "kubeletVersion": f"v{config.K8S_VERSION}",
            "kubeProxyVersion": f"v{config.K8S_VERSION}",
            "operatingSystem": "linux",
            "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                uname.machine, uname.machine
            ),
        },
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _machine_id() -> str:
    return _read("/etc/machine-id") or "kiln"


def _boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id")


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


class NodeRegistration:
    def __init__(
        self,
        api: ApiClient,
        name: str,
        node_ip: str,
        port: int,
        pod_cidr: str,
        annotations: Mapping[str, str] | None = None,
    ):
        self.api = api
        self.name = name
        self.node_ip = node_ip
        self.port = port
        self.pod_cidr = pod_cidr
        self.annotations = dict(annotations or {})
        self.resources = node_resources()

    async def register(self) -> None:
        """Create the Node (or find the one we registered before), then post its status."""
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": node_status(self.node_ip, self.port, {}, "", {})[
                        "nodeInfo"
                    ]["architecture"],
                    "node.kubernetes.io/instance-type": "kiln-dev",
                },
                "annotations": self.annotations,
            },
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]},
        }
        try:
            await self.api.request("POST", "/api/v1/nodes", body=body)
            log.info("node registered", extra={"node": self.name})
        except ApiError as exc:
            if exc.status != 409:
                raise
            if self.annotations:  # the Node of an earlier agent: say what this one does
                await self.api.request(
                    "PATCH",
                    f"/api/v1/nodes/{self.name}",
                    body={"metadata": {"annotations": self.annotations}},
                    content_type="application/merge-patch+json",
                )
        await self.update_status()

    async def update_status(self) -> None:
        node = await self.api.get(f"/api/v1/nodes/{self.name}")
        status = node_status(
            self.node_ip, self.port, self.resources, now_rfc3339(), node.get("status") or {}
        )
        await self.api.request(
            "PATCH",
            f"/api/v1/nodes/{self.name}/status",
            body={"status": status},
            content_type="application/strategic-merge-patch+json",
        )

    async def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": now,
        }
        try:
            await self.api.request(
                "PATCH", path, body={"spec": spec}, content_type="application/merge-patch+json"
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
            node = await self.api.get(f"/api/v1/nodes/{self.name}")
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": self.name,
                            "uid": node["metadata"]["uid"],
                        }
                    ],
                },
                "spec": spec,
            }
            await self.api.request(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body=body
            )

    async def heartbeat_forever(self) -> None:
        while True:
            try:
                await self.renew_lease()
                await self.update_status()
            except ApiError as exc:
                log.warning("heartbeat failed", extra={"error": str(exc)})
                if exc.status == 404:  # the Node was deleted: register again, like kubelet
                    try:
                        await self.register()
                    except ApiError as again:
                        log.warning("re-registration failed", extra={"error": str(again)})
            await asyncio.sleep(HEARTBEAT_SECONDS)
