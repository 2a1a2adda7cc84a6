"""TrainingJob -> Pod -> ModelVersion on a real control plane, with the operator as a process.

The operator runs on the host (`kiln-operator --standalone`) against the cluster's
kubeconfig, exactly as a developer runs it; training pods run the real trainer, which reads
iris.csv from the cluster's S3 and uploads the model there.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.e2e.conftest import Kube
from tests.support.builders import TrainingJobBuilder
from tests.support.k8s import wait_for
from tests.support.matchers import condition
from tests.support.operator_process import OperatorProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "tests/data/invalid_trainingjobs").glob("*.yaml"))
GROUP, VERSION = "kiln.dev", "v1alpha1"
# One bucket for data and models: every SeaweedFS bucket costs volumes.
BUCKET = "datasets"


@pytest.fixture(scope="module")
def crds(kube: Kube) -> None:
    kube.kubectl("apply", "-f", str(ROOT / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@pytest.fixture(scope="module")
def operator(
    kube: Kube, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    # The trainer's live phase is read from its pod's log every second (5 s by default), so
    # a run of a few seconds shows it.
    env = {
        **os.environ,
        "KILN_S3_ENDPOINT": kube.s3_endpoint,
        "KILN_TRAINER_LOG_INTERVAL_SECONDS": "1",
    }
    process = OperatorProcess(kube.kubeconfig, log, env).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def s3(kube: Kube) -> Any:
    import boto3
    from botocore.config import Config

    s3client = boto3.client(
        "s3",
        endpoint_url=kube.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=kube.s3_access_key,
        aws_secret_access_key=kube.s3_secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )
    buckets = {b["Name"] for b in s3client.list_buckets().get("Buckets", [])}
    if BUCKET not in buckets:
        s3client.create_bucket(Bucket=BUCKET)
    return s3client


@pytest.fixture(scope="module")
def datasets(s3: Any) -> dict[str, str]:
    prefix = f"e2e-{secrets.token_hex(3)}"
    uris = {}
    for name in ("iris.csv", "iris-broken.csv"):
        key = f"{prefix}/{name}"
        s3.upload_file(str(ROOT / "examples/data" / name), BUCKET, key)
        uris[name] = f"s3://{BUCKET}/{key}"
    uris["missing"] = f"s3://{BUCKET}/{prefix}/no-such-file.csv"
    return uris


@pytest.fixture
def ns(kube: Kube, namespace: str, operator: OperatorProcess) -> str:
    """A restricted namespace with the S3 credentials Secret the jobs reference."""
    kube.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "s3-credentials"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": kube.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": kube.s3_secret_key,
            },
        },
    )
    return namespace


def training_job(name: str, dataset: str, **spec: Any) -> dict[str, Any]:
    """The TrainingJob as a client creates it: a small forest on iris, gated on accuracy, its
    artifacts in the test bucket; `spec` sets further fields by their wire names."""
    return (
        TrainingJobBuilder(name)
        .for_create()
        .estimator("sklearn.ensemble.RandomForestClassifier")
        .params(n_estimators=20, max_depth=4)
        .dataset(dataset)
        .evaluation(testSize=0.25, seed=7, metrics=["accuracy", "f1_macro"])
        .backoff_limit(1)
        .output(f"s3://{BUCKET}/models", credentialsSecretRef={"name": "s3-credentials"})
        .threshold("accuracy", min=0.8)
        .not_worse_than_approved("accuracy", 0.05)
        .spec(**spec)
        .obj()
    )


def custom(kube: Kube) -> Any:
    return client.CustomObjectsApi(kube.api)


def create(kube: Kube, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = custom(kube).create_namespaced_custom_object(
        GROUP, VERSION, ns, "trainingjobs", body
    )
    return result


def get(kube: Kube, ns: str, plural: str, name: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = custom(kube).get_namespaced_custom_object(
            GROUP, VERSION, ns, plural, name
        )
        return result
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def versions(kube: Kube, ns: str) -> list[dict[str, Any]]:
    answer = custom(kube).list_namespaced_custom_object(GROUP, VERSION, ns, "modelversions")
    return list(answer["items"])


def wait_approved(kube: Kube, ns: str, name: str, timeout: float = 120) -> dict[str, Any]:
    def approved() -> dict[str, Any] | None:
        mv = get(kube, ns, "modelversions", name)
        state = ((mv or {}).get("status") or {}).get("approval", {}).get("state")
        return mv if state == "Approved" else None

    return wait_for(approved, timeout, f"{ns}/{name} Approved", interval=0.5)


def wait_phase(kube: Kube, ns: str, name: str, phase: str, timeout: float) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        job = get(kube, ns, "trainingjobs", name)
        return job if ((job or {}).get("status") or {}).get("phase") == phase else None

    return wait_for(reached, timeout, f"TrainingJob {ns}/{name} {phase}", interval=0.5)


def training_pods(kube: Kube, ns: str) -> list[client.V1Pod]:
    return list(kube.core.list_namespaced_pod(ns, label_selector="kiln.dev/run").items)


def events(kube: Kube, ns: str, name: str) -> list[str]:
    items = kube.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
    return [e.reason for e in items.items]


# --- the happy path ------------------------------------------------------------------------


def test_iris_trains_in_a_pod_and_registers_approved_versions_with_lineage(
    kube: Kube, ns: str, s3: Any, datasets: dict[str, str], operator: OperatorProcess
) -> None:
    job = create(kube, ns, training_job("iris", datasets["iris.csv"]))

    v1 = wait_approved(kube, ns, "iris-v1")
    # The artifact is in S3 and is exactly the bytes the ModelVersion names.
    artifact = v1["spec"]["artifact"]
    bucket, _, key = artifact["uri"].removeprefix("s3://").partition("/")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(data).hexdigest() == artifact["sha256"]
    assert artifact["format"] == "skops"
    assert v1["spec"]["metrics"]["accuracy"] >= 0.8
    assert v1["status"]["approval"]["by"] == "kiln-operator"
    assert {c["name"] for c in v1["status"]["approval"]["checks"]} == {
        "threshold/accuracy",
        "notWorseThanApproved/accuracy",
    }

    # One pod, deterministic name, owned by the TrainingJob, restricted-compliant.
    (pod,) = training_pods(kube, ns)
    assert pod.metadata.name == "iris-1-1"
    (owner,) = pod.metadata.owner_references
    assert (owner.kind, owner.uid, owner.controller) == (
        "TrainingJob",
        job["metadata"]["uid"],
        True,
    )
    env = {e.name: e for e in pod.spec.containers[0].env}
    assert env["AWS_ACCESS_KEY_ID"].value_from.secret_key_ref.name == "s3-credentials"
    assert env["AWS_EC2_METADATA_DISABLED"].value == "true"

    # Lineage: enough to re-run it.
    annotations = v1["metadata"]["annotations"]
    dataset_sha = hashlib.sha256((ROOT / "examples/data/iris.csv").read_bytes()).hexdigest()
    assert annotations["lineage.kiln.dev/dataset"] == f"{datasets['iris.csv']}@sha256:{dataset_sha}"
    assert annotations["lineage.kiln.dev/training-job-uid"] == job["metadata"]["uid"]
    assert annotations["lineage.kiln.dev/params-hash"].startswith("sha256:")
    assert annotations["lineage.kiln.dev/trainer-image"].startswith("kiln/trainer:")
    assert "lineage.kiln.dev/parent-version" not in annotations

    trained = wait_phase(kube, ns, "iris", "Succeeded", 30)
    assert trained["status"]["modelVersion"] == "iris-v1"
    assert condition(trained, "Ready")["status"] == "True"  # type: ignore[index]
    assert {"RunStarted", "AttemptStarted", "Succeeded"} <= set(events(kube, ns, "iris"))
    # The trainer's phases, from its report once the pod has ended: in order, timed.
    timeline = trained["status"]["runs"][0]["trainer"]
    assert timeline["finished"] is True and timeline["pod"] == "iris-1-1", timeline
    assert [p["phase"] for p in timeline["phases"]] == ["load", "fit", "evaluate", "upload"]
    assert all(p["seconds"] >= 0 for p in timeline["phases"]), timeline

    # A second run (a person asks for one) gives iris-v2, whose parent is iris-v1.
    custom(kube).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "trainingjobs",
        "iris",
        {"metadata": {"annotations": {"kiln.dev/retrain": "second"}}},
    )
    v2 = wait_approved(kube, ns, "iris-v2")
    assert v2["metadata"]["annotations"]["lineage.kiln.dev/parent-version"] == "iris-v1"
    assert v2["metadata"]["labels"]["kiln.dev/run"] == "2"
    assert v2["spec"]["artifact"]["uri"] != artifact["uri"]
    # Same data, params and seed: the same model, byte for byte.
    assert v2["spec"]["artifact"]["sha256"] == artifact["sha256"]
    check = next(c for c in v2["status"]["approval"]["checks"] if c["name"].startswith("notWorse"))
    assert check["baselineVersion"] == "iris-v1"
    assert sorted(v["metadata"]["name"] for v in versions(kube, ns)) == ["iris-v1", "iris-v2"]
    assert "kiln_training_runs_total" in operator.metrics()


def test_a_running_trainer_shows_its_phase_in_status(
    kube: Kube, ns: str, datasets: dict[str, str]
) -> None:
    """While the pod runs, the TrainingJob's status names the trainer's phase, read from the
    pod's log (a 3,000-tree forest: a fit of a few seconds)."""
    create(
        kube,
        ns,
        training_job("iris", datasets["iris.csv"], params={"n_estimators": 3000, "n_jobs": 1}),
    )
    seen: list[tuple[str, str]] = []

    def finished() -> bool:
        status = (get(kube, ns, "trainingjobs", "iris") or {}).get("status") or {}
        trainer = status.get("trainer") or {}
        if trainer.get("phase") and not trainer.get("finished"):
            entry = (trainer["phase"], trainer["phaseStartTime"])
            if entry not in seen:
                seen.append(entry)
        return status.get("phase") == "Succeeded"

    wait_for(finished, 180, "the run Succeeded", interval=0.2)
    print("live trainer phases:", seen)
    assert "fit" in [phase for phase, _ in seen], seen


