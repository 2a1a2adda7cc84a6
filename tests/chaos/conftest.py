from __future__ import annotations

from typing import Any

import pytest

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


@pytest.fixture
def server(kmock: Any) -> str:
    """kmock's apiserver, serving every kind the controllers read and write."""
    for resource in RESOURCES:
        kmock.resources[resource] = {}
    return str(kmock.url).rstrip("/")
