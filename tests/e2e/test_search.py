"""Hyperparameter search on a real cluster: trial pods at most `parallelism` at once, the
best values trained once more and registered, an operator killed mid-search, and trials
failing on their values counted up to `maxFailedTrials`."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client
from tests.e2e import test_training as training
from tests.e2e.conftest import Kube
from tests.e2e.test_training import BUCKET, create, get, training_job, versions, wait_phase
from tests.support.k8s import wait_for
from tests.support.operator_process import OperatorProcess

from kiln.api import wire

# The training module's fixtures: the CRDs, the operator on the host, S3, the datasets, a
# namespace with the S3 Secret.
crds, operator, s3, datasets, ns = (
    training.crds,
    training.operator,
    training.s3,
    training.datasets,
    training.ns,
)

pytestmark = pytest.mark.e2e


def search_job(name: str, dataset: str, search: dict[str, Any]) -> dict[str, Any]:
    job = training_job(name, dataset, search=search)
    job["spec"]["params"] = {"n_jobs": 1}
    job["spec"]["registration"] = {"thresholds": [{"metric": "accuracy", "min": 0.8}]}
    return job


def trial_pods(kube: Kube, namespace: str) -> list[client.V1Pod]:
    selector = wire.TRIAL_LABEL
    return list(kube.core.list_namespaced_pod(namespace, label_selector=selector).items)


def run_search(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    job = get(kube, namespace, "trainingjobs", name) or {}
    (run,) = (job.get("status") or {}).get("runs") or [{}]
    return dict(run.get("search") or {})


class ConcurrentTrials:
    """The most trial pods not yet finished at any one time, watched from the pods."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.peak = 0
        self.names: set[str] = set()
        self.live_phases: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(kube, namespace), daemon=True)

    def _watch(self, kube: Kube, namespace: str) -> None:
        while not self._stop.wait(0.2):
            pods = trial_pods(kube, namespace)
            self.names |= {p.metadata.name for p in pods}
            live = [p for p in pods if p.status.phase in ("Pending", "Running")]
            self.peak = max(self.peak, len(live))
            # The trainer's phase of a running trial, read from its pod's log.
            for trial in run_search(kube, namespace, "iris").get("active", []):
                trainer = trial.get("trainer") or {}
                if trainer.get("phase") and not trainer.get("finished"):
                    self.live_phases.add(trainer["phase"])

    def __enter__(self) -> ConcurrentTrials:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_a_random_search_runs_two_trials_at_a_time_survives_kills_and_registers_the_best(
    kube: Kube, ns: str, s3: Any, datasets: dict[str, str], operator: OperatorProcess
) -> None:
    search = {
        "strategy": "random",
        "maxTrials": 8,
        "parallelism": 2,
        "seed": 11,
        "objective": {"metric": "accuracy", "validation": {"kFolds": 3}},
        "parameters": [
            {"name": "n_estimators", "range": {"min": 5, "max": 60, "type": "int", "scale": "log"}},
            {"name": "max_depth", "values": [1, 2, 4, None]},
        ],
    }
    with ConcurrentTrials(kube, ns) as watched:
        create(kube, ns, search_job("iris", datasets["iris.csv"], search))
        # Killed once two trials run, and again once the search is half done.
        wait_for(lambda: len(trial_pods(kube, ns)) >= 2, 60, "two trial pods", interval=0.1)
        operator.kill()
        time.sleep(1)
        operator.start()
        wait_for(lambda: run_search(kube, ns, "iris").get("started", 0) >= 5, 180, "trial 5")
        operator.kill()
        time.sleep(1)
        operator.start()
        job = wait_phase(kube, ns, "iris", "Succeeded", 300)
    state = job["status"]["runs"][0]["search"]
    print(f"peak concurrent trial pods {watched.peak}; search status {json.dumps(state)}")
    assert watched.peak <= 2, watched.peak
    # Trials of a few seconds may end between two log reads; a long run's live phase is
    # test_training.py::test_a_running_trainer_shows_its_phase_in_status.
    print(f"trainer phases seen on running trials: {sorted(watched.live_phases)}")
    assert watched.peak == 2, "the search never ran two trials at once"
    # Eight trials, each with one pod: none run twice, none lost.
    assert (state["total"], state["started"], state["succeeded"], state["failed"]) == (8, 8, 8, 0)
    assert watched.names == {f"iris-1-t{k}-1" for k in range(8)}, sorted(watched.names)
    # One ModelVersion, trained with the winning values and measured on the test split.
    (version,) = versions(kube, ns)
    annotations = version["metadata"]["annotations"]
    lineage = json.loads(annotations[wire.LINEAGE_SEARCH])
    best = state["best"][0]
    assert (lineage["strategy"], lineage["seed"], lineage["trials"]) == ("random", 11, 8)
    assert lineage["bestTrial"] == best["trial"]
    assert lineage["bestParams"] == best["params"]
    params = json.loads(annotations[wire.LINEAGE_PARAMS])
    assert {k: params[k] for k in best["params"]} == best["params"]
    assert params["n_jobs"] == 1
    assert 0.8 <= version["spec"]["metrics"]["accuracy"] <= 1.0
    # Every trial's report, best first, kept in the object store beside the model.
    key = lineage["report"].removeprefix(f"s3://{BUCKET}/")
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    print("search report keys:", sorted(report))
    reported = report.get("trials") or []
    assert len(reported) == 8, reported
    assert {t["trial"] for t in reported} == set(range(8))


@pytest.mark.parametrize(("max_failed", "outcome"), [(1, "Succeeded"), (0, "Failed")])
def test_a_trial_failing_on_its_values_is_counted_until_max_failed_trials(
    kube: Kube,
    ns: str,
    datasets: dict[str, str],
    operator: OperatorProcess,
    max_failed: int,
    outcome: str,
) -> None:
    search = {
        "strategy": "grid",
        "parallelism": 1,
        "maxFailedTrials": max_failed,
        "objective": {"metric": "accuracy", "validation": {"fraction": 0.25}},
        "parameters": [{"name": "max_depth", "values": [3, -1, 4]}],  # -1: sklearn refuses it
    }
    create(kube, ns, search_job("iris", datasets["iris.csv"], search))
    job = wait_phase(kube, ns, "iris", outcome, 300)
    state = job["status"]["runs"][0]["search"]
    print(f"maxFailedTrials {max_failed}: {json.dumps(state)}")
    warnings = kube.core.list_namespaced_event(
        ns, field_selector="type=Warning,involvedObject.name=iris"
    ).items
    assert "TrialFailed" in {e.reason for e in warnings}
    if outcome == "Succeeded":
        assert (state["succeeded"], state["failed"]) == (2, 1), state
        (version,) = versions(kube, ns)
        lineage = json.loads(version["metadata"]["annotations"][wire.LINEAGE_SEARCH])
        assert lineage["failed"] == 1
        assert lineage["bestParams"]["max_depth"] in (3, 4)
    else:
        assert state["failed"] == 1, state
        assert job["status"]["runs"][0].get("reason") == "TooManyFailedTrials", job["status"]
        assert versions(kube, ns) == []
