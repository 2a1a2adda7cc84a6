"""A mixed-type table with missing values, end to end on a real cluster.

examples/data/penguins.csv (text columns, numbers, 11 rows with empty cells) goes to S3;
the example TrainingJob trains it with no preparation written by hand (only its optional
overrides) -> an Approved ModelVersion whose input schema lists every column -> the example
ModelDeployment serves it -> tritonclient sends named BYTES and FP64/INT64 inputs and gets
exactly the predictions of the trained pipeline itself (downloaded from S3 and loaded with
the server's own loader). The operator runs on the host, as in test_canary.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
import yaml
from tests.e2e.conftest import Kube
from tests.e2e.test_canary import operator
from tests.e2e.test_training import custom, get
from tests.support.k8s import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kiln.dev", "v1alpha1"
EXAMPLE = ROOT / "examples/penguins"
PENGUINS = ROOT / "examples/data/penguins.csv"
COLUMNS = (
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
    "year",
)

__all__ = ["operator"]  # the fixture, shared with test_canary


def s3_client(kube: Kube) -> Any:
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=kube.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=kube.s3_access_key,
        aws_secret_access_key=kube.s3_secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )


def test_penguins_train_approve_serve_with_named_mixed_type_inputs(
    kube: Kube, namespace: str, operator: Path
) -> None:
    s3 = s3_client(kube)
    bucket = f"penguins-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(PENGUINS), bucket, "penguins.csv")

    # The examples as a newcomer applies them, pointed at this run's bucket and Secret
    # (the `operator` fixture creates `kiln-s3` in the namespace).
    job = yaml.safe_load((EXAMPLE / "trainingjob.yaml").read_text())
    job["metadata"] = {"name": "penguins", "namespace": namespace}
    job["spec"]["dataset"]["uri"] = f"s3://{bucket}/penguins.csv"
    job["spec"]["output"] = {
        "uri": f"s3://{bucket}/models",
        "credentialsSecretRef": {"name": "kiln-s3"},
    }
    custom(kube).create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", job)

    def approved() -> dict[str, Any] | None:
        mv = get(kube, namespace, "modelversions", "penguins-v1")
        state = ((mv or {}).get("status") or {}).get("approval", {}).get("state")
        assert state != "Rejected", mv
        return mv if state == "Approved" else None

    mv = wait_for(approved, 300, "an Approved penguins-v1", interval=1)

    # What was inferred is recorded in the ModelVersion.
    schema = mv["spec"]["inputSchema"]
    features = {f["name"]: f for f in schema["features"]}
    assert tuple(features) == COLUMNS
    assert features["island"]["type"] == "categorical"
    assert features["island"]["categories"] == ["Biscoe", "Dream", "Torgersen"]
    assert features["sex"]["nullable"] is True
    assert (features["sex"]["impute"], features["sex"]["fillValue"]) == ("constant", "unknown")
    assert features["year"]["type"] == "categorical"  # the example's override
    assert features["body_mass_g"]["type"] == "numeric" and features["body_mass_g"]["nullable"]
    assert schema["classes"] == ["Adelie", "Chinstrap", "Gentoo"]

    # ...and shown by the CLI (kubectl kiln schema).
    shown = subprocess.run(
        [sys.executable, "-m", "kiln.cli.main", "schema", "penguins-v1", "-n", namespace],
        env={**os.environ, "KUBECONFIG": str(kube.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    island = next(line for line in shown.splitlines() if line.startswith("island"))
    assert "categorical" in island and "Biscoe,Dream,Torgersen" in island

    # The trained pipeline itself, as the server loads it, predicts the expected answers.
    artifact = mv["spec"]["artifact"]
    key = artifact["uri"].removeprefix(f"s3://{bucket}/")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    from kiln.server.artifact import deserialise, verify_sha256
    from kiln.tabular.coerce import canonical_frame
    from kiln.tabular.schema import schema_of

    verify_sha256(data, artifact["sha256"])
    pipeline = deserialise(data, "skops", allow_pickle=False)
    tabular = schema_of(pipeline)
    assert tabular is not None
    table = pd.read_csv(PENGUINS)
    rows = table[table["sex"].notna()].iloc[::17].reset_index(drop=True)
    rows.loc[0, "bill_length_mm"] = np.nan  # a missing number travels as NaN in FP64
    expected = list(
        pipeline.predict(canonical_frame(tabular, {c: rows[c].tolist() for c in COLUMNS}))
    )

    md = yaml.safe_load((EXAMPLE / "modeldeployment.yaml").read_text())
    md["metadata"] = {"name": "penguins", "namespace": namespace}
    md["spec"]["replicas"] = 1
    md["spec"]["artifactStore"] = {"credentialsSecretRef": {"name": "kiln-s3"}}
    custom(kube).create_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", md)

    def serving() -> bool:
        status = (get(kube, namespace, "modeldeployments", "penguins") or {}).get("status") or {}
        assert status.get("phase") not in ("RolledBack", "Failed"), status
        return (
            status.get("phase") == "Promoted"
            and status.get("stableVersion") == "penguins-v1"
            and any(
                c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
            )
        )

    wait_for(serving, 240, "penguins-v1 serving", interval=1)
    service = kube.core.read_namespaced_service("penguins", namespace)
    url = f"http://{service.spec.cluster_ip}:80"

    import tritonclient.http as triton

    triton_client = triton.InferenceServerClient(url.removeprefix("http://"))
    try:
        wait_for(triton_client.is_server_ready, 60, "the server ready for the triton client")
        metadata = triton_client.get_model_metadata("penguins")
        assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
            ("island", "BYTES"),
            ("bill_length_mm", "FP64"),
            ("bill_depth_mm", "FP64"),
            ("flipper_length_mm", "FP64"),
            ("body_mass_g", "FP64"),
            ("sex", "BYTES"),
            ("year", "BYTES"),
        ]
        for binary in (True, False):
            inputs = []
            for name in COLUMNS:
                series = rows[name]
                if name in ("island", "sex"):
                    array = np.array([str(v) for v in series], dtype=object).reshape(-1, 1)
                    datatype = "BYTES"
                elif name == "year":  # a numeric code sent as a number
                    array, datatype = series.to_numpy(np.int64).reshape(-1, 1), "INT64"
                else:
                    array, datatype = series.to_numpy(np.float64).reshape(-1, 1), "FP64"
                tensor = triton.InferInput(name, list(array.shape), datatype)
                tensor.set_data_from_numpy(array, binary_data=binary)
                inputs.append(tensor)
            outputs = [triton.InferRequestedOutput("predict", binary_data=binary)]
            result = triton_client.infer("penguins", inputs, outputs=outputs)
            predicted = [
                p.decode() if isinstance(p, bytes) else p for p in result.as_numpy("predict")
            ]
            assert predicted == expected
    finally:
        triton_client.close()

    # The example request (nulls included) is served; a missing column is a 400 naming it.
    request = (EXAMPLE / "request.json").read_bytes()
    answer = json.loads(_post(f"{url}/v2/models/penguins/infer", request)[1])
    assert answer["outputs"][0]["data"] == ["Gentoo", "Chinstrap", "Adelie"]
    without_sex = json.loads(request)
    without_sex["inputs"] = [i for i in without_sex["inputs"] if i["name"] != "sex"]
    status, body = _post(f"{url}/v2/models/penguins/infer", json.dumps(without_sex).encode())
    assert status == 400 and "sex" in json.loads(body)["error"]


def _post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