# --- failures ------------------------------------------------------------------------------


def test_unreachable_dataset_exhausts_retries_with_backoff(
    kube: Kube, ns: str, datasets: dict[str, str]
) -> None:
    create(kube, ns, training_job("missing", datasets["missing"], backoffLimit=1))
    job = wait_phase(kube, ns, "missing", "Failed", 90)
    status = job["status"]
    assert status["attempts"] == 2
    ready = condition(job, "Ready")
    assert ready is not None and ready["status"] == "False"
    assert ready["reason"] == "BackoffLimitExceeded"
    assert "DatasetUnavailable" in ready["message"]
    assert sorted(p.metadata.name for p in training_pods(kube, ns)) == [
        "missing-1-1",
        "missing-1-2",
    ]
    reasons = events(kube, ns, "missing")
    assert "Retrying" in reasons and "BackoffLimitExceeded" in reasons
    assert versions(kube, ns) == []


def test_broken_dataset_fails_at_once_without_retrying(
    kube: Kube, ns: str, datasets: dict[str, str]
) -> None:
    create(kube, ns, training_job("broken", datasets["iris-broken.csv"], backoffLimit=3))
    job = wait_phase(kube, ns, "broken", "Failed", 60)
    assert job["status"]["attempts"] == 1
    assert condition(job, "Ready")["reason"] == "InvalidDataset"  # type: ignore[index]
    assert condition(job, "Failed")["status"] == "True"  # type: ignore[index]


