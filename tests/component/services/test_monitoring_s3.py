"""The monitoring reader against a real S3 server (SeaweedFS on loopback): the capture
layout listed by hour prefix, records joined, the baseline read and verified."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support.ports import free_port
from tests.support.s3 import SeaweedS3

from kiln.api.model_deployment import ModelDeployment
from kiln.api.model_version import ModelVersion
from kiln.api.monitoring import MonitoringSpec
from kiln.contract.monitoring import (
    Baseline,
    FeedbackRecord,
    PredictionRecord,
    object_key,
)
from kiln.services.monitoring import MonitoringReader
from kiln.store import parse_uri

pytestmark = pytest.mark.component

NOW = datetime(2026, 3, 1, 13, 1, tzinfo=UTC)


def md() -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": "iris", "namespace": "prod"},
            "spec": {"model": "iris", "followLatestApproved": True},
        }
    )


def put(s3: SeaweedS3, uri: str, data: bytes) -> None:
    parsed = parse_uri(uri)
    s3.client().put_object(Bucket=parsed.location, Key=parsed.s3_key, Body=data)


def lines(records: list[Any]) -> bytes:
    return "\n".join(r.model_dump_json() for r in records).encode()


async def test_the_join_and_the_baseline_from_s3(seaweedfs_s3: SeaweedS3) -> None:
    s3 = seaweedfs_s3
    s3.create_bucket("capture-mon")
    destination = "s3://capture-mon/serving"
    spec = MonitoringSpec.model_validate(
        {"windowSeconds": 300, "capture": {"destination": destination, "flushSeconds": 10}}
    )
    # One object from the previous hour whose records reach into the window, one in it.
    early = NOW - timedelta(seconds=305)
    late = NOW - timedelta(seconds=60)
    for first, ids in ((early, range(0, 30)), (late, range(30, 60))):
        predictions = [
            PredictionRecord(
                id=f"r{i}", time=first + timedelta(seconds=6), model="iris", version="iris-v1",
                track="stable", inputs={"x": 1}, prediction="a",
            )
            for i in ids
        ]  # fmt: skip
        key = object_key(destination, "prod", "iris", "predictions", first, "pod-a", 1)
        put(s3, key, lines(predictions))
    labels = [FeedbackRecord(id=f"r{i}", time=NOW - timedelta(seconds=5), label="a")
              for i in range(60)]  # fmt: skip
    put(s3, object_key(destination, "prod", "iris", "feedback", NOW, "pod-a", 1), lines(labels))

    reader = MonitoringReader(None, None, None)  # type: ignore[arg-type]
    result = reader.read_join(s3.env(), md(), "iris-v1", spec, NOW - timedelta(seconds=300), NOW)
    assert result.error is None and result.joined is not None
    assert result.joined.captured == 60 and len(result.joined.pairs) == 60

    # The baseline: read through kiln.store, verified by its digest, cached by it.
    data = Baseline(rows=3, features=[]).model_dump_json().encode()
    put(s3, "s3://capture-mon/models/baseline.json", data)
    version = ModelVersion.model_validate(
        {
            "metadata": {"name": "iris-v1"},
            "spec": {
                "model": "iris",
                "version": 1,
                "artifact": {"uri": "s3://capture-mon/models/m.skops", "sha256": "c" * 64},
                "baseline": {
                    "uri": "s3://capture-mon/models/baseline.json",
                    "sha256": hashlib.sha256(data).hexdigest(),
                },
            },
        }
    )
    baseline, problem = await reader.baseline(version, s3.env(), "")
    assert problem is None and baseline is not None and baseline.rows == 3
    tampered = version.model_copy(deep=True)
    assert tampered.spec.baseline is not None
    tampered.spec.baseline.sha256 = "d" * 64
    baseline, problem = await reader.baseline(tampered, s3.env(), "")
    assert baseline is None and problem is not None and problem[0] == "BaselineIntegrityError"


def test_a_store_that_is_down_is_an_error(seaweedfs_s3: SeaweedS3) -> None:
    env = {**seaweedfs_s3.env(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    spec = MonitoringSpec.model_validate({"capture": {"destination": "s3://capture-mon/x"}})
    reader = MonitoringReader(None, None, None)  # type: ignore[arg-type]
    result = reader.read_join(env, md(), "iris-v1", spec, NOW - timedelta(seconds=300), NOW)
    assert result.error is not None and result.joined is None
