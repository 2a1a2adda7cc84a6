"""ModelDeployment passes killed after every one of their writes, then restarted.

What a user depends on, whatever write the operator died after: one Deployment per track
and one Service, a promote / abort / retry annotation acted on exactly once (never lost
with its annotation removed, never applied again to a later rollout), one analysis record
per analysis, and no Event a clean pass would not have posted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from kiln.api.wire import ABORT_ANNOTATION, PROMOTE_ANNOTATION, RETRY_ANNOTATION
from kiln.core.analysis import REQUESTS_KEY, QueryResult
from kiln.handlers.deployment import DeploymentController
from kiln.k8s.client import DEPLOYMENTS, MODEL_DEPLOYMENTS, MODEL_VERSIONS, SERVICES, KubeClient
from kiln.settings import OperatorSettings
from tests.chaos.harness import DRY_RUN, KillingClient, sweep
from tests.support.builders import ModelDeploymentBuilder, ModelVersionBuilder
from tests.support.matchers import events_matching, posted_events

pytestmark = pytest.mark.chaos

T0 = datetime(2026, 3, 1, tzinfo=UTC)
GOOD = {
    REQUESTS_KEY: QueryResult.of(500),
    "canary/error-rate": QueryResult.of(0.0),
    "canary/latency-p99": QueryResult.of(0.01),
}
BAD = {**GOOD, "canary/error-rate": QueryResult.of(0.5)}


class Prometheus:
    """Answers every analysis with the chosen results."""

    def __init__(self, results: Mapping[str, QueryResult]) -> None:
        self.results = dict(results)

    async def query_many(self, queries: Mapping[str, str]) -> dict[str, QueryResult]:
        return {k: self.results.get(k, QueryResult("no_data")) for k in queries}

    async def close(self) -> None:
        return None


def controller(
    client: KubeClient, at: datetime = T0, results: Mapping[str, QueryResult] = GOOD
) -> DeploymentController:
    return DeploymentController(
        client,
        OperatorSettings(server_image="kiln/server:test", workers=1),
        Prometheus(results),  # type: ignore[arg-type]
        clock=lambda: at,
    )


async def clean_pass(server: str, namespace: str, at: datetime = T0) -> None:
    client = KillingClient(server)
    c = controller(client, at)
    await c.reconcile((namespace, "iris"))
    await c.events.drain()
    await client.close()


async def mark_ready(client: KubeClient, namespace: str, name: str) -> None:
    """What kube-controller-manager writes once every replica is ready."""
    replicas = (await client.get(DEPLOYMENTS, namespace, name))["spec"]["replicas"]
    ready = dict.fromkeys(("replicas", "updatedReplicas", "readyReplicas"), replicas)
    await client.patch(
        DEPLOYMENTS,
        namespace,
        name,
        {"status": {**ready, "availableReplicas": replicas}},
        subresource="status",
    )


async def annotate(server: str, namespace: str, key: str, value: str) -> None:
    client = KillingClient(server)
    await client.patch(
        MODEL_DEPLOYMENTS, namespace, "iris", {"metadata": {"annotations": {key: value}}}
    )
    await client.close()


async def new_deployment(server: str, namespace: str, replicas: int = 2) -> None:
    client = KillingClient(server)
    await client.create(
        MODEL_VERSIONS, namespace, ModelVersionBuilder("iris", 1, namespace).approved().obj()
    )
    md = ModelDeploymentBuilder("iris", namespace).replicas(replicas).canary(25, 50).obj()
    await client.create(MODEL_DEPLOYMENTS, namespace, md)
    await client.close()


async def serving_v1(server: str, namespace: str, replicas: int = 2) -> None:
    await new_deployment(server, namespace, replicas)
    await clean_pass(server, namespace)
    client = KillingClient(server)
    await mark_ready(client, namespace, "iris-stable")
    await client.close()
    await clean_pass(server, namespace)


async def canary_v2(server: str, namespace: str, replicas: int = 2) -> None:
    """v1 serves; v2 is Approved and its canary runs at step 0, ready."""
    await serving_v1(server, namespace, replicas)
    client = KillingClient(server)
    await client.create(
        MODEL_VERSIONS, namespace, ModelVersionBuilder("iris", 2, namespace).approved().obj()
    )
    await client.close()
    await clean_pass(server, namespace)
    client = KillingClient(server)
    await mark_ready(client, namespace, "iris-canary")
    await client.close()


class World:
    def __init__(self, server: str, namespace: str) -> None:
        self.server = server
        self.namespace = namespace

    async def load(self) -> World:
        client = KillingClient(self.server)
        md = await client.get(MODEL_DEPLOYMENTS, self.namespace, "iris")
        self.status: dict[str, Any] = md.get("status") or {}
        self.annotations: dict[str, str] = md["metadata"].get("annotations") or {}
        self.deployments = {
            d["metadata"]["name"]: (
                d["spec"]["template"]["metadata"]["labels"]["kiln.dev/model-version"],
                d["spec"]["replicas"],
            )
            for d in await client.list(DEPLOYMENTS, self.namespace)
        }
        self.services = sorted(
            s["metadata"]["name"] for s in await client.list(SERVICES, self.namespace)
        )
        await client.close()
        return self

    def reasons(
        self, kmock: Any, type_: str | None = None, namespace: str | None = None
    ) -> list[str]:
        namespace = namespace or self.namespace
        events = [e for e in posted_events(kmock) if e["metadata"].get("namespace") == namespace]
        return [e["reason"] for e in events_matching(events, type_=type_)]

    def warnings_beyond_a_clean_run(self, kmock: Any) -> list[str]:
        """Warnings posted here that the unkilled pass (the sweep's dry run) did not post."""
        extra = Counter(self.reasons(kmock, "Warning"))
        extra.subtract(Counter(self.reasons(kmock, "Warning", namespace=DRY_RUN)))
        return sorted(reason for reason, count in extra.items() if count > 0)


def then(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_a_first_version_gets_one_deployment_and_one_service(server: str, kmock: Any) -> None:
    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert world.deployments == {"iris-stable": ("iris-v1", 2)}, n
        assert world.services == ["iris"], n
        assert world.status["stableVersion"] == "iris-v1", n
        assert world.reasons(kmock, "Warning") == [], n

    result = await sweep(server, partial(new_deployment, server), controller, "iris", check)
    assert len(result.writes) >= 4  # the Service, two PodDisruptionBudgets, the Deployment, status


async def test_an_approved_version_starts_one_canary(server: str, kmock: Any) -> None:
    """`kiln approve` is one write (the ModelVersion's approval); the pass that follows."""

    async def setup(namespace: str) -> None:
        await serving_v1(server, namespace)
        client = KillingClient(server)
        pending = ModelVersionBuilder("iris", 2, namespace).approval("Pending").obj()
        await client.create(MODEL_VERSIONS, namespace, pending)
        approved = {"status": {"approval": {"state": "Approved", "by": "alice"}}}
        await client.patch(MODEL_VERSIONS, namespace, "iris-v2", approved)
        await client.close()

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert world.deployments == {"iris-stable": ("iris-v1", 1), "iris-canary": ("iris-v2", 1)}
        assert (world.status["canaryVersion"], world.status["currentStep"]) == ("iris-v2", 0), n
        assert world.reasons(kmock).count("RolloutStarted") <= 1, n
        assert world.reasons(kmock, "Warning") == [], n

    await sweep(server, setup, controller, "iris", check)


async def test_a_passing_analysis_advances_one_step(server: str, kmock: Any) -> None:
    """Four replicas, so the step from 25 % to 50 % moves a pod from stable to canary."""

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert world.status["currentStep"] == 1, n
        assert world.deployments == {"iris-stable": ("iris-v1", 2), "iris-canary": ("iris-v2", 2)}
        records = [(r["check"], r["step"]) for r in world.status["analysis"]]
        assert sorted(records) == [("error-rate", 0), ("latency-p99", 0)], n  # one analysis
        assert world.reasons(kmock, "Warning") == [], n

    def later(client: KubeClient) -> DeploymentController:
        return controller(client, then(10))

    result = await sweep(server, partial(canary_v2, server, replicas=4), later, "iris", check)
    assert len(result.writes) == 3  # both tracks' replicas, then the status


async def test_a_failing_analysis_rolls_back_once(server: str, kmock: Any) -> None:
    async def setup(namespace: str) -> None:
        await canary_v2(server, namespace)
        client = KillingClient(server)
        no_tolerance = {"spec": {"canary": {"failureLimit": 0}}}
        await client.patch(MODEL_DEPLOYMENTS, namespace, "iris", no_tolerance)
        await client.close()

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert (world.status["phase"], world.status["failedVersion"]) == ("RolledBack", "iris-v2")
        assert world.deployments["iris-stable"] == ("iris-v1", 2), n
        assert world.deployments["iris-canary"][1] == 0, n
        assert world.warnings_beyond_a_clean_run(kmock) == [], n

    def failing(client: KubeClient) -> DeploymentController:
        return controller(client, then(10), BAD)

    await sweep(server, setup, failing, "iris", check)


async def test_a_promote_request_is_applied_exactly_once(server: str, kmock: Any) -> None:
    async def setup(namespace: str) -> None:
        await canary_v2(server, namespace)
        await annotate(server, namespace, PROMOTE_ANNOTATION, "t1")

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert (world.status["phase"], world.status["stableVersion"]) == ("Promoted", "iris-v2")
        assert world.status.get("reason") == "ManualPromotion", n
        assert PROMOTE_ANNOTATION not in world.annotations, n
        assert not world.status.get("handledCommands"), n
        assert "CommandIgnored" not in world.reasons(kmock), n
        assert world.reasons(kmock, "Warning") == [], n

    await sweep(server, setup, controller, "iris", check)


async def test_an_abort_request_is_applied_exactly_once(server: str, kmock: Any) -> None:
    """Once removed before the status write: killed between the two, the abort was lost
    and the canary went on."""

    async def setup(namespace: str) -> None:
        await canary_v2(server, namespace)
        await annotate(server, namespace, ABORT_ANNOTATION, "t1")

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        status = world.status
        assert (status["phase"], status["reason"], status["failedVersion"]) == (
            "RolledBack",
            "Aborted",
            "iris-v2",
        ), n
        assert world.deployments["iris-stable"] == ("iris-v1", 2), n
        assert ABORT_ANNOTATION not in world.annotations, n
        assert not status.get("handledCommands"), n
        assert "CommandIgnored" not in world.reasons(kmock), n
        assert world.reasons(kmock).count("RolledBack") <= 1, n

    await sweep(server, setup, controller, "iris", check)


async def test_a_retry_request_restarts_the_canary_exactly_once(server: str, kmock: Any) -> None:
    async def setup(namespace: str) -> None:
        await canary_v2(server, namespace)
        await annotate(server, namespace, ABORT_ANNOTATION, "t1")
        await clean_pass(server, namespace)
        await clean_pass(server, namespace)  # the abort annotation's cleanup
        await annotate(server, namespace, RETRY_ANNOTATION, "t2")

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert world.status["canaryVersion"] == "iris-v2", n
        assert "failedVersion" not in world.status, n
        assert RETRY_ANNOTATION not in world.annotations, n
        assert not world.status.get("handledCommands"), n
        assert world.reasons(kmock).count("Retry") <= 1, n

    await sweep(server, setup, controller, "iris", check)


# -- monitoring of the stable track ------------------------------------------------------

MONITORING = {
    "windowSeconds": 300,
    "intervalSeconds": 60,
    "capture": {"destination": "s3://capture/iris"},
}


class Monitor:
    """Observes a chosen world: calm (training-like bins, good labels) or drifting and
    contradicted by its labels."""

    def __init__(self, bad: bool) -> None:
        self.bad = bad

    async def observe(self, md: Any, version: Any, spec: Any, now: datetime) -> Any:
        from kiln.contract.monitoring import Baseline, Distribution, FeatureProfile
        from kiln.core import monitoring as mon
        from kiln.core import quality as ql

        shares = [0.25] * 4
        baseline = Baseline(
            rows=100,
            features=[
                FeatureProfile(
                    name=n, kind="numeric",
                    distribution=Distribution(edges=[1, 2, 3], shares=shares, count=100),
                )
                for n in ("a", "b")
            ],
        )  # fmt: skip
        even = {str(i): 100.0 for i in range(4)}
        bins = {"a": even, "b": {"3": 400.0} if self.bad else even}
        right, wrong = (10, 90) if self.bad else (99, 1)
        pairs = [ql.Pair("x", "x", 1.0)] * right + [ql.Pair("x", "y", 1.0)] * wrong
        return mon.Observation(
            mon.VersionFacts(name=version.metadata.name, metrics={"accuracy": 0.95},
                             classes=["x", "y"], baseline=baseline),
            bins=mon.BinCounts("ok", bins),
            join=mon.JoinResult(ql.Joined(pairs=pairs, captured=100, labels=100)),
        )  # fmt: skip


def monitored(client: KubeClient, at: datetime = T0, bad: bool = False) -> DeploymentController:
    return DeploymentController(
        client,
        OperatorSettings(server_image="kiln/server:test", workers=1),
        Prometheus(GOOD),  # type: ignore[arg-type]
        clock=lambda: at,
        monitor=Monitor(bad),  # type: ignore[arg-type]
    )


async def test_a_drift_and_quality_change_is_announced_once(server: str, kmock: Any) -> None:
    async def setup(namespace: str) -> None:
        client = KillingClient(server)
        await client.create(
            MODEL_VERSIONS, namespace, ModelVersionBuilder("iris", 1, namespace).approved().obj()
        )
        md = ModelDeploymentBuilder("iris", namespace).replicas(2).spec(monitoring=MONITORING)
        await client.create(MODEL_DEPLOYMENTS, namespace, md.obj())
        for ready in (False, True):
            if ready:
                await mark_ready(client, namespace, "iris-stable")
            c = monitored(client)
            await c.reconcile((namespace, "iris"))
            await c.events.drain()
        await client.close()

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        conditions = {c["type"]: c for c in world.status["conditions"]}
        assert conditions["Drifting"]["status"] == "True", n
        assert "b PSI" in conditions["Drifting"]["message"], n
        assert conditions["QualityDegraded"]["status"] == "True", n
        reasons = world.reasons(kmock, "Warning")
        assert reasons.count("DriftDetected") <= 1 and reasons.count("QualityDegraded") <= 1, n
        assert world.warnings_beyond_a_clean_run(kmock) == [], n
        assert world.deployments == {"iris-stable": ("iris-v1", 2)}, n

    result = await sweep(server, setup, partial(monitored, at=then(60), bad=True), "iris", check)
    assert result.writes  # the status write carrying the evaluation