def test_active_deadline_is_enforced(kube: Kube, ns: str, datasets: dict[str, str]) -> None:
    body = training_job("slow", datasets["iris.csv"], activeDeadlineSeconds=4)
    del body["spec"]["estimator"]
    body["spec"]["command"] = ["python3", "-c", "import time; time.sleep(120)"]
    started = time.monotonic()
    create(kube, ns, body)
    job = wait_phase(kube, ns, "slow", "Failed", 60)
    assert time.monotonic() - started < 40
    assert condition(job, "Ready")["reason"] == "DeadlineExceeded"  # type: ignore[index]

    def stopped() -> bool:
        pods = training_pods(kube, ns)
        return all(
            p.metadata.deletion_timestamp is not None or p.status.phase in ("Failed", "Succeeded")
            for p in pods
        )

    wait_for(stopped, 60, "the slow pod to be stopped")


def test_trainer_over_its_memory_limit_fails_as_out_of_memory(
    kube: Kube, ns: str, datasets: dict[str, str]
) -> None:
    body = training_job(
        "hungry",
        datasets["iris.csv"],
        backoffLimit=0,
        resources={"limits": {"memory": "64Mi"}},
    )
    # The real trainer: importing scikit-learn, SciPy and pandas alone needs more than 64Mi.
    create(kube, ns, body)
    job = wait_phase(kube, ns, "hungry", "Failed", 90)
    ready = condition(job, "Ready")
    assert ready is not None and ready["reason"] == "BackoffLimitExceeded"
    assert "OOMKilled" in ready["message"], ready["message"]
    (pod,) = training_pods(kube, ns)
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)


