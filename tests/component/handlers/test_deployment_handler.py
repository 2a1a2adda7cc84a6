"""The ModelDeployment controller against kmock's Kubernetes emulator.

The apiserver is emulated (objects in memory over HTTP); Deployment readiness is simulated
by writing the Deployment status the way kube-controller-manager would, and Prometheus
by a stub that returns chosen query results.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support.builders import ModelDeploymentBuilder, ModelVersionBuilder
from tests.support.kmock_api import kube_client
from tests.support.matchers import has_condition, posted_events

from kiln.core import analysis as an
from kiln.core.analysis import REQUESTS_KEY, QueryResult, VectorQuery, VectorResult
from kiln.handlers.deployment import DeploymentController
from kiln.k8s.client import (
    DEPLOYMENTS,
    MODEL_DEPLOYMENTS,
    MODEL_VERSIONS,
    SERVICES,
)
from kiln.settings import OperatorSettings

pytestmark = pytest.mark.component

NS = "prod"


class FakePrometheus:
    def __init__(self) -> None:
        self.results: dict[str, QueryResult] = {}
        self.asked: list[dict[str, str]] = []
        self.vectors: dict[str, VectorResult] = {}
        self.asked_vectors: list[dict[str, VectorQuery]] = []

    async def query_many(self, queries: Mapping[str, str]) -> dict[str, QueryResult]:
        self.asked.append(dict(queries))
        return {k: self.results.get(k, QueryResult("no_data")) for k in queries}

    async def query_vectors(self, queries: Mapping[str, VectorQuery]) -> dict[str, VectorResult]:
        self.asked_vectors.append(dict(queries))
        return {k: self.vectors.get(k, VectorResult("no_data")) for k in queries}

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def model_version(n: int) -> dict[str, Any]:
    return ModelVersionBuilder("iris", n, NS).approved().obj()


MODEL_DEPLOYMENT = ModelDeploymentBuilder("iris", NS).uid("md-uid").replicas(2).canary(50).obj()


@pytest.fixture
async def world(kmock: Any) -> AsyncIterator[tuple[DeploymentController, Any]]:
    client = kube_client(kmock)
    controller = DeploymentController(
        client,
        OperatorSettings(server_image="kiln/server:test", workers=1),
        FakePrometheus(),  # type: ignore[arg-type]
        clock=Clock(),
    )
    await client.create(MODEL_VERSIONS, NS, model_version(1))
    await client.create(MODEL_DEPLOYMENTS, NS, MODEL_DEPLOYMENT)
    yield controller, kmock
    await client.close()


async def md_status(c: DeploymentController) -> dict[str, Any]:
    return dict((await c.client.get(MODEL_DEPLOYMENTS, NS, "iris")).get("status") or {})


async def mark_ready(c: DeploymentController, name: str) -> None:
    """What kube-controller-manager would write once every replica is ready."""
    current = await c.client.get(DEPLOYMENTS, NS, name)
    replicas = current["spec"]["replicas"]
    await c.client.patch(
        DEPLOYMENTS,
        NS,
        name,
        {
            "status": {
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            }
        },
        subresource="status",
    )


async def names(c: DeploymentController, resource: Any) -> list[str]:
    return sorted(o["metadata"]["name"] for o in await c.client.list(resource, NS))


def event_reasons(kmock: Any) -> list[str]:
    return [event["reason"] for event in posted_events(kmock)]


async def test_first_version_then_canary_then_promotion(
    world: tuple[DeploymentController, Any],
) -> None:
    c, kmock = world
    clock: Clock = c.clock  # type: ignore[assignment]
    prometheus: FakePrometheus = c.prometheus  # type: ignore[assignment]

    delay = await c.reconcile((NS, "iris"))
    assert delay == 2.0
    assert await names(c, DEPLOYMENTS) == ["iris-stable"]
    assert await names(c, SERVICES) == ["iris"]
    stable = await c.client.get(DEPLOYMENTS, NS, "iris-stable")
    assert stable["metadata"]["ownerReferences"][0]["uid"] == "md-uid"
    assert stable["spec"]["replicas"] == 2
    status = await md_status(c)
    assert (status["phase"], status["stableVersion"], status["observedGeneration"]) == (
        "Progressing",
        "iris-v1",
        1,
    )

    await mark_ready(c, "iris-stable")
    await c.reconcile((NS, "iris"))
    status = await md_status(c)
    assert status["phase"] == "Promoted"
    assert {x["type"]: x["status"] for x in status["conditions"]} == {"Ready": "True"}

    # A newly Approved version of the model pokes the deployment and starts a canary.
    await c.client.create(MODEL_VERSIONS, NS, model_version(2))
    c.model_version_changed(NS, "iris")
    assert len(c.queue) == 1
    key = await c.queue.get()
    await c.reconcile(key)
    c.queue.done(key)
    assert await names(c, DEPLOYMENTS) == ["iris-canary", "iris-stable"]
    canary = await c.client.get(DEPLOYMENTS, NS, "iris-canary")
    stable = await c.client.get(DEPLOYMENTS, NS, "iris-stable")
    assert (canary["spec"]["replicas"], stable["spec"]["replicas"]) == (1, 1)
    env = {
        e["name"]: e.get("value")
        for e in canary["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert (env["KILN_MODEL_VERSION"], env["KILN_TRACK"]) == ("iris-v2", "canary")
    status = await md_status(c)
    assert (status["canaryVersion"], status["canaryWeight"], status["stepWeight"]) == (
        "iris-v2",
        50,
        50,
    )
    await mark_ready(c, "iris-canary")

    # An operator restart mid-rollout: a fresh controller, same objects, same step.
    restarted = DeploymentController(c.client, c.settings, prometheus, clock=clock)  # type: ignore[arg-type]
    await restarted.reconcile((NS, "iris"))
    assert await names(c, DEPLOYMENTS) == ["iris-canary", "iris-stable"]
    assert (await md_status(c))["currentStep"] == 0

    # Too little traffic: Inconclusive, never promoted.
    clock.advance(10)
    prometheus.results = {
        REQUESTS_KEY: QueryResult.of(3),
        "canary/error-rate": QueryResult.of(0.0),
        "canary/latency-p99": QueryResult.of(0.01),
    }
    await restarted.reconcile((NS, "iris"))
    status = await md_status(c)
    assert status["lastAnalysisOutcome"] == "Inconclusive"
    assert status["canaryVersion"] == "iris-v2" and status["stableVersion"] == "iris-v1"
    assert "only 3 canary requests" in status["analysis"][0]["message"]
    assert (
        prometheus.asked
        and 'version="iris-v2",track="canary"' in prometheus.asked[-1][REQUESTS_KEY]
    )

    # Enough good traffic: the last step passes and the canary is promoted.
    clock.advance(10)
    prometheus.results[REQUESTS_KEY] = QueryResult.of(500)
    await restarted.reconcile((NS, "iris"))
    status = await md_status(c)
    assert (status["phase"], status["stableVersion"]) == ("Promoted", "iris-v2")
    assert "canaryVersion" not in status
    stable = await c.client.get(DEPLOYMENTS, NS, "iris-stable")
    canary = await c.client.get(DEPLOYMENTS, NS, "iris-canary")
    assert stable["spec"]["template"]["metadata"]["labels"]["kiln.dev/model-version"] == "iris-v2"
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (2, 0)
    await restarted.events.drain()
    await c.events.drain()
    reasons = event_reasons(kmock)
    for reason in ("Deploying", "Serving", "RolloutStarted", "AnalysisInconclusive", "Promoted"):
        assert reason in reasons


async def test_the_drift_check_runs_vector_queries_and_rolls_a_differing_canary_back(
    world: tuple[DeploymentController, Any],
) -> None:
    c, _ = world
    clock: Clock = c.clock  # type: ignore[assignment]
    prometheus: FakePrometheus = c.prometheus  # type: ignore[assignment]
    drift = {"enabled": True, "inputs": False}
    await c.client.patch(
        MODEL_DEPLOYMENTS,
        NS,
        "iris",
        {"spec": {"canary": {"failureLimit": 0, "builtinChecks": {"drift": drift}}}},
    )
    await c.reconcile((NS, "iris"))
    await mark_ready(c, "iris-stable")
    await c.reconcile((NS, "iris"))
    await c.client.create(MODEL_VERSIONS, NS, model_version(2))
    await c.reconcile((NS, "iris"))
    await mark_ready(c, "iris-canary")
    clock.advance(10)
    prometheus.results = {
        REQUESTS_KEY: QueryResult.of(500),
        "canary/error-rate": QueryResult.of(0.0),
        "canary/latency-p99": QueryResult.of(0.01),
    }
    prometheus.vectors = {
        an.CANARY_CLASSES_KEY: VectorResult("ok", {"setosa": 480, "versicolor": 10}),
        an.STABLE_CLASSES_KEY: VectorResult("ok", {"setosa": 250, "versicolor": 250}),
    }
    await c.reconcile((NS, "iris"))
    (asked,) = prometheus.asked_vectors
    assert 'version="iris-v2",track="canary"' in asked[an.CANARY_CLASSES_KEY].promql
    assert 'version="iris-v1",track="stable"' in asked[an.STABLE_CLASSES_KEY].promql
    status = await md_status(c)
    assert (status["phase"], status["reason"]) == ("RolledBack", "AnalysisFailed")
    drift_result = next(r for r in status["analysis"] if r["check"] == "drift-predictions")
    assert drift_result["outcome"] == "Failed" and drift_result["max"] == 0.2
    assert drift_result["requests"] == 490 and drift_result["value"] > 0.2
    assert "worst class 'versicolor'" in drift_result["message"]


async def test_abort_annotation_rolls_back_and_is_removed(
    world: tuple[DeploymentController, Any],
) -> None:
    c, _ = world
    await c.reconcile((NS, "iris"))
    await mark_ready(c, "iris-stable")
    await c.reconcile((NS, "iris"))
    await c.client.create(MODEL_VERSIONS, NS, model_version(2))
    await c.reconcile((NS, "iris"))
    await c.client.patch(
        MODEL_DEPLOYMENTS, NS, "iris", {"metadata": {"annotations": {"kiln.dev/abort": "now"}}}
    )
    await c.reconcile((NS, "iris"))
    md = await c.client.get(MODEL_DEPLOYMENTS, NS, "iris")
    assert "kiln.dev/abort" not in (md["metadata"].get("annotations") or {})
    status = md["status"]
    assert (status["phase"], status["reason"], status["failedVersion"]) == (
        "RolledBack",
        "Aborted",
        "iris-v2",
    )
    stable = await c.client.get(DEPLOYMENTS, NS, "iris-stable")
    canary = await c.client.get(DEPLOYMENTS, NS, "iris-canary")
    assert stable["spec"]["template"]["metadata"]["labels"]["kiln.dev/model-version"] == "iris-v1"
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (2, 0)


async def test_a_foreign_object_with_our_name_stalls(
    world: tuple[DeploymentController, Any],
) -> None:
    c, _ = world
    await c.client.create(
        DEPLOYMENTS,
        NS,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "iris-stable"}},
    )
    await c.reconcile_reporting_failures((NS, "iris"))
    status = await md_status(c)
    assert status["reason"] == "NameConflict"
    assert has_condition(status, "Stalled", reason="NameConflict", message_has=["iris-stable"])


async def test_no_approved_version_stalls(world: tuple[DeploymentController, Any]) -> None:
    c, _ = world
    await c.client.patch(
        MODEL_VERSIONS, NS, "iris-v1", {"status": {"approval": {"state": "Pending"}}}
    )
    await c.reconcile((NS, "iris"))
    assert has_condition(await md_status(c), "Stalled", reason="NoApprovedVersion")
    assert await names(c, DEPLOYMENTS) == []


async def test_deleted_model_deployment_is_forgotten(
    world: tuple[DeploymentController, Any],
) -> None:
    c, _ = world
    c.enqueue((NS, "iris"), MODEL_DEPLOYMENT)
    assert c.models == {(NS, "iris"): "iris"}
    c.enqueue((NS, "iris"), MODEL_DEPLOYMENT, deleted=True)
    assert c.models == {}
