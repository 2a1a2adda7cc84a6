"""A reconcile the apiserver refuses ends on the object, not only in the operator's log.

kmock's emulator answers a chosen request as the real apiserver would (a Status body with
the code, reason and message); the object must then carry a condition and a Warning Event
naming that cause.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.builders import ModelDeploymentBuilder, ModelVersionBuilder, TrainingJobBuilder
from tests.support.kmock_api import kube_client
from tests.support.matchers import condition, events_matching, has_condition, posted_events

from kiln.core.failures import STALLED_RESYNC_SECONDS
from kiln.handlers.deployment import DeploymentController
from kiln.handlers.training import TrainingController
from kiln.k8s.client import (
    MODEL_DEPLOYMENTS,
    MODEL_VERSIONS,
    TRAINING_JOBS,
    KubeClient,
)
from kiln.settings import OperatorSettings

pytestmark = pytest.mark.component

NS = "prod"


def apiserver_refusal(code: int, reason: str, message: str) -> dict[str, Any]:
    """The Status body the apiserver sends with a refusal."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def refuse(kmock: Any, request: str, code: int, reason: str, message: str) -> None:
    """`request` ("post /api/v1/namespaces/prod/services") is answered with this refusal."""
    kmock[request] << code << apiserver_refusal(code, reason, message)


def unstore(kmock: Any, resource: str, namespace: str, name: str) -> None:
    """Drop what the emulator kept of a refused create (a real apiserver keeps nothing)."""
    with contextlib.suppress(KeyError):
        del kmock.objects[resource, namespace, name]


@pytest.fixture
async def client(kmock: Any) -> AsyncIterator[KubeClient]:
    kube = kube_client(kmock)
    await kube.create(MODEL_VERSIONS, NS, ModelVersionBuilder("iris", 1, NS).approved().obj())
    yield kube
    await kube.close()


def deployment_controller(client: KubeClient) -> DeploymentController:
    settings = OperatorSettings(server_image="kiln/server:test", workers=1)
    return DeploymentController(client, settings, prometheus=None)  # type: ignore[arg-type]


async def test_a_service_an_admission_policy_refuses_stalls_with_the_apiservers_reason(
    client: KubeClient, kmock: Any
) -> None:
    # What a ValidatingAdmissionPolicy without a `reason` answers (Invalid, 422). Every name
    # Kiln derives fits (tests/e2e/test_reconcile_failures.py); a cluster's policy may not.
    refused = (
        "services \"iris\" is invalid: : ValidatingAdmissionPolicy 'services-need-a-team' "
        "with binding 'services-need-a-team' denied request: failed expression: "
        "'team' in object.metadata.labels"
    )
    refuse(kmock, f"post /api/v1/namespaces/{NS}/services", 422, "Invalid", refused)
    await client.create(MODEL_DEPLOYMENTS, NS, ModelDeploymentBuilder("iris", NS).obj())
    c = deployment_controller(client)

    assert await c.reconcile_reporting_failures((NS, "iris")) == STALLED_RESYNC_SECONDS
    unstore(kmock, "v1/services", NS, "iris")

    md = await client.get(MODEL_DEPLOYMENTS, NS, "iris")
    cause = ["services-need-a-team", "denied request", f"POST /api/v1/namespaces/{NS}/services"]
    assert has_condition(md, "Stalled", reason="ObjectRejected", message_has=cause)
    assert has_condition(md, "Ready", "False", reason="ObjectRejected")
    assert md["status"]["reason"] == "ObjectRejected"
    assert md["status"]["observedGeneration"] == 1
    await c.events.drain()
    (event,) = events_matching(posted_events(kmock), about="iris", reason="ObjectRejected")
    assert event["type"] == "Warning" and "services-need-a-team" in event["message"]

    # The same refusal again (the next resync): no second Event, the condition unchanged.
    stalled_since = condition(md, "Stalled")["lastTransitionTime"]  # type: ignore[index]
    await c.reconcile_reporting_failures((NS, "iris"))
    await c.events.drain()
    assert len(events_matching(posted_events(kmock), reason="ObjectRejected")) == 1
    md = await client.get(MODEL_DEPLOYMENTS, NS, "iris")
    assert condition(md, "Stalled")["lastTransitionTime"] == stalled_since  # type: ignore[index]


async def test_an_unavailable_apiserver_shows_reconciling_with_the_error_and_retries(
    client: KubeClient, kmock: Any
) -> None:
    refuse(
        kmock,
        f"get /apis/kiln.dev/v1alpha1/namespaces/{NS}/modelversions",
        503,
        "ServiceUnavailable",
        "etcdserver: leader changed",
    )
    await client.create(MODEL_DEPLOYMENTS, NS, ModelDeploymentBuilder("iris", NS).obj())
    c = deployment_controller(client)

    first = await c.reconcile_reporting_failures((NS, "iris"))
    second = await c.reconcile_reporting_failures((NS, "iris"))

    assert (first, second) == (1.0, 2.0)  # back-off, not the slow resync of a stall
    md = await client.get(MODEL_DEPLOYMENTS, NS, "iris")
    assert has_condition(
        md, "Reconciling", reason="ApiUnavailable", message_has=["503", "leader changed"]
    )
    assert condition(md, "Stalled") is None
    await c.events.drain()
    (event,) = events_matching(posted_events(kmock), reason="ApiUnavailable")
    assert event["type"] == "Warning"


async def test_a_training_job_the_apiserver_forbids_a_pod_for_stalls(
    client: KubeClient, kmock: Any
) -> None:
    (
        kmock["post /api/v1/namespaces/ml/pods"]
        << 403
        << apiserver_refusal(
            403,
            "Forbidden",
            'pods is forbidden: User "system:serviceaccount:kiln:kiln-operator" cannot create '
            'resource "pods" in API group "" in the namespace "ml"',
        )
    )
    job = TrainingJobBuilder("iris").output("s3://models").obj()
    await client.create(TRAINING_JOBS, "ml", job)
    c = TrainingController(client, OperatorSettings(trainer_image="kiln/trainer:test"))

    await c.reconcile_reporting_failures(("ml", "iris"))

    stored = await client.get(TRAINING_JOBS, "ml", "iris")
    assert has_condition(
        stored, "Stalled", reason="Forbidden", message_has=['cannot create resource "pods"']
    )
    await c.events.drain()
    assert events_matching(posted_events(kmock), about="iris", reason="Forbidden", type_="Warning")