def test_pod_deleted_from_outside_counts_as_a_failed_attempt(
    kube: Kube, ns: str, datasets: dict[str, str]
) -> None:
    body = training_job("victim", datasets["iris.csv"], backoffLimit=0)
    del body["spec"]["estimator"]
    body["spec"]["command"] = ["python3", "-c", "import time; time.sleep(120)"]
    create(kube, ns, body)
    wait_for(lambda: training_pods(kube, ns), 30, "the victim pod")
    kube.core.delete_namespaced_pod("victim-1-1", ns, grace_period_seconds=0)
    job = wait_phase(kube, ns, "victim", "Failed", 60)
    ready = condition(job, "Ready")
    assert ready is not None and ready["reason"] == "BackoffLimitExceeded"
    assert "PodDeleted" in ready["message"]


# --- the operator dies ---------------------------------------------------------------------


def test_a_pod_the_namespace_quota_refuses_stalls_the_job_visibly_and_the_run_follows(
    kube: Kube, ns: str, datasets: dict[str, str]
) -> None:
    """An API error during a reconcile (here a ResourceQuota allowing no pods) reaches the
    TrainingJob as a Stalled condition naming the cause and a Warning Event, and loses
    nothing: once the quota goes, the same run trains and registers once."""
    kube.core.create_namespaced_resource_quota(
        ns, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    )
    create(kube, ns, training_job("iris", datasets["iris.csv"]))

    def stalled() -> dict[str, Any] | None:
        found = condition(get(kube, ns, "trainingjobs", "iris") or {}, "Stalled")
        return found if found and found.get("status") == "True" else None

    found = wait_for(stalled, 60, "TrainingJob Stalled", interval=0.5)
    print("Stalled:", found)
    assert found["reason"] == "Forbidden", found
    assert "exceeded quota: no-pods" in found["message"], found
    warnings = kube.core.list_namespaced_event(
        ns, field_selector="type=Warning,involvedObject.name=iris"
    ).items
    assert any(e.reason == "Forbidden" and "no-pods" in e.message for e in warnings), [
        (e.reason, e.message) for e in warnings
    ]
    assert training_pods(kube, ns) == []
    kube.core.delete_namespaced_resource_quota("no-pods", ns)
    lifted = time.monotonic()
    wait_approved(kube, ns, "iris-v1", timeout=180)
    print(f"quota lifted -> iris-v1 Approved in {time.monotonic() - lifted:.1f} s")
    assert [p.metadata.name for p in training_pods(kube, ns)] == ["iris-1-1"]
    job = get(kube, ns, "trainingjobs", "iris") or {}
    assert [r["run"] for r in job["status"]["runs"]] == [1]
    assert (condition(job, "Stalled") or {}).get("status") != "True", job["status"]


