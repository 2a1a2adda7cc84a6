"""Small helpers for tests that talk to a real Kubernetes API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")

# A portable image: the local cluster's registry serves it under this name (built from the
# same Debian base as Kiln's images by scripts/build-images.sh); elsewhere it is pulled.
PYTHON_IMAGE = "python:3.11-slim"

RESTRICTED_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def python_container(
    name: str, script: str, *, ports: list[int] | None = None, **extra: Any
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": PYTHON_IMAGE,
        "command": ["python3", "-u", "-c", script],
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
    }
    if ports:
        container["ports"] = [{"containerPort": p} for p in ports]
    container.update(extra)
    return container


def pod_manifest(
    name: str,
    containers: list[dict[str, Any]],
    *,
    restart_policy: str = "Never",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "restartPolicy": restart_policy,
            "securityContext": RESTRICTED_POD_SECURITY,
            "terminationGracePeriodSeconds": 5,
            "containers": containers,
            **spec,
        },
    }


def pod_phase(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    try:
        pod = core.read_namespaced_pod(name, namespace)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise
    return str(pod.status.phase)


def wait_pod_done(
    core: client.CoreV1Api, namespace: str, name: str, timeout: float = 60
) -> client.V1Pod:
    def done() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    return wait_for(done, timeout, f"pod {namespace}/{name} to finish")


def termination_message(pod: client.V1Pod, container: str | None = None) -> str:
    for status in pod.status.container_statuses or []:
        if container is None or status.name == container:
            return str(status.state.terminated.message or "")
    raise AssertionError(f"no status for container {container} in {pod.metadata.name}")
