"""The monitoring environment of kiln-serve pods (baseline, capture, identity)."""

from __future__ import annotations

from typing import Any

import pytest

from kiln.api.model_deployment import ModelDeployment
from kiln.api.model_version import ModelVersion
from kiln.builders import serving
from kiln.builders.serving import ServingDefaults
from kiln.contract import monitoring as mc

pytestmark = pytest.mark.unit

SHA = "a" * 64
BASELINE_SHA = "b" * 64
DEFAULTS = ServingDefaults(image="kiln/server:test", s3_endpoint="http://s3.local:8333")
CAPTURE = {
    "destination": "s3://capture/iris",
    "sampleRate": 0.5,
    "maxRecordsPerObject": 200,
    "flushSeconds": 5,
    "queueRecords": 3000,
}


def md(**spec: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": "iris", "namespace": "prod", "uid": "uid-1", "generation": 1},
            "spec": {"model": "iris", "followLatestApproved": True, **spec},
        }
    )


def mv(*, baseline: bool = True) -> ModelVersion:
    spec: dict[str, Any] = {
        "model": "iris",
        "version": 2,
        "artifact": {"uri": "s3://models/iris/v2.skops", "sha256": SHA},
    }
    if baseline:
        spec["baseline"] = {"uri": "s3://models/iris/baseline.json", "sha256": BASELINE_SHA}
    return ModelVersion.model_validate({"metadata": {"name": "iris-v2"}, "spec": spec})


def env(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_baseline_is_given_whenever_the_version_has_one() -> None:
    e = env(serving.server_deployment(md(), "stable", mv(), 1, DEFAULTS))
    assert e[mc.ENV_BASELINE_URI] == "s3://models/iris/baseline.json"
    assert e[mc.ENV_BASELINE_SHA256] == BASELINE_SHA
    assert mc.ENV_CAPTURE_DESTINATION not in e and mc.ENV_POD_NAME not in e


def test_nothing_without_a_baseline_or_monitoring() -> None:
    e = env(serving.server_deployment(md(), "stable", mv(baseline=False), 1, DEFAULTS))
    monitoring_env = {
        mc.ENV_BASELINE_URI, mc.ENV_BASELINE_SHA256, mc.ENV_NAMESPACE, mc.ENV_DEPLOYMENT,
        mc.ENV_POD_NAME, mc.ENV_CAPTURE_DESTINATION,
    }  # fmt: skip
    assert not monitoring_env & set(e)


def test_capture_settings_identity_and_credentials() -> None:
    store = {
        "s3Endpoint": "http://seaweed:8333",
        "credentialsSecretRef": {"name": "s3-creds"},
    }
    d = serving.server_deployment(
        md(monitoring={"capture": CAPTURE}, artifactStore=store), "canary", mv(), 1, DEFAULTS
    )
    e = env(d)
    assert e[mc.ENV_CAPTURE_DESTINATION] == "s3://capture/iris"
    assert e[mc.ENV_CAPTURE_SAMPLE_RATE] == "0.5"
    assert e[mc.ENV_CAPTURE_MAX_RECORDS] == "200"
    assert e[mc.ENV_CAPTURE_FLUSH_SECONDS] == "5"
    assert e[mc.ENV_CAPTURE_QUEUE] == "3000"
    assert e[mc.ENV_DEPLOYMENT] == "iris"
    assert e[mc.ENV_NAMESPACE] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert e[mc.ENV_POD_NAME] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert e["KILN_TRACK"] == "canary"
    # The writes use the credentials the pods already get for the artifact.
    assert e["AWS_ENDPOINT_URL"] == "http://seaweed:8333"
    assert e["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "s3-creds"
    names = [x["name"] for x in d["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert len(names) == len(set(names))


def test_monitoring_without_capture_gives_identity_only() -> None:
    e = env(serving.server_deployment(md(monitoring={}), "stable", mv(), 1, DEFAULTS))
    assert e[mc.ENV_DEPLOYMENT] == "iris" and mc.ENV_CAPTURE_DESTINATION not in e
    disabled = {"monitoring": {"capture": {**CAPTURE, "enabled": False}}}
    e = env(serving.server_deployment(md(**disabled), "stable", mv(), 1, DEFAULTS))
    assert mc.ENV_CAPTURE_DESTINATION not in e


def test_the_manifest_is_deterministic() -> None:
    spec = {"monitoring": {"capture": CAPTURE}}
    a = serving.server_deployment(md(**spec), "stable", mv(), 2, DEFAULTS)
    b = serving.server_deployment(md(**spec), "stable", mv(), 2, DEFAULTS)
    assert a == b
