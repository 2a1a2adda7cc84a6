"""Hyperparameter-search passes killed after every one of their writes, then restarted.

Whatever write the operator died after: one pod per trial attempt, never more than
`parallelism` trials at once, every trial counted once (none lost, none twice), one final
training and one ModelVersion whose lineage names the search.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kiln.api.wire import LINEAGE_SEARCH
from kiln.k8s.client import MODEL_VERSIONS, PODS, TRAINING_JOBS, KubeClient
from tests.chaos.harness import KillingClient, sweep
from tests.chaos.test_training_kills import World, controller, finish, reconcile_cleanly
from tests.support.builders import TrainingJobBuilder

pytestmark = pytest.mark.chaos

SEARCH = {
    "strategy": "random",
    "maxTrials": 3,
    "parallelism": 2,
    "seed": 5,
    "objective": {"metric": "accuracy", "validation": {"kFolds": 3}},
    "parameters": [{"name": "C", "range": {"min": 0.01, "max": 10, "scale": "log"}}],
}


def search_job(namespace: str) -> dict[str, Any]:
    return (
        TrainingJobBuilder("iris", namespace)
        .output("s3://models")
        .threshold("accuracy", 0.9)
        .spec(search=SEARCH)
        .obj()
    )


async def finish_trial(
    client: KubeClient, namespace: str, pod: str, trial: int, value: float
) -> None:
    report = {"ok": True, "trial": trial, "objective": value, "metric": "accuracy",
              "metrics": {"accuracy": value}}  # fmt: skip
    terminated = {"exitCode": 0, "reason": "Completed", "message": json.dumps(report)}
    status = {
        "phase": "Succeeded",
        "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}],
    }
    await client.patch(PODS, namespace, pod, {"status": status})


def search_state(world: World) -> dict[str, Any]:
    state: dict[str, Any] = world.job["status"]["runs"][0]["search"]
    return state


async def test_a_new_search_starts_parallelism_trials_once_whatever_write_the_kill_follows(
    server: str, kmock: Any
) -> None:
    async def setup(namespace: str) -> None:
        client = KillingClient(server)
        await client.create(TRAINING_JOBS, namespace, search_job(namespace))
        await client.close()

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert world.runs == [(1, "create", "Pending")], n
        assert world.pods == ["iris-1-t0-1", "iris-1-t1-1"], n
        state = search_state(world)
        assert (state["started"], state["total"], len(state["active"])) == (2, 3, 2), n
        assert world.job["status"]["progress"]["trials"] == "0/3", n
        assert world.warnings(kmock) == [], n

    result = await sweep(server, setup, controller, "iris", check)
    assert result.writes == [
        "POST /api/v1/namespaces/<ns>/pods",
        "POST /api/v1/namespaces/<ns>/pods",
        "PATCH /apis/kiln.dev/v1alpha1/namespaces/<ns>/trainingjobs/iris/status",
    ]


async def test_a_finished_trial_is_counted_once_and_its_slot_reused_once(
    server: str, kmock: Any
) -> None:
    async def setup(namespace: str) -> None:
        client = KillingClient(server)
        await client.create(TRAINING_JOBS, namespace, search_job(namespace))
        await reconcile_cleanly(server, namespace)
        await finish_trial(client, namespace, "iris-1-t0-1", 0, 0.91)
        await client.close()

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert world.pods == ["iris-1-t0-1", "iris-1-t1-1", "iris-1-t2-1"], n
        state = search_state(world)
        assert (state["started"], state["succeeded"], state["failed"]) == (3, 1, 0), n
        assert sorted(t["trial"] for t in state["active"]) == [1, 2], n
        assert [t["trial"] for t in state["best"]] == [0], n
        assert world.warnings(kmock) == [], n

    await sweep(server, setup, controller, "iris", check)


def every_trial_finished(server: str) -> Any:
    """Trials 0, 1, 2 succeeded (1 and 2 tie: trial 1 wins), the last two not yet seen."""

    async def setup(namespace: str) -> None:
        client = KillingClient(server)
        await client.create(TRAINING_JOBS, namespace, search_job(namespace))
        await reconcile_cleanly(server, namespace)
        await finish_trial(client, namespace, "iris-1-t0-1", 0, 0.91)
        await reconcile_cleanly(server, namespace)
        await finish_trial(client, namespace, "iris-1-t1-1", 1, 0.97)
        await finish_trial(client, namespace, "iris-1-t2-1", 2, 0.97)
        await client.close()

    return setup


async def test_the_end_of_the_search_trains_the_best_once(server: str, kmock: Any) -> None:

    async def check(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert world.pods == ["iris-1-1", "iris-1-t0-1", "iris-1-t1-1", "iris-1-t2-1"], n
        state = search_state(world)
        assert (state["stage"], state["succeeded"], state["best"][0]["trial"]) == (
            "Training", 3, 1,
        ), n  # fmt: skip
        assert world.versions == [], n
        assert world.warnings(kmock) == [], n
        client = KillingClient(server)
        final = await client.get(PODS, namespace, "iris-1-1")
        await client.close()
        spec = json.loads(final["spec"]["containers"][0]["env"][0]["value"])
        assert spec["params"]["C"] == state["best"][0]["params"]["C"], n
        assert spec["search"]["bestTrial"] == 1 and "trial" not in spec, n

    result = await sweep(server, every_trial_finished(server), controller, "iris", check)
    assert result.writes[0] == "POST /api/v1/namespaces/<ns>/pods"


async def test_the_final_training_registers_one_version_naming_the_search(
    server: str, kmock: Any
) -> None:
    async def trained(namespace: str) -> None:
        await every_trial_finished(server)(namespace)
        await reconcile_cleanly(server, namespace)
        client = KillingClient(server)
        await finish(client, namespace, "iris-1-1")
        await client.close()

    async def registered(namespace: str, n: int) -> None:
        world = await World(server, namespace).load()
        assert world.runs == [(1, "create", "Succeeded")], n
        assert world.versions == ["iris-v1"], n
        client = KillingClient(server)
        version = await client.get(MODEL_VERSIONS, namespace, "iris-v1")
        await client.close()
        lineage = json.loads(version["metadata"]["annotations"][LINEAGE_SEARCH])
        assert (lineage["strategy"], lineage["seed"], lineage["trials"]) == ("random", 5, 3), n
        assert lineage["bestTrial"] == 1 and lineage["space"][0]["name"] == "C", n
        assert world.warnings(kmock) == [], n

    result = await sweep(server, trained, controller, "iris", registered)
    assert result.writes[0] == "POST /apis/kiln.dev/v1alpha1/namespaces/<ns>/modelversions"
