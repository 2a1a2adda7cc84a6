"""The TrainingJob reconcile against kmock's Kubernetes emulator (an in-memory apiserver)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.support.builders import TrainingJobBuilder
from tests.support.kmock_api import kube_client

from kiln.handlers.training import TrainingController
from kiln.k8s.client import (
    MODEL_VERSIONS,
    PODS,
    TRAINING_JOBS,
    KubeClient,
)
from kiln.settings import OperatorSettings

pytestmark = pytest.mark.component

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SHA = "a" * 64


@pytest.fixture
async def client(kmock: Any) -> Any:
    kube = kube_client(kmock)
    yield kube
    await kube.close()


def controller(client: KubeClient) -> TrainingController:
    settings = OperatorSettings(trainer_image="kiln/trainer:test", metrics_port=0)
    return TrainingController(client, settings, clock=lambda: NOW)


def training_job(name: str = "iris", uid: str = "uid-1") -> dict[str, Any]:
    return (
        TrainingJobBuilder(name).uid(uid).output("s3://models").threshold("accuracy", min=0.9).obj()
    )


def report(accuracy: float) -> str:
    return json.dumps(
        {
            "ok": True,
            "artifact": {"uri": "s3://models/ml/iris/run-1/model.skops", "sha256": SHA},
            "metrics": {"accuracy": accuracy},
            "dataset": {"uri": "s3://d/iris.csv", "sha256": SHA},
            "versions": {"sklearn": "1.9"},
        }
    )


async def finish(client: KubeClient, pod: str, accuracy: float) -> None:
    terminated = {"exitCode": 0, "reason": "Completed", "message": report(accuracy)}
    await client.patch(
        PODS,
        "ml",
        pod,
        {
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}],
            }
        },
    )


async def test_a_job_gets_one_pod_then_one_approved_version(client: KubeClient) -> None:
    await client.create(TRAINING_JOBS, "ml", training_job())
    c = controller(client)
    await c.reconcile(("ml", "iris"))
    pods = await client.list(PODS, "ml")
    assert [p["metadata"]["name"] for p in pods] == ["iris-1-1"]
    assert pods[0]["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    job = await client.get(TRAINING_JOBS, "ml", "iris")
    assert job["status"]["phase"] == "Pending"
    assert job["status"]["runs"][0]["trigger"] == "create"

    await c.reconcile(("ml", "iris"))  # nothing new: no second pod
    assert len(await client.list(PODS, "ml")) == 1

    await finish(client, "iris-1-1", 0.97)
    await c.reconcile(("ml", "iris"))
    (version,) = await client.list(MODEL_VERSIONS, "ml")
    assert version["metadata"]["name"] == "iris-v1"
    assert version["metadata"]["labels"]["kiln.dev/run"] == "1"
    assert version["status"]["approval"]["state"] == "Approved"
    job = await client.get(TRAINING_JOBS, "ml", "iris")
    assert job["status"]["phase"] == "Succeeded"
    assert job["status"]["modelVersion"] == "iris-v1"

    await c.reconcile(("ml", "iris"))
    assert len(await client.list(MODEL_VERSIONS, "ml")) == 1


async def test_a_pod_created_before_a_crash_is_adopted(client: KubeClient) -> None:
    """The operator died between creating the pod and writing the status."""
    await client.create(TRAINING_JOBS, "ml", training_job())
    first = controller(client)
    await first.reconcile(("ml", "iris"))
    # Forget the status, as if its write had never happened.
    await client.patch(TRAINING_JOBS, "ml", "iris", {"status": {"runs": [], "run": 0}})
    await controller(client).reconcile(("ml", "iris"))
    assert [p["metadata"]["name"] for p in await client.list(PODS, "ml")] == ["iris-1-1"]


async def test_a_failing_gate_rejects_and_a_second_job_takes_the_next_number(
    client: KubeClient,
) -> None:
    await client.create(TRAINING_JOBS, "ml", training_job("a", "uid-a"))
    await client.create(TRAINING_JOBS, "ml", training_job("b", "uid-b"))
    c = controller(client)
    for name in ("a", "b"):
        await c.reconcile(("ml", name))
    await finish(client, "a-1-1", 0.5)
    await finish(client, "b-1-1", 0.95)
    await c.reconcile(("ml", "a"))
    await c.reconcile(("ml", "b"))
    versions = {v["metadata"]["name"]: v for v in await client.list(MODEL_VERSIONS, "ml")}
    assert sorted(versions) == ["iris-v1", "iris-v2"]
    assert versions["iris-v1"]["status"]["approval"]["state"] == "Rejected"
    assert "threshold/accuracy" in versions["iris-v1"]["status"]["approval"]["reason"]
    assert versions["iris-v2"]["status"]["approval"]["state"] == "Approved"


def requests_to(kmock: Any, method: str, suffix: str) -> int:
    return sum(
        1 for r in kmock if str(r.method).upper().endswith(method) and r.url.path.endswith(suffix)
    )


async def test_the_watchs_body_replaces_the_get_and_own_echoes_need_no_pass(
    client: KubeClient, kmock: Any
) -> None:
    body = await client.create(TRAINING_JOBS, "ml", training_job())
    body["metadata"]["resourceVersion"] = "10"
    c = controller(client)
    c.enqueue(("ml", "iris"), body)
    assert len(c.queue) == 1  # the creation: a pass is needed
    key = await c.queue.get()
    await c.reconcile(key)
    c.queue.done(key)
    assert requests_to(kmock, "GET", "/trainingjobs/iris") == 0  # the watch's copy was used
    (pod,) = await client.list(PODS, "ml")
    assert pod["metadata"]["name"] == "iris-1-1"
    # The watch showing the pod just created, untouched, or a change that observe_pod does
    # not see (a scheduling condition), needs no pass; a phase change does.
    assert not c.pod_changed("ADDED", pod)
    scheduled = {**pod, "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled"}]}}
    assert not c.pod_changed("MODIFIED", scheduled)
    assert c.pod_changed("MODIFIED", {**pod, "status": {"phase": "Running"}})
    assert c.pod_changed("DELETED", pod)
    await c.events.drain()
    assert requests_to(kmock, "POST", "/events") == 2  # RunStarted, AttemptStarted


async def test_a_copy_older_than_our_own_write_is_not_used(client: KubeClient, kmock: Any) -> None:
    """A body older than this controller's own last write is stale: it GETs instead."""
    await client.create(TRAINING_JOBS, "ml", training_job())
    c = controller(client)
    stale = await client.get(TRAINING_JOBS, "ml", "iris")
    stale["metadata"]["resourceVersion"] = "1"
    c.cache.observe(("ml", "iris"), stale)
    c.cache.learn(("ml", "iris"), {"metadata": {"resourceVersion": "5"}})  # as if we wrote 5
    await c.reconcile(("ml", "iris"))
    assert requests_to(kmock, "GET", "/trainingjobs/iris") == 2  # the test's and the pass's
    assert [p["metadata"]["name"] for p in await client.list(PODS, "ml")] == ["iris-1-1"]
    job = await client.get(TRAINING_JOBS, "ml", "iris")
    assert job["status"]["run"] == 1
