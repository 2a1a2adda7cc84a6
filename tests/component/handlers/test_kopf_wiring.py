"""The controllers as kopf runs them: watch event -> work queue -> reconcile -> API.

kopf itself (its `kopf.operator` entry point, with the handlers `kiln-operator` registers
and its startup configuration) watches kmock's emulated apiserver; the controllers are
handed to it through kopf's memo. Nothing here calls `reconcile` by hand: every effect
below is the wiring's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import kopf
import pytest
from tests.support.builders import ModelDeploymentBuilder, ModelVersionBuilder, TrainingJobBuilder
from tests.support.matchers import has_condition

import kiln.handlers  # noqa: F401  (registers the handlers, as kiln-operator does)
from kiln import operator
from kiln.core.analysis import QueryResult
from kiln.handlers.deployment import DeploymentController
from kiln.handlers.training import TrainingController
from kiln.k8s.client import (
    DEPLOYMENTS,
    MODEL_DEPLOYMENTS,
    MODEL_VERSIONS,
    PODS,
    TRAINING_JOBS,
    Credentials,
    KubeClient,
)
from kiln.settings import OperatorSettings

pytestmark = [pytest.mark.component, pytest.mark.timeout(60)]

NS = "ml"


class NoPrometheus:
    async def query_many(self, queries: Mapping[str, str]) -> dict[str, QueryResult]:
        return {k: QueryResult("no_data") for k in queries}

    async def close(self) -> None:
        return None


async def eventually(probe: Callable[[], Any], what: str) -> Any:
    """Await `probe()` until it returns something truthy (15 s at the most)."""
    last = None
    try:
        async with asyncio.timeout(15):
            # Polling the API is the point: the effects are the operator's, not ours.
            while not (last := await probe()):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})") from None
    return last


@pytest.fixture
async def client(kmock: Any) -> AsyncIterator[KubeClient]:
    # What discovery says of each resource decides what kopf watches.
    verbs = ["get", "list", "watch", "create", "patch", "update", "delete"]
    for resource, kind in (
        ("kiln.dev/v1alpha1/trainingjobs", "TrainingJob"),
        ("kiln.dev/v1alpha1/modelversions", "ModelVersion"),
        ("kiln.dev/v1alpha1/modeldeployments", "ModelDeployment"),
        ("v1/pods", "Pod"),
        ("v1/services", "Service"),
        ("v1/events", "Event"),
        ("apps/v1/deployments", "Deployment"),
    ):
        kmock.resources[resource] = {
            "kind": kind,
            "namespaced": True,
            "verbs": verbs,
            "subresources": ["status"],
        }
    # kopf looks for these two before it starts any watch.
    kmock.resources["v1/namespaces"] = {"kind": "Namespace", "namespaced": False, "verbs": verbs}
    kmock.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = {
        "kind": "CustomResourceDefinition",
        "namespaced": False,
        "verbs": verbs,
    }
    kube = KubeClient(Credentials(server=str(kmock.url).rstrip("/"), ssl_context=False))
    yield kube
    await kube.close()


@pytest.fixture
async def running(
    kmock: Any, client: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[kopf.Memo]:
    """kopf running Kiln's handlers in this event loop, standalone, watching NS."""
    registry = kopf.get_default_registry()

    def login_to_kmock(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=str(kmock.url).rstrip("/"), scheme="Bearer", token="t")

    # For this test only: the handlers registry is kopf's process-wide default.
    # Registered into a copy of the handler list that monkeypatch puts back afterwards.
    monkeypatch.setattr(registry._activities, "_handlers", [*registry._activities._handlers])
    kopf.on.login(registry=registry)(login_to_kmock)
    monkeypatch.setenv("KILN_METRICS_PORT", "0")
    monkeypatch.setitem(operator._RUN_OPTIONS, "standalone", True)
    settings = OperatorSettings(
        trainer_image="kiln/trainer:test", server_image="kiln/server:test", workers=4
    )
    memo = kopf.Memo()
    memo[TrainingController.memo_key] = TrainingController(client, settings)
    memo[DeploymentController.memo_key] = DeploymentController(client, settings, NoPrometheus())  # type: ignore[arg-type]
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            standalone=True, clusterwide=True, memo=memo, stop_flag=stop, ready_flag=ready
        )
    )
    await asyncio.wait_for(ready.wait(), 15)
    yield memo
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 15)


async def test_a_created_training_job_gets_its_pod_and_status_through_the_watch(
    running: kopf.Memo, client: KubeClient
) -> None:
    job = TrainingJobBuilder("iris", NS).output("s3://models").obj()
    await client.create(TRAINING_JOBS, NS, job)

    async def pod_and_status() -> bool:
        pods = await client.list(PODS, NS)
        status = (await client.get(TRAINING_JOBS, NS, "iris")).get("status") or {}
        return [p["metadata"]["name"] for p in pods] == ["iris-1-1"] and status.get("run") == 1

    await eventually(pod_and_status, "pod iris-1-1 and run 1 in the status")

    # The pod's phase change reaches the job through the pod watch and its owner reference.
    await client.patch(PODS, NS, "iris-1-1", {"status": {"phase": "Running"}}, subresource="status")

    async def running_phase() -> bool:
        job = await client.get(TRAINING_JOBS, NS, "iris")
        return (job.get("status") or {}).get("phase") == "Running"

    await eventually(running_phase, "phase Running")


async def test_a_model_deployment_follows_deployments_and_new_versions_through_the_watch(
    running: kopf.Memo, client: KubeClient
) -> None:
    await client.create(MODEL_VERSIONS, NS, ModelVersionBuilder("iris", 1, NS).approved().obj())
    md = ModelDeploymentBuilder("iris", NS).replicas(2).canary(50).obj()
    await client.create(MODEL_DEPLOYMENTS, NS, md)

    async def stable() -> dict[str, Any] | None:
        with contextlib.suppress(Exception):
            return await client.get(DEPLOYMENTS, NS, "iris-stable")
        return None

    await eventually(stable, "Deployment iris-stable")
    # kube-controller-manager reports the replicas ready: the owner hears of it and promotes.
    ready = {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}
    await client.patch(DEPLOYMENTS, NS, "iris-stable", {"status": ready}, subresource="status")

    async def phase(expected: str) -> bool:
        status = (await client.get(MODEL_DEPLOYMENTS, NS, "iris")).get("status") or {}
        return status.get("phase") == expected

    await eventually(lambda: phase("Promoted"), "phase Promoted")

    # A newly Approved version of the followed model starts a canary without any other poke.
    await client.create(MODEL_VERSIONS, NS, ModelVersionBuilder("iris", 2, NS).approved().obj())

    async def canary() -> bool:
        status = (await client.get(MODEL_DEPLOYMENTS, NS, "iris")).get("status") or {}
        return status.get("canaryVersion") == "iris-v2"

    await eventually(canary, "a canary of iris-v2")


async def test_an_invalid_object_seen_by_the_watch_stalls_with_the_reason(
    running: kopf.Memo, client: KubeClient
) -> None:
    # Past the CRD's schema (kmock does not validate): what slips through must say so.
    job = TrainingJobBuilder("broken", NS).spec(backoffLimit="many").obj()
    await client.create(TRAINING_JOBS, NS, job)

    async def stalled() -> bool:
        found = await client.get(TRAINING_JOBS, NS, "broken")
        return has_condition(found, "Stalled", reason="InvalidSpec", message_has=["backoffLimit"])

    await eventually(stalled, "Stalled=True InvalidSpec naming backoffLimit")
