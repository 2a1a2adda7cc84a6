"""kiln-serve with a baseline and data capture into a real SeaweedFS S3 on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.ports import free_port
from tests.support.s3 import SeaweedS3, seaweedfs_s3
from tests.support.serve_process import ServerProcess
from tests.support.serving import infer_body, iris_logistic_regression, write_skops

from kiln.contract.monitoring import (
    INFERENCE_ID_HEADER,
    Baseline,
    Distribution,
    FeatureProfile,
    FeedbackRecord,
    PredictionRecord,
)

pytestmark = pytest.mark.component
__all__ = ["seaweedfs_s3"]

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
ROW = [5.1, 3.5, 1.4, 0.2]


def write_baseline(directory: Path) -> tuple[Path, str]:
    baseline = Baseline(
        rows=150,
        features=[
            FeatureProfile(
                name=name,
                kind="numeric",
                distribution=Distribution(edges=[2.0, 5.0], shares=[0.3, 0.4, 0.3], count=150),
            )
            for name in FEATURES
        ],
        predictions=Distribution(labels=["0", "1", "2"], shares=[1 / 3] * 3, count=150),
    )
    path = directory / "baseline.json"
    path.write_bytes(baseline.model_dump_json().encode())
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    _, text, _ = server.request("GET", "/metrics")
    total = 0.0
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def objects(s3: SeaweedS3, bucket: str) -> dict[str, bytes]:
    client = s3.client()
    found: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def start(tmp_path: Path, env: dict[str, str], *extra: str) -> ServerProcess:
    artifact, digest = write_skops(iris_logistic_regression(), tmp_path)
    baseline, baseline_digest = write_baseline(tmp_path)
    server = ServerProcess(
        artifact,
        digest,
        f"--baseline-uri={baseline}",
        f"--baseline-sha256={baseline_digest}",
        "--namespace=ml",
        "--deployment=iris-md",
        "--pod-name=iris-md-canary-0",
        *extra,
        env={**os.environ, **env},
    )
    server.wait_ready()
    return server


def test_two_workers_capture_every_request_and_feedback_into_s3(
    seaweedfs_s3: SeaweedS3, tmp_path: Path
) -> None:
    bucket = seaweedfs_s3.create_bucket("capture-" + os.urandom(3).hex())
    server = start(
        tmp_path,
        seaweedfs_s3.env(),
        f"--capture-destination=s3://{bucket}/kiln",
        "--capture-max-records=16",
        "--capture-flush-seconds=0.5",
        "--workers=2",
    )
    try:
        ids = []
        for index in range(40):
            status, payload, headers = server.request(
                "POST", "/v2/models/iris/infer", infer_body([ROW, ROW], id=f"req-{index}")
            )
            assert status == 200
            assert json.loads(payload)["id"] == headers[INFERENCE_ID_HEADER] == f"req-{index}"
            ids.append(f"req-{index}")
        status, payload, headers = server.request(
            "POST", "/v2/models/iris/infer", infer_body([ROW])
        )
        generated = json.loads(payload)["id"]
        assert headers[INFERENCE_ID_HEADER] == generated and len(generated) == 32
        labels = {"labels": [{"id": i, "row": 1, "label": 0} for i in ids[:10]]}
        status, payload, _ = server.request(
            "POST", "/v2/models/iris/feedback", json.dumps(labels).encode()
        )
        assert (status, json.loads(payload)) == (200, {"accepted": 10})
        deadline = time.monotonic() + 20
        while metric(server, "kiln_capture_records_total", result="written") < 91:
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.2)
        assert metric(server, "kiln_capture_records_total", result="dropped") == 0
        assert metric(server, "kiln_feedback_records_total") == 10
        # Drift bins of the whole pod (both workers), from the baseline's own edges.
        assert metric(server, "kiln_feature_bin_total", feature="petal_length", bin="0") == 81
        assert metric(server, "kiln_feature_bin_total", feature="sepal_length", bin="2") == 81
        assert metric(server, "kiln_prediction_bin_total", bin="0") == 81
        assert metric(server, "kiln_drift_unmonitored_features") == 0
    finally:
        assert server.stop() == 0
    stored = objects(seaweedfs_s3, bucket)
    predictions = [k for k in stored if "/predictions/" in k]
    feedback = [k for k in stored if "/feedback/" in k]
    assert all(k.startswith("kiln/ml/iris-md/") for k in stored)
    assert {k.rsplit("/", 1)[1].split("-2")[0] for k in predictions} <= {
        "iris-md-canary-0-w0",
        "iris-md-canary-0-w1",
    }
    records = [
        PredictionRecord.model_validate_json(line)
        for key in predictions
        for line in stored[key].splitlines()
    ]
    assert sorted((r.id, r.row) for r in records if r.id != generated) == sorted(
        (i, row) for i in ids for row in (0, 1)
    )
    assert {r.track for r in records} == {"canary"} and {r.version for r in records} == {"7"}
    assert records[0].inputs == dict(zip(("f0", "f1", "f2", "f3"), ROW, strict=True))
    labels_written = [
        FeedbackRecord.model_validate_json(line)
        for key in feedback
        for line in stored[key].splitlines()
    ]
    assert sorted(r.id for r in labels_written) == sorted(ids[:10])


def test_an_unreachable_store_never_fails_requests_and_drops_are_counted(tmp_path: Path) -> None:
    down: dict[str, Any] = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens here
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    server = start(
        tmp_path,
        down,
        "--capture-destination=s3://nowhere/kiln",
        "--capture-max-records=5",
        "--capture-queue=10",
    )
    try:
        started = time.monotonic()
        for _ in range(40):
            status, _, _ = server.request("POST", "/v2/models/iris/infer", infer_body([ROW]))
            assert status == 200
        assert time.monotonic() - started < 10
        assert metric(server, "kiln_capture_records_total", result="written") == 0
        dropped = metric(server, "kiln_capture_records_total", result="dropped")
        depth = metric(server, "kiln_capture_queue_depth")
        # 40 records: 5 held by the writer for its retries (once it has polled), at most
        # 10 queued, the rest dropped.
        assert depth <= 10 and dropped >= 25 and dropped + depth in (35, 40)
    finally:
        server.stop()
