"""Monitoring end to end: a TrainingJob's baseline, kiln-serve's drift series and capture,
ground truth sent back, and the operator's verdicts — real Prometheus, real S3.

iris is trained by the real trainer (its baseline.json is the trainer's), served by two
kiln-serve pods with capture on, and judged by the operator over a 60 s window.
"""

from __future__ import annotations

import csv
import json
import os
import random
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.e2e.conftest import Kube
from tests.support.builders import TrainingJobBuilder
from tests.support.k8s import wait_for
from tests.support.matchers import condition, has_condition
from tests.support.operator_process import OperatorProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kiln.dev", "v1alpha1"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
WINDOW_SECONDS = 60


def iris_rows() -> list[dict[str, Any]]:
    with (ROOT / "examples/data/iris.csv").open() as f:
        return [
            {**{k: float(row[k]) for k in FEATURES}, "species": row["species"]}
            for row in csv.DictReader(f)
        ]


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(kube: Kube) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=kube.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=kube.s3_access_key,
        aws_secret_access_key=kube.s3_secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    name = f"monitoring-e2e-{secrets.token_hex(3)}"
    s3.create_bucket(Bucket=name)
    rows = iris_rows()
    s3.upload_file(str(ROOT / "examples/data/iris.csv"), name, "data/iris.csv")
    # The same table with the labels shuffled: a model of it predicts noise.
    labels = [r["species"] for r in rows]
    random.Random(3).shuffle(labels)
    lines = [",".join([*FEATURES, "species"])]
    lines += [
        ",".join([*(str(r[k]) for k in FEATURES), y]) for r, y in zip(rows, labels, strict=True)
    ]
    s3.put_object(Bucket=name, Key="data/iris-shuffled.csv", Body="\n".join(lines).encode())
    return name


@pytest.fixture
def operator(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kube.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "kiln-s3"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": kube.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": kube.s3_secret_key,
            },
        },
    )
    env = {
        **os.environ,
        "KILN_PROMETHEUS_URL": kube.prometheus_url,
        "KILN_NAMESPACES": namespace,
        "KILN_S3_ENDPOINT": kube.s3_endpoint,
        "AWS_ACCESS_KEY_ID": kube.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": kube.s3_secret_key,
    }
    process = OperatorProcess(kube.kubeconfig, tmp_path / "operator.log", env).start()
    try:
        yield process
    finally:
        process.stop()
        print(process.log_tail())


def custom(kube: Kube) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api)


def train(kube: Kube, namespace: str, name: str, dataset: str, bucket: str) -> str:
    """A TrainingJob of model iris on `dataset`; the name of the version it registered."""
    custom(kube).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "trainingjobs",
        TrainingJobBuilder(name)
        .for_create()
        .estimator("sklearn.ensemble.RandomForestClassifier")
        .params(n_estimators=20, max_depth=4)
        .dataset(f"s3://{bucket}/{dataset}")
        .evaluation(testSize=0.25, seed=7, metrics=["accuracy", "f1_macro"])
        .backoff_limit(1)
        .output(f"s3://{bucket}/models", credentialsSecretRef={"name": "kiln-s3"})
        .obj(),
    )

    def registered() -> str | None:
        body = custom(kube).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "trainingjobs", name
        )
        status = body.get("status") or {}
        assert status.get("phase") != "Failed", status
        return status.get("modelVersion") if status.get("phase") == "Succeeded" else None

    return str(wait_for(registered, 240, f"{name} registered a version", interval=1))


def model_version(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        custom(kube).get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", name)
    )


def deploy(
    kube: Kube, namespace: str, bucket: str, capture: dict[str, Any] | None = None, **spec: Any
) -> None:
    monitoring = {
        "windowSeconds": WINDOW_SECONDS,
        "intervalSeconds": 10,
        "drift": {"psiThreshold": 0.2, "minSamples": 100},
        "quality": {"minLabelled": 100, "maxDrop": 0.1},
        "capture": {
            "destination": f"s3://{bucket}/capture",
            "flushSeconds": 2,
            "maxRecordsPerObject": 200,
            **(capture or {}),
        },
    }
    custom(kube).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "modeldeployments",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": "iris"},
            "spec": {
                "model": "iris",
                "followLatestApproved": True,
                "replicas": 2,
                "artifactStore": {"credentialsSecretRef": {"name": "kiln-s3"}},
                "monitoring": monitoring,
                **spec,
            },
        },
    )