def test_operator_killed_mid_run_creates_no_duplicate_pod_or_version(
    kube: Kube, ns: str, datasets: dict[str, str], operator: OperatorProcess
) -> None:
    create(kube, ns, training_job("iris", datasets["iris.csv"]))
    wait_for(lambda: training_pods(kube, ns), 30, "the first training pod", interval=0.05)
    operator.kill()
    time.sleep(1)
    operator.start()
    wait_approved(kube, ns, "iris-v1")
    # A retrain request, with a kill right after the operator has seen it.
    custom(kube).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "trainingjobs",
        "iris",
        {"metadata": {"annotations": {"kiln.dev/retrain": "again"}}},
    )
    wait_for(lambda: len(training_pods(kube, ns)) == 2, 30, "the second pod", interval=0.05)
    operator.kill()
    operator.start()
    wait_approved(kube, ns, "iris-v2")
    wait_phase(kube, ns, "iris", "Succeeded", 30)
    time.sleep(3)  # give a duplicate every chance to appear
    assert sorted(p.metadata.name for p in training_pods(kube, ns)) == ["iris-1-1", "iris-2-1"]
    assert sorted(v["metadata"]["name"] for v in versions(kube, ns)) == ["iris-v1", "iris-v2"]


@pytest.mark.parametrize(("component", "down_seconds"), [("kube-apiserver", 3), ("etcd", 5)])
def test_a_run_survives_a_control_plane_outage_and_a_retrain_follows(
    kube: Kube,
    ns: str,
    datasets: dict[str, str],
    operator: OperatorProcess,
    component: str,
    down_seconds: float,
) -> None:
    """The apiserver, or etcd behind it, goes away mid-run: the kubelet keeps the pod, every
    API call fails meanwhile, the operator keeps retrying without a crash loop and its
    watches recover, the run is registered once, and a retrain after it runs once."""
    if not kube.local:
        pytest.fail(f"this scenario stops the dev cluster's {component}; run it on the dev cluster")
    from kilndev.cluster import Cluster

    cluster = Cluster()
    create(kube, ns, training_job("iris", datasets["iris.csv"]))
    wait_for(lambda: training_pods(kube, ns), 30, "the first training pod", interval=0.1)
    assert cluster.stop_component(component)
    time.sleep(down_seconds)
    cluster.start_component(component)
    back = time.monotonic()
    wait_approved(kube, ns, "iris-v1", timeout=180)
    custom(kube).patch_namespaced_custom_object(
        GROUP, VERSION, ns, "trainingjobs", "iris",
        {"metadata": {"annotations": {"kiln.dev/retrain": f"after-{component}"}}},
    )  # fmt: skip
    wait_approved(kube, ns, "iris-v2", timeout=180)
    print(f"{component} back -> iris-v2 Approved in {time.monotonic() - back:.1f} s")
    assert operator.process is not None and operator.process.poll() is None, "operator exited"
    assert sorted(p.metadata.name for p in training_pods(kube, ns)) == ["iris-1-1", "iris-2-1"]
    assert sorted(v["metadata"]["name"] for v in versions(kube, ns)) == ["iris-v1", "iris-v2"]
    assert "RunSkipped" not in events(kube, ns, "iris")


