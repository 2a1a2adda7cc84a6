"""A 63-character ModelDeployment in Gateway API mode gets per-track Services that fit.

A ModelDeployment may be named with up to 63 characters (its CRD says so), and a Service
name is a DNS label of at most 63: `<name>-canary` would be 70. The builders shorten such
per-track Service names with a hash (`kiln.builders.serving.track_service_name`), so the
apiserver accepts them and the ModelDeployment is never Stalled with ObjectRejected for its
own name. (How a refusal by the apiserver is shown is covered against kmock in
tests/component/handlers/test_reconcile_failures.py.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.e2e.conftest import Kube
from tests.support.builders import ModelDeploymentBuilder, ModelVersionBuilder
from tests.support.k8s import wait_for
from tests.support.matchers import condition
from tests.support.operator_process import OperatorProcess

from kiln.api.wire import GROUP, VERSION
from kiln.builders.serving import track_service_name

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TOO_LONG = "iris-" + "x" * 58  # 63 characters: the longest name the CRD admits


@pytest.fixture
def operator(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator, watching only the test's namespace, with the current CRDs."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    env = {**os.environ, "KILN_NAMESPACES": namespace, "KILN_PROMETHEUS_URL": kube.prometheus_url}
    process = OperatorProcess(kube.kubeconfig, tmp_path / "operator.log", env).start()
    try:
        yield process
    finally:
        process.stop()
        print(process.log_tail())


def create(kube: Kube, namespace: str, plural: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube.api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body
    )


def model_deployment(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(kube.api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "modeldeployments", name
        )
    )


def test_a_63_character_name_gets_per_track_services_that_fit(
    kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    version = ModelVersionBuilder("iris", 1, namespace).obj()
    del version["metadata"]["uid"], version["metadata"]["generation"]
    create(kube, namespace, "modelversions", version)
    client.CustomObjectsApi(kube.api).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "modelversions",
        "iris-v1",
        {"status": {"approval": {"state": "Approved", "by": "e2e", "reason": "test"}}},
    )
    gateway = {"httpRoute": {"parentRefs": [{"name": "gateway"}]}}
    md = ModelDeploymentBuilder(TOO_LONG, namespace).spec(gateway=gateway).obj()
    del md["metadata"]["uid"], md["metadata"]["generation"]
    create(kube, namespace, "modeldeployments", md)
    expected = {track_service_name(TOO_LONG, track) for track in ("stable", "canary")}

    def services() -> set[str] | None:
        names = {s.metadata.name for s in kube.core.list_namespaced_service(namespace).items}
        return names if expected <= names else None

    found = wait_for(services, 60, f"per-track Services {sorted(expected)}")
    assert all(len(name) <= 63 for name in found)
    stalled = condition(model_deployment(kube, namespace, TOO_LONG), "Stalled") or {}
    assert stalled.get("reason") != "ObjectRejected", stalled