def status(kube: Kube, namespace: str) -> dict[str, Any]:
    body = custom(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", "iris"
    )
    return dict(body.get("status") or {})


def wait_status(
    kube: Kube,
    namespace: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        nonlocal last
        last = status(kube, namespace)
        return last if predicate(last) else None

    try:
        return wait_for(probe, timeout, what, interval=1)
    except AssertionError as e:
        raise AssertionError(f"{e}\nstatus: {json.dumps(last, indent=1, default=str)}") from None


def serving(kube: Kube, namespace: str, version: str) -> str:
    wait_status(
        kube,
        namespace,
        lambda s: s.get("stableVersion") == version and has_condition(s, "Ready", "True"),
        180,
        f"{version} serving",
    )
    svc = kube.core.read_namespaced_service("iris", namespace)
    return f"http://{svc.spec.cluster_ip}:80"


def infer(url: str, row: dict[str, Any], request_id: str | None) -> tuple[int, dict[str, Any], str]:
    """One single-row request with one input per column: (code, body, id header)."""
    document: dict[str, Any] = {
        "inputs": [
            {"name": k, "shape": [1], "datatype": "FP64", "data": [row[k]]} for k in FEATURES
        ]
    }
    if request_id is not None:
        document["id"] = request_id
    request = urllib.request.Request(
        f"{url}/v2/models/iris/infer",
        data=json.dumps(document).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return (
                response.status,
                json.load(response),
                response.headers.get("x-kiln-inference-id", ""),
            )
    except urllib.error.HTTPError as e:
        return e.code, {}, ""


def predicted(body: dict[str, Any]) -> Any:
    output = next(o for o in body["outputs"] if o["name"] == "predict")
    return output["data"][0]


def feedback(url: str, labels: list[dict[str, Any]]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/v2/models/iris/feedback",
        data=json.dumps({"labels": labels}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return dict(json.load(response))


def captured(s3: Any, bucket: str, namespace: str) -> list[dict[str, Any]]:
    """Every prediction record kiln-serve has written for this deployment so far."""
    records: list[dict[str, Any]] = []
    prefix = f"capture/{namespace}/iris/predictions/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            text = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
            records += [json.loads(line) for line in text.splitlines() if line.strip()]
    return records


def send(url: str, rows: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """Each row once, with ids `<prefix>-<i>`: id -> predicted class."""
    predictions: dict[str, Any] = {}
    for i, row in enumerate(rows):
        code, body, header = infer(url, row, f"{prefix}-{i}")
        assert code == 200, (code, body)
        assert body["id"] == header == f"{prefix}-{i}", (body, header)
        predictions[body["id"]] = predicted(body)
    return predictions


# --- the scenarios -------------------------------------------------------------------------


def test_capture_feedback_drift_and_quality_of_a_trained_iris(
    kube: Kube, namespace: str, operator: OperatorProcess, s3: Any, bucket: str
) -> None:
    version = train(kube, namespace, "iris", "data/iris.csv", bucket)
    baseline = model_version(kube, namespace, version)["spec"]["baseline"]
    assert baseline["uri"].startswith(f"s3://{bucket}/") and len(baseline["sha256"]) == 64
    deploy(kube, namespace, bucket)
    url = serving(kube, namespace, version)
    rows = iris_rows()
    rng = random.Random(11)

    # 1. Captured with ids; the response carries the id, given or generated.
    code, body, header = infer(url, rows[0], None)
    assert code == 200 and body["id"] and body["id"] == header, (body, header)
    sample = [rng.choice(rows) for _ in range(200)]
    predictions = send(url, sample, "train-dist")
    wanted = set(predictions)
    records = wait_for(
        lambda: (r := captured(s3, bucket, namespace)) and wanted <= {x["id"] for x in r} and r,
        60,
        "the 200 requests captured in S3",
    )
    by_id = {r["id"]: r for r in records}
    assert all(by_id[i]["version"] == version and by_id[i]["track"] == "stable" for i in wanted)
    assert by_id["train-dist-0"]["inputs"]["petal_length"] == sample[0]["petal_length"]
    assert by_id["train-dist-0"]["prediction"] == predictions["train-dist-0"]

    # Ground truth for the 200 ids: live accuracy is what the test computes itself.
    truth = [{"id": f"train-dist-{i}", "label": row["species"]} for i, row in enumerate(sample)]
    assert feedback(url, truth)["accepted"] == 200
    expected = sum(predictions[t["id"]] == t["label"] for t in truth) / len(truth)
    current = wait_status(
        kube,
        namespace,
        lambda s: ((s.get("monitoring") or {}).get("quality") or {}).get("labelled", 0) >= 200,
        90,
        "200 labelled predictions in the live quality",
    )
    quality = current["monitoring"]["quality"]
    assert quality["metric"] == "accuracy"
    assert abs(quality["live"] - expected) <= 0.01, (quality, expected)
    assert has_condition(current, "QualityDegraded", "False"), current

    # 2. Traffic from the training distribution, steadily: measured, and not drifting.
    stop, shift = threading.Event(), threading.Event()

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            row = dict(rng.choice(rows))
            if shift.is_set():
                row["petal_length"] += 3.0
            infer(url, row, f"steady-{i}")
            i += 1
            stop.wait(0.05)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        current = wait_status(
            kube,
            namespace,
            lambda s: has_condition(s, "Drifting", "True") or has_condition(s, "Drifting", "False"),
            2 * WINDOW_SECONDS,
            "a drift verdict on in-distribution traffic",
        )
        assert has_condition(current, "Drifting", "False"), current["monitoring"]["drift"]
        # One feature shifted: Drifting within two windows, naming it and only it.
        shift.set()
        current = wait_status(
            kube,
            namespace,
            lambda s: has_condition(s, "Drifting", "True"),
            2 * WINDOW_SECONDS + 30,
            "Drifting=True after petal_length moved by 3 cm",
        )
    finally:
        stop.set()
        sender.join(timeout=10)
    drift = current["monitoring"]["drift"]
    assert drift["driftingFeatures"] == ["petal_length"], drift
    assert "petal_length" in (condition(current, "Drifting") or {})["message"]

    # 3. Labels that contradict the predictions: QualityDegraded with the numbers.
    later = send(url, [rng.choice(rows) for _ in range(150)], "contradicted")
    feedback(url, [{"id": i, "label": other(p)} for i, p in later.items()])
    current = wait_status(
        kube,
        namespace,
        lambda s: has_condition(s, "QualityDegraded", "True"),
        90,
        "QualityDegraded=True after contradicting labels",
    )
    quality = current["monitoring"]["quality"]
    assert quality["live"] < quality["training"] - 0.1, quality
    message = (condition(current, "QualityDegraded") or {})["message"]
    assert "accuracy" in message and str(quality["labelled"]) in message, message


def other(label: str) -> str:
    return next(c for c in ("setosa", "versicolor", "virginica") if c != label)


def capture_counter(kube: Kube, namespace: str, result: str) -> float:
    """kiln_capture_records_total{result} summed over the deployment's pods (Prometheus)."""
    query = f'sum(kiln_capture_records_total{{namespace="{namespace}",result="{result}"}})'
    url = f"{kube.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        result_list = json.load(response)["data"]["result"]
    return float(result_list[0]["value"][1]) if result_list else 0.0


def test_capture_survives_an_s3_outage_without_failing_a_request(
    kube: Kube, namespace: str, operator: OperatorProcess, s3: Any, bucket: str
) -> None:
    if not kube.local:
        pytest.fail("this scenario stops the dev cluster's S3; run it on the dev cluster")
    from kilndev.cluster import Cluster

    version = train(kube, namespace, "iris", "data/iris.csv", bucket)
    # A small queue, so that an outage of a few seconds fills it.
    deploy(kube, namespace, bucket, capture={"queueRecords": 20})
    url = serving(kube, namespace, version)
    rows = iris_rows()
    before = latencies(url, rows, "before", 100)
    cluster = Cluster()
    cluster.stop_component("seaweedfs")
    try:
        during = latencies(url, rows, "outage", 300)
        wait_for(
            lambda: capture_counter(kube, namespace, "dropped") > 0,
            60,
            "dropped capture records counted while S3 is down",
        )
    finally:
        cluster.start_component("seaweedfs")
    print(
        f"p99 before {quantile(before, 0.99) * 1000:.1f} ms, during the outage "
        f"{quantile(during, 0.99) * 1000:.1f} ms"
    )
    # The queue is still full of the outage's records when S3 returns, so requests right
    # after it may be dropped (and counted); capture has resumed once new ones land.
    sent: set[str] = set()

    def resumed() -> bool:
        batch = len(sent) // 20
        sent.update(send(url, [rng_row(rows, i) for i in range(20)], f"after-{batch}"))
        return bool(sent & {r["id"] for r in captured(s3, bucket, namespace)})

    wait_for(resumed, 120, "capture resumed once S3 is back", interval=2)


def rng_row(rows: list[dict[str, Any]], i: int) -> dict[str, Any]:
    return rows[(i * 37) % len(rows)]


def latencies(url: str, rows: list[dict[str, Any]], prefix: str, n: int) -> list[float]:
    """n requests one after another, every one answered 200: their latencies (s)."""
    seconds: list[float] = []
    for i in range(n):
        started = time.monotonic()
        code, body, _ = infer(url, rng_row(rows, i), f"{prefix}-{i}")
        seconds.append(time.monotonic() - started)
        assert code == 200, (prefix, i, code, body)
    return seconds


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_a_canary_predicting_differently_is_rolled_back_by_the_drift_check_alone(
    kube: Kube, namespace: str, operator: OperatorProcess, s3: Any, bucket: str
) -> None:
    version = train(kube, namespace, "iris", "data/iris.csv", bucket)
    canary = {
        "steps": [50],
        "intervalSeconds": 20,
        "minRequests": 20,
        "failureLimit": 1,
        "inconclusiveLimit": 3,
        "builtinChecks": {
            "latency": {"quantile": 0.99, "maxSeconds": 0.5},
            # Predictions only: the traffic below is not the training mix, on purpose.
            "drift": {"enabled": True, "maxPsi": 0.2, "minRows": 100, "inputs": False},
        },
    }
    deploy(kube, namespace, bucket, canary=canary)
    url = serving(kube, namespace, version)
    # Most requests are setosa-like, as real traffic is rarely balanced: a right model
    # predicts mostly setosa, one trained on shuffled labels spreads its answers over all
    # three classes (at 60 % setosa the PSI was once 0.197, on the bound). Balanced
    # traffic would hide it: the check compares distributions, not rows (docs/monitoring.md).
    rows = iris_rows()
    setosa = [r for r in rows if r["species"] == "setosa"]
    skewed = setosa * 6 + [r for r in rows if r["species"] != "setosa"]  # 86 % setosa
    stop = threading.Event()
    codes: dict[int, int] = {}

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            code, _, _ = infer(url, rng_row(skewed, i), None)
            codes[code] = codes.get(code, 0) + 1
            i += 1
            stop.wait(0.02)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        shuffled = train(kube, namespace, "iris-shuffled", "data/iris-shuffled.csv", bucket)
        final = wait_status(
            kube,
            namespace,
            lambda s: (
                s.get("phase") in ("RolledBack", "Failed")
                or (s.get("phase") == "Promoted" and s.get("stableVersion") == shuffled)
            ),
            300,
            f"the canary of {shuffled} judged",
        )
    finally:
        stop.set()
        sender.join(timeout=10)
    analysis = json.dumps(final.get("analysis"), indent=1)
    assert (final["phase"], final.get("failedVersion")) == ("RolledBack", shuffled), analysis
    assert final["stableVersion"] == version
    last_step = [a for a in final["analysis"] if a["step"] == final["analysis"][-1]["step"]]
    outcomes = {a["check"]: a["outcome"] for a in last_step}
    assert outcomes.get("error-rate") == "Successful", final["analysis"]
    assert outcomes.get("latency-p99") == "Successful", final["analysis"]
    drift = [a for a in final["analysis"] if a["check"] == "drift-predictions"]
    assert drift and drift[-1]["outcome"] == "Failed" and drift[-1]["value"] > 0.2, drift
    print(f"rolled back by: {drift[-1]['message']}")
    assert set(codes) == {200}, codes
