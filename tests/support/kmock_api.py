"""kmock as the apiserver of component and chaos tests: every kind the controllers touch."""

from __future__ import annotations

from typing import Any

from kiln.k8s.client import Credentials, KubeClient

RESOURCES = (
    "kiln.dev/v1alpha1/trainingjobs",
    "kiln.dev/v1alpha1/modelversions",
    "kiln.dev/v1alpha1/modeldeployments",
    "v1/pods",
    "v1/services",
    "v1/events",
    "apps/v1/deployments",
    "policy/v1/poddisruptionbudgets",
    "gateway.networking.k8s.io/v1/httproutes",
)


def serve_resources(kmock: Any) -> str:
    """Serve every kind Kiln reads and writes; returns the apiserver URL."""
    for resource in RESOURCES:
        kmock.resources[resource] = {}
    return str(kmock.url).rstrip("/")


def kube_client(kmock: Any) -> KubeClient:
    """A KubeClient on kmock serving every kind (close it when done)."""
    return KubeClient(Credentials(server=serve_resources(kmock), ssl_context=False))
