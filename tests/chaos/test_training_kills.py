"""TrainingJob passes killed after every one of their writes, then restarted.

What a user depends on, whatever write the operator died after: one pod per attempt, one
run per trigger, one ModelVersion per successful run, a `kiln.dev/retrain` request acted on
exactly once (under every concurrency policy), and no Warning Event that a clean pass would
not have posted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kiln.api.wire import RETRAIN_ANNOTATION
from kiln.handlers.training import TrainingController
from kiln.k8s.client import MODEL_VERSIONS, PODS, TRAINING_JOBS, KubeClient
from kiln.settings import OperatorSettings
from tests.chaos.harness import KillingClient, sweep
from tests.support.builders import TrainingJobBuilder
from tests.support.matchers import events_matching, posted_events

pytestmark = pytest.mark.chaos

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SHA = "a" * 64


class FixedDigest:
    """The dataset probe, answering one ETag."""

    def __init__(self, digest: str) -> None:
        self.value = digest

    async def digest(self, job: Any) -> str:
        return self.value


def controller(client: KubeClient, digest: str = "etag-1") -> TrainingController:
    settings = OperatorSettings(trainer_image="kiln/trainer:test", metrics_port=0)
    return TrainingController(
        client,
        settings,
        clock=lambda: NOW,
        datasets=FixedDigest(digest),  # type: ignore[arg-type]
    )


def training_job(namespace: str, **triggers: Any) -> dict[str, Any]:
    builder = TrainingJobBuilder("iris", namespace).output("s3://models").threshold("accuracy", 0.9)
    return (builder.triggers(**triggers) if triggers else builder).obj()


async def finish(client: KubeClient, namespace: str, pod: str) -> None:
    report = {
        "ok": True,
        "artifact": {"uri": f"s3://models/{namespace}/iris/model.skops", "sha256": SHA},
        "metrics": {"accuracy": 0.97},
        "dataset": {"uri": "s3://d/iris.csv", "sha256": SHA},
        "versions": {"sklearn": "1.9"},
    }
    terminated = {"exitCode": 0, "reason": "Completed", "message": json.dumps(report)}
    status = {
        "phase": "Succeeded",
        "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}],
    }
    await client.patch(PODS, namespace, pod, {"status": status})


async def reconcile_cleanly(server: str, namespace: str, digest: str = "etag-1") -> None:
    client = KillingClient(server)
    c = controller(client, digest)
    await c.reconcile((namespace, "iris"))
    await c.events.drain()
    await client.close()


async def job_with_one_finished_run(server: str, namespace: str, **triggers: Any) -> None:
    """Run 1 trained, registered iris-v1 and succeeded, all without a kill."""
    client = KillingClient(server)
    await client.create(TRAINING_JOBS, namespace, training_job(namespace, **triggers))
    await reconcile_cleanly(server, namespace)
    await finish(client, namespace, "iris-1-1")
    await reconcile_cleanly(server, namespace)
    await client.close()


class World:
    """What a namespace of the sweep holds once the restarted controller has converged."""

    def __init__(self, server: str, namespace: str) -> None:
        self.server = server
        self.namespace = namespace

    async def load(self) -> World:
        client = KillingClient(self.server)
        self.job = await client.get(TRAINING_JOBS, self.namespace, "iris")
        self.pods = sorted(p["metadata"]["name"] for p in await client.list(PODS, self.namespace))
        self.versions = sorted(
            v["metadata"]["name"] for v in await client.list(MODEL_VERSIONS, self.namespace)
        )
        await client.close()
        return self

    @property
    def runs(self) -> list[tuple[int, str, str]]:
        return [(r["run"], r["trigger"], r["phase"]) for r in self.job["status"]["runs"]]

    def warnings(self, kmock: Any) -> list[str]:
        events = [
            e for e in posted_events(kmock) if e["metadata"].get("namespace") == self.namespace
        ]
        return [f"{e['reason']}: {e['message']}" for e in events_matching(events, type_="Warning")]


async def test_a_new_job_gets_one_run_and_one_pod_whatever_write_the_kill_follows(
    server: str, kmock: Any
) -> None:
    async def setup(namespace: str) -> None:
        client = KillingClient(server)
        await client.create(TRAINING_JOBS, namespace, training_job(namespace))
        await client.close()

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert world.runs == [(1, "create", "Pending")], f"killed after write {n}"
        assert world.pods == ["iris-1-1"], f"killed after write {n}"
        assert world.warnings(kmock) == [], f"killed after write {n}"

    result = await sweep(server, setup, controller, "iris", check)
    assert result.writes == [
        "POST /api/v1/namespaces/<ns>/pods",
        "PATCH /apis/kiln.dev/v1alpha1/namespaces/<ns>/trainingjobs/iris/status",
    ]


@pytest.mark.parametrize("policy", ["Allow", "Forbid", "Replace"])
async def test_a_retrain_request_runs_exactly_once_under_every_concurrency_policy(
    server: str, kmock: Any, policy: str
) -> None:
    """The request that was once consumed by a second write (`kiln.dev/retrain-handled`):
    killed between the two, Allow ran it twice, Forbid warned `RunSkipped … Forbidden`
    about the run it had just started, and Replace cancelled that run for a copy of itself.
    """

    async def setup(namespace: str) -> None:
        await job_with_one_finished_run(server, namespace, concurrencyPolicy=policy)
        client = KillingClient(server)
        annotations = {"annotations": {RETRAIN_ANNOTATION: "2026-05-01T12:00:00Z"}}
        await client.patch(TRAINING_JOBS, namespace, "iris", {"metadata": annotations})
        await client.close()

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        where = f"{policy}, killed after write {n}"
        assert world.runs == [(1, "create", "Succeeded"), (2, "manual", "Pending")], where
        assert world.pods == ["iris-1-1", "iris-2-1"], where
        assert world.versions == ["iris-v1"], where
        assert world.warnings(kmock) == [], where

    result = await sweep(server, setup, controller, "iris", check)
    assert len(result.writes) >= 2  # the run's pod, the status that records run and request


async def test_a_cron_time_starts_one_run_whatever_write_the_kill_follows(
    server: str, kmock: Any
) -> None:
    async def setup(namespace: str) -> None:
        await job_with_one_finished_run(server, namespace, schedule="0 * * * *")
        client = KillingClient(server)
        earlier = (NOW - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        await client.patch(
            TRAINING_JOBS,
            namespace,
            "iris",
            {"status": {"lastScheduleTime": earlier}},
            subresource="status",
        )
        await client.close()

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert world.runs == [(1, "create", "Succeeded"), (2, "schedule", "Pending")], n
        assert world.pods == ["iris-1-1", "iris-2-1"], n
        assert world.job["status"]["lastScheduleTime"] == "2026-05-01T12:00:00Z", n
        assert world.warnings(kmock) == [], n

    await sweep(server, setup, controller, "iris", check)


async def test_a_dataset_change_starts_one_run_whatever_write_the_kill_follows(
    server: str, kmock: Any
) -> None:
    async def setup(namespace: str) -> None:
        await job_with_one_finished_run(
            server, namespace, datasetChange={"pollIntervalSeconds": 60}
        )

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert world.runs == [(1, "create", "Succeeded"), (2, "datasetChange", "Pending")], n
        assert world.pods == ["iris-1-1", "iris-2-1"], n
        assert world.job["status"]["datasetDigest"] == "etag-2", n
        assert world.warnings(kmock) == [], n

    def changed(client: KubeClient) -> TrainingController:
        return controller(client, digest="etag-2")

    await sweep(server, setup, changed, "iris", check)


async def test_a_finished_run_registers_one_version_whatever_write_the_kill_follows(
    server: str, kmock: Any
) -> None:
    async def setup(namespace: str) -> None:
        client = KillingClient(server)
        await client.create(TRAINING_JOBS, namespace, training_job(namespace))
        await reconcile_cleanly(server, namespace)
        await finish(client, namespace, "iris-1-1")
        await client.close()

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert world.runs == [(1, "create", "Succeeded")], n
        assert world.versions == ["iris-v1"], n
        assert world.job["status"]["modelVersion"] == "iris-v1", n
        assert world.warnings(kmock) == [], n

    result = await sweep(server, setup, controller, "iris", check)
    assert len(result.writes) >= 2  # the ModelVersion, the TrainingJob's status


@pytest.mark.parametrize("policy", ["Allow", "Forbid", "Replace"])
async def test_a_retrain_sent_once_the_version_shows_starts_a_run_whatever_write_came_last(
    server: str, kmock: Any, policy: str
) -> None:
    """The e2e's random kills found it: the pass registering iris-v1 died before its status
    write, the user saw iris-v1 and asked for a retrain, and the restarted operator judged
    the request against run 1 as the status still had it (Running): Forbid skipped it with
    a `RunSkipped … Forbidden` Warning and Replace cancelled the finished run."""

    async def setup(namespace: str) -> None:
        client = KillingClient(server)
        await client.create(
            TRAINING_JOBS, namespace, training_job(namespace, concurrencyPolicy=policy)
        )
        await reconcile_cleanly(server, namespace)
        await finish(client, namespace, "iris-1-1")
        await client.close()

    async def retrain(namespace: str) -> None:
        client = KillingClient(server)
        annotations = {"annotations": {RETRAIN_ANNOTATION: "after-v1"}}
        await client.patch(TRAINING_JOBS, namespace, "iris", {"metadata": annotations})
        await client.close()

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        where = f"{policy}, killed after write {n}"
        assert world.runs == [(1, "create", "Succeeded"), (2, "manual", "Pending")], where
        assert world.pods == ["iris-1-1", "iris-2-1"], where
        assert world.versions == ["iris-v1"], where
        assert world.warnings(kmock) == [], where

    await sweep(server, setup, controller, "iris", check, while_down=retrain)
