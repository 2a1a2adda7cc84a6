"""A reconcile the real apiserver refuses ends on the object, with the apiserver's reason.

A ModelDeployment may be named with up to 63 characters (its CRD says so), but in Gateway
API mode the per-track Services are named `<name>-stable` / `<name>-canary`, and a Service
name is a DNS label of at most 63: the apiserver answers the operator's create with 422.
The ModelDeployment must then say so itself (Stalled, with the cause) and in a Warning
Event, not only in the operator's log.
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
from tests.support.matchers import condition, events_matching, has_condition
from tests.support.operator_process import OperatorProcess

from kiln.api.wire import GROUP, VERSION

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


def test_a_name_too_long_for_its_service_stalls_with_the_apiservers_reason(
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

    def stalled() -> dict[str, Any] | None:
        found = model_deployment(kube, namespace, TOO_LONG)
        rejected = has_condition(
            found, "Stalled", reason="ObjectRejected", message_has=["63 characters"]
        )
        return found if rejected else None

    found = wait_for(stalled, 60, f"Stalled=True ObjectRejected on {TOO_LONG}")
    assert "services" in (condition(found, "Stalled") or {}).get("message", "")
    assert has_condition(found, "Ready", "False", reason="ObjectRejected")

    def warned() -> list[Any]:
        events = kube.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={TOO_LONG}"
        ).items
        as_dicts = [kube.api.sanitize_for_serialization(e) for e in events]
        return events_matching(
            as_dicts, reason="ObjectRejected", type_="Warning", message_has=["63 characters"]
        )

    wait_for(warned, 30, f"a Warning Event ObjectRejected about {TOO_LONG}")
