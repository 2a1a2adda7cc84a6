"""Bad input never loses work: an edit the operator cannot act on stalls the object, and
what it already runs or serves stays as it is.

kmock admits any spec (it has no CRD schema), which stands for what slips past admission:
an object admitted by an older CRD, or a rule only the operator can check.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tests.support.builders import ModelDeploymentBuilder, ModelVersionBuilder, TrainingJobBuilder
from tests.support.kmock_api import kube_client
from tests.support.matchers import events_matching, has_condition, posted_events

from kiln.handlers.deployment import DeploymentController
from kiln.handlers.training import TrainingController
from kiln.k8s.client import (
    DEPLOYMENTS,
    MODEL_DEPLOYMENTS,
    MODEL_VERSIONS,
    PODS,
    SERVICES,
    TRAINING_JOBS,
    KubeClient,
)
from kiln.settings import OperatorSettings

pytestmark = pytest.mark.component

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
NS = "ml"


@pytest.fixture
async def client(kmock: Any) -> Any:
    kube = kube_client(kmock)
    yield kube
    await kube.close()


class NoPrometheus:
    async def query_many(self, queries: Any) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        return None


async def test_a_training_job_edited_to_an_invalid_spec_keeps_its_running_run(
    client: KubeClient,
) -> None:
    settings = OperatorSettings(trainer_image="kiln/trainer:test", metrics_port=0)
    c = TrainingController(client, settings, clock=lambda: NOW)
    await client.create(TRAINING_JOBS, NS, TrainingJobBuilder("iris").output("s3://m").obj())
    await client.create(MODEL_VERSIONS, NS, ModelVersionBuilder("iris", 1, NS).approved().obj())
    await c.reconcile((NS, "iris"))
    await client.patch(PODS, NS, "iris-1-1", {"status": {"phase": "Running"}})
    await c.reconcile((NS, "iris"))
    before = (await client.get(TRAINING_JOBS, NS, "iris"))["status"]

    # Both an estimator and a command: the model refuses it (as the CRD's CEL would).
    invalid = {"spec": {"command": ["python", "train.py"]}}
    await client.patch(TRAINING_JOBS, NS, "iris", invalid)
    await c.reconcile_reporting_failures((NS, "iris"))

    job = await client.get(TRAINING_JOBS, NS, "iris")
    assert has_condition(job["status"], "Stalled", reason="InvalidSpec")
    assert job["status"]["runs"] == before["runs"]  # run 1 and its attempt, as they were
    assert [p["metadata"]["name"] for p in await client.list(PODS, NS)] == ["iris-1-1"]
    assert [v["metadata"]["name"] for v in await client.list(MODEL_VERSIONS, NS)] == ["iris-v1"]


async def test_a_model_deployment_edited_to_an_invalid_spec_keeps_serving_its_stable_version(
    client: KubeClient,
) -> None:
    c = DeploymentController(
        client,
        OperatorSettings(server_image="kiln/server:test", workers=1),
        NoPrometheus(),  # type: ignore[arg-type]
        clock=lambda: NOW,
    )
    await client.create(MODEL_VERSIONS, NS, ModelVersionBuilder("iris", 1, NS).approved().obj())
    md = ModelDeploymentBuilder("iris", NS).replicas(2).canary(50).obj()
    await client.create(MODEL_DEPLOYMENTS, NS, md)
    await c.reconcile((NS, "iris"))
    serving_before = await client.get(DEPLOYMENTS, NS, "iris-stable")

    # Steps not increasing, and a pinned version beside followLatestApproved: refused.
    invalid = {"spec": {"modelVersion": "iris-v1", "canary": {"steps": [50, 10]}}}
    await client.patch(MODEL_DEPLOYMENTS, NS, "iris", invalid)
    await c.reconcile_reporting_failures((NS, "iris"))

    found = await client.get(MODEL_DEPLOYMENTS, NS, "iris")
    assert has_condition(found["status"], "Stalled", reason="InvalidSpec")
    assert found["status"]["stableVersion"] == "iris-v1"
    stable = await client.get(DEPLOYMENTS, NS, "iris-stable")
    assert stable["spec"] == serving_before["spec"]  # same version, same replicas
    assert [s["metadata"]["name"] for s in await client.list(SERVICES, NS)] == ["iris"]


async def test_a_replace_for_a_spec_that_cannot_run_keeps_the_running_run(
    client: KubeClient,
) -> None:
    """concurrencyPolicy Replace cancels the active run for the new spec's run: not when
    that run cannot even get a pod (here: no output location, and no operator default)."""
    settings = OperatorSettings(trainer_image="kiln/trainer:test", metrics_port=0)
    c = TrainingController(client, settings, clock=lambda: NOW)
    job = TrainingJobBuilder("iris").output("s3://m").triggers(concurrencyPolicy="Replace")
    await client.create(TRAINING_JOBS, NS, job.obj())
    await c.reconcile((NS, "iris"))
    await client.patch(PODS, NS, "iris-1-1", {"status": {"phase": "Running"}})
    await c.reconcile((NS, "iris"))

    await client.patch(
        TRAINING_JOBS, NS, "iris", {"metadata": {"generation": 2}, "spec": {"output": None}}
    )
    await c.reconcile_reporting_failures((NS, "iris"))

    found = await client.get(TRAINING_JOBS, NS, "iris")
    assert has_condition(
        found["status"], "Stalled", reason="InvalidSpec", message_has=["spec.output.uri"]
    )
    assert [(r["run"], r["phase"]) for r in found["status"]["runs"]] == [(1, "Running")]
    assert [p["metadata"]["name"] for p in await client.list(PODS, NS)] == ["iris-1-1"]


@pytest.mark.parametrize(
    ("search_name", "params", "field", "misspelt"),
    [
        ("max_dept", {}, "spec.search.parameters[name=max_dept]", "max_dept"),
        ("max_depth", {"n_estimator": 10}, "spec.params.n_estimator", "n_estimator"),
    ],
)
async def test_a_parameter_the_estimator_does_not_have_stalls_the_job_before_any_pod(
    client: KubeClient,
    kmock: Any,
    search_name: str,
    params: dict[str, Any],
    field: str,
    misspelt: str,
) -> None:
    """The operator's image has no scikit-learn: the models read the names from the
    generated table (kiln.api.estimator_params), so the typo never reaches a trial pod."""
    settings = OperatorSettings(trainer_image="kiln/trainer:test", metrics_port=0)
    c = TrainingController(client, settings, clock=lambda: NOW)
    search = {
        "strategy": "grid",
        "objective": {"metric": "accuracy"},
        "parameters": [{"name": search_name, "values": [3, 5]}],
    }
    job = (
        TrainingJobBuilder("forest")
        .estimator("sklearn.ensemble.RandomForestClassifier")
        .params(**params)
        .spec(search=search)
        .output("s3://m")
    )
    await client.create(TRAINING_JOBS, NS, job.obj())
    await c.reconcile_reporting_failures((NS, "forest"))
    await c.events.drain()

    found = await client.get(TRAINING_JOBS, NS, "forest")
    says = [field, f"RandomForestClassifier has no parameter {misspelt}", "did you mean"]
    assert has_condition(found["status"], "Stalled", reason="InvalidSpec", message_has=says)
    assert found["status"].get("runs", []) == []
    assert await client.list(PODS, NS) == []
    assert events_matching(
        posted_events(kmock),
        about="forest",
        reason="InvalidSpec",
        type_="Warning",
        message_has=says,
    )
