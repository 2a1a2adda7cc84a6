"""The chassis under both controllers against kmock: a status write that loses a race, and
the echoes of the controller's own writes.

kmock keeps no resourceVersions, so `VersionedClient` does what the apiserver does with
them: every write stamps the next version, and a write that names a version (the status
write's precondition) is refused with 409 unless the object is still at that version.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from tests.support.builders import ModelDeploymentBuilder, ModelVersionBuilder, TrainingJobBuilder
from tests.support.kmock_api import kube_client

from kiln.handlers.deployment import DeploymentController
from kiln.handlers.training import TrainingController
from kiln.k8s.client import (
    MODEL_DEPLOYMENTS,
    MODEL_VERSIONS,
    PODS,
    TRAINING_JOBS,
    ApiError,
    KubeClient,
    Resource,
)
from kiln.settings import OperatorSettings

pytestmark = pytest.mark.component

NS = "ml"
KEY = (NS, "iris")


class VersionedClient(KubeClient):
    """kmock with resourceVersions and their preconditions, as the apiserver has them."""

    def __init__(self, inner: KubeClient) -> None:
        super().__init__(inner.credentials)
        self._versions = itertools.count(100)
        # Runs once, right before the next status write: another writer getting there first.
        self.before_status_write: Callable[[], Awaitable[None]] | None = None
        self.conflicts = 0

    def _stamped(self, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        body.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        return body

    async def create(
        self, resource: Resource, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        return await super().create(resource, namespace, self._stamped(body))

    async def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        *,
        subresource: str = "",
    ) -> dict[str, Any]:
        if subresource == "status" and self.before_status_write is not None:
            other_writer, self.before_status_write = self.before_status_write, None
            await other_writer()
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None:
            current = (await self.get(resource, namespace, name))["metadata"]["resourceVersion"]
            if wanted != current:
                self.conflicts += 1
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {resource.plural} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and "
                    "try again",
                    f"PATCH {resource.path(namespace, name, subresource)}",
                )
        return await super().patch(
            resource, namespace, name, self._stamped(body), subresource=subresource
        )


@pytest.fixture
async def client(kmock: Any) -> AsyncIterator[VersionedClient]:
    inner = kube_client(kmock)
    versioned = VersionedClient(inner)
    await inner.close()
    yield versioned
    await versioned.close()


def training_controller(client: KubeClient) -> TrainingController:
    return TrainingController(client, OperatorSettings(trainer_image="kiln/trainer:test"))


def deployment_controller(client: KubeClient) -> DeploymentController:
    settings = OperatorSettings(server_image="kiln/server:test", workers=1)
    return DeploymentController(client, settings, prometheus=None)  # type: ignore[arg-type]


async def test_a_status_write_that_loses_a_race_goes_again_and_loses_no_update(
    client: VersionedClient,
) -> None:
    await client.create(TRAINING_JOBS, NS, TrainingJobBuilder("iris").output("s3://m").obj())

    async def other_writer() -> None:
        # An older replica, say, records a handled retrain request while the pass runs.
        other = {"status": {"retrainHandled": "from-elsewhere"}}
        await client.patch(TRAINING_JOBS, NS, "iris", other, subresource="status")

    client.before_status_write = other_writer
    c = training_controller(client)

    assert await c.reconcile_reporting_failures(KEY) == 0.0  # again at once
    assert client.conflicts == 1
    job = await client.get(TRAINING_JOBS, NS, "iris")
    assert job["status"] == {"retrainHandled": "from-elsewhere"}  # nothing of ours written
    assert c.cache.fresh(KEY) is None  # the next pass reads afresh

    await c.reconcile_reporting_failures(KEY)
    assert client.conflicts == 1
    job = await client.get(TRAINING_JOBS, NS, "iris")
    # Our write carries the whole status: applied over the other write it would have
    # removed `retrainHandled` (the patch sets every field it leaves out to null).
    assert job["status"]["retrainHandled"] == "from-elsewhere"
    assert [r["run"] for r in job["status"]["runs"]] == [1]
    assert "conditions" in job["status"]
    pods = await client.list(PODS, NS)
    assert [p["metadata"]["name"] for p in pods] == ["iris-1-1"]  # adopted, not made twice


async def test_the_training_controller_skips_its_own_echoes_but_not_a_persons_edit(
    client: VersionedClient,
) -> None:
    await client.create(TRAINING_JOBS, NS, TrainingJobBuilder("iris").output("s3://m").obj())
    c = training_controller(client)
    await c.reconcile_reporting_failures(KEY)
    written = await client.get(TRAINING_JOBS, NS, "iris")
    assert written["status"]["runs"]

    c.enqueue(KEY, written)  # the watch delivers our own status write
    assert len(c.queue) == 0
    edited = await client.patch(TRAINING_JOBS, NS, "iris", {"spec": {"backoffLimit": 5}})
    c.enqueue(KEY, edited)
    assert len(c.queue) == 1
    assert c.cache.fresh(KEY) == edited  # the next pass reads the watch's copy, no GET


async def test_the_deployment_controller_skips_its_own_echoes_but_not_a_persons_edit(
    client: VersionedClient,
) -> None:
    await client.create(MODEL_VERSIONS, NS, ModelVersionBuilder("iris", 1, NS).approved().obj())
    await client.create(MODEL_DEPLOYMENTS, NS, ModelDeploymentBuilder("iris", NS).obj())
    c = deployment_controller(client)
    await c.reconcile_reporting_failures(KEY)
    written = await client.get(MODEL_DEPLOYMENTS, NS, "iris")
    assert written["status"]["targetVersion"] == "iris-v1"

    c.enqueue(KEY, written)
    assert len(c.queue) == 0
    edited = await client.patch(MODEL_DEPLOYMENTS, NS, "iris", {"spec": {"replicas": 3}})
    c.enqueue(KEY, edited)
    assert len(c.queue) == 1

    # Deleted: the cache forgets it, and the pass still queued finds nothing to do.
    await client.delete(MODEL_DEPLOYMENTS, NS, "iris")
    c.enqueue(KEY, edited, deleted=True)
    assert c.cache.fresh(KEY) is None and c.cache.latest(KEY) is None
    assert await c.reconcile_reporting_failures(KEY) is None