def test_random_operator_kills_during_runs_and_retrains_apply_each_request_once(
    kube: Kube, ns: str, datasets: dict[str, str], operator: OperatorProcess
) -> None:
    """Three TrainingJobs, each retrained twice, while the operator is SIGKILLed at random
    moments (seeded, printed): afterwards every job has exactly runs 1..3, one pod per run
    and one Approved ModelVersion per run, and no request was skipped or run twice."""
    seed = secrets.randbelow(10_000)
    rng = random.Random(seed)
    jobs = ["kill-a", "kill-b", "kill-c"]
    stop = threading.Event()
    kills: list[float] = []

    def killer() -> None:
        while not stop.wait(rng.uniform(0.5, 3.0)):
            operator.kill()
            kills.append(time.monotonic())
            time.sleep(rng.uniform(0.1, 1.0))
            operator.start()

    for name in jobs:
        create(kube, ns, training_job(name, datasets["iris.csv"], model=name))
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()

    def state() -> str:
        """What a failure needs to be understood: the seed, every job's runs and events."""
        lines = [f"seed {seed}, {len(kills)} SIGKILLs"]
        for name in jobs:
            status = (get(kube, ns, "trainingjobs", name) or {}).get("status") or {}
            runs = [(r["run"], r.get("trigger"), r.get("phase")) for r in status.get("runs", [])]
            lines.append(f"{name}: runs {runs} retrainHandled {status.get('retrainHandled')!r}")
            lines.append(f"  events: {events(kube, ns, name)}")
        return "\n".join([*lines, "operator log tail:", operator.log_tail(3000)])

    try:
        for n in (1, 2, 3):
            for name in jobs:
                try:
                    wait_approved(kube, ns, f"{name}-v{n}", timeout=240)
                except AssertionError as e:
                    raise AssertionError(f"{e}\n{state()}") from None
            if n < 3:
                for name in jobs:
                    custom(kube).patch_namespaced_custom_object(
                        GROUP, VERSION, ns, "trainingjobs", name,
                        {"metadata": {"annotations": {"kiln.dev/retrain": f"chaos-{n}"}}},
                    )  # fmt: skip
    finally:
        stop.set()
        thread.join(timeout=30)
        if operator.process is None or operator.process.poll() is not None:
            operator.start()
    last_kill = kills[-1] if kills else time.monotonic()
    for name in jobs:
        wait_phase(kube, ns, name, "Succeeded", 120)
    settled = time.monotonic() - last_kill
    time.sleep(3)  # give a duplicate every chance to appear
    pods = sorted(p.metadata.name for p in training_pods(kube, ns))
    assert pods == sorted(f"{j}-{n}-1" for j in jobs for n in (1, 2, 3)), (seed, pods)
    names = sorted(v["metadata"]["name"] for v in versions(kube, ns))
    assert names == sorted(f"{j}-v{n}" for j in jobs for n in (1, 2, 3)), (seed, names)
    for name in jobs:
        job = get(kube, ns, "trainingjobs", name) or {}
        runs = [r["run"] for r in (job.get("status") or {}).get("runs") or []]
        assert runs == sorted(set(runs)) and max(runs) == 3, (seed, name, runs)
        assert "RunSkipped" not in events(kube, ns, name), (seed, name)
    print(f"seed {seed}: {len(kills)} SIGKILLs, settled {settled:.1f} s after the last")
    assert kills, "the operator was never killed"


# --- validation at apply time --------------------------------------------------------------


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_trainingjob_is_rejected_naming_the_field(
    kube: Kube, namespace: str, crds: None, path: Path
) -> None:
    expected = yaml.safe_load(path.read_text())["metadata"]["annotations"][
        "test.kiln.dev/expected-error"
    ]
    result = kube.kubectl("apply", "-n", namespace, "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted"
    assert expected in result.stderr, result.stderr
    assert (
        custom(kube).list_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs")[
            "items"
        ]
        == []
    )


def test_there_are_at_least_fifteen_invalid_examples() -> None:
    assert len(INVALID) >= 15
