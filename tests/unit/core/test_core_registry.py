from __future__ import annotations

import json
from typing import Any

import pytest
from tests.support.crd_validation import validate

from kiln.api import crdgen, wire
from kiln.api.model_version import ModelVersion
from kiln.contract.train_report import TrainerSuccess
from kiln.core import lineage as lin
from kiln.core import registry as reg

pytestmark = pytest.mark.unit

SHA = "d" * 64


def version(
    name: str, state: str = "Pending", labels: dict[str, str] | None = None
) -> ModelVersion:
    model, _, number = name.rpartition("-v")
    return ModelVersion.model_validate(
        {
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                "model": model,
                "version": int(number),
                "artifact": {"uri": "s3://m/x", "sha256": SHA},
            },
            "status": {"approval": {"state": state}},
        }
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("iris-v1", 1),
        ("iris-v12", 12),
        ("iris-v0", None),
        ("iris-v01", None),
        ("iris-vx", None),
        ("iris-flowers-v3", None),
        ("iris", None),
    ],
)
def test_parse_version(name: str, expected: int | None) -> None:
    assert reg.parse_version(name, "iris") == expected


def test_model_names_with_regex_characters_are_literal() -> None:
    assert reg.parse_version("a.b-v2", "a.b") == 2
    assert reg.parse_version("axb-v2", "a.b") is None


def test_next_version_is_one_more_than_the_highest() -> None:
    assert reg.next_version("iris", []) == 1
    assert reg.next_version("iris", ["iris-v1", "iris-v2"]) == 3
    assert reg.next_version("iris", ["iris-v2", "iris-v10", "iris-v9"]) == 11
    assert reg.next_version("iris", ["iris-flowers-v7", "wine-v4", "iris-v1"]) == 2


def test_gaps_are_never_filled() -> None:
    """A deleted version's number is not handed out again while a higher one exists."""
    assert reg.next_version("iris", ["iris-v1", "iris-v3"]) == 4


def test_registered_for_run_finds_the_existing_version() -> None:
    labels = {wire.TRAINING_JOB_UID_LABEL: "uid-1", wire.RUN_LABEL: "2"}
    existing = [
        version("iris-v1", labels={**labels, wire.RUN_LABEL: "1"}),
        version("iris-v2", labels=labels),
    ]
    found = reg.registered_for_run(existing, "uid-1", 2)
    assert found is not None and found.metadata.name == "iris-v2"
    assert reg.registered_for_run(existing, "uid-1", 3) is None
    assert reg.registered_for_run(existing, "uid-other", 2) is None


def test_latest_approved_is_the_highest_approved_version_of_that_model() -> None:
    versions = [
        version("iris-v1", "Approved"),
        version("iris-v3", "Approved"),
        version("iris-v4", "Rejected"),
        version("iris-v5", "Pending"),
        version("wine-v9", "Approved"),
        version("iris-v2", "Approved"),
    ]
    latest = reg.latest_approved(versions, "iris")
    assert latest is not None and latest.metadata.name == "iris-v3"
    assert reg.latest_approved(versions, "digits") is None


def test_label_value_fits() -> None:
    assert reg.label_value("iris") == "iris"
    assert len(reg.label_value("x" * 100)) == 63


REPORT: dict[str, Any] = {
    "ok": True,
    "metrics": {"accuracy": 0.95, "f1_macro": 0.94},
    "dataset": {"uri": "s3://d/iris.csv", "sha256": SHA, "rows": 150},
    "inputSchema": {"features": [{"name": "a", "dtype": "float64"}], "classes": [0, 1, 2]},
    "versions": {"python": "3.11.7", "sklearn": "1.5.2"},
    "artifact": {"uri": "s3://m/iris/run-2/model.skops", "sha256": "e" * 64, "format": "skops"},
    "baseline": {"uri": "s3://m/iris/run-2/baseline.json", "sha256": "f" * 64},
}


def test_model_version_manifest_is_valid_and_carries_lineage() -> None:
    result = TrainerSuccess.model_validate(REPORT)
    lineage = lin.Lineage(
        namespace="ml",
        training_job="iris-train",
        training_job_uid="uid-1",
        run=2,
        dataset_uri="s3://d/iris.csv",
        dataset_sha256=SHA,
        trainer_image="kiln/trainer:0.1.0",
        estimator="sklearn.linear_model.LogisticRegression",
        params={"C": 1.0},
        params_hash=lin.params_hash({"C": 1.0}),
        seed=7,
        parent_version="iris-v1",
    )
    manifest = reg.model_version_manifest(
        model="iris", version=2, namespace="ml", result=result, lineage=lineage
    )
    assert manifest["metadata"]["name"] == "iris-v2"
    assert manifest["metadata"]["labels"][wire.RUN_LABEL] == "2"
    assert manifest["metadata"]["labels"][wire.TRAINING_JOB_UID_LABEL] == "uid-1"
    assert manifest["metadata"]["annotations"][wire.LINEAGE_PARENT_VERSION] == "iris-v1"
    spec = manifest["spec"]
    assert spec["artifact"]["sha256"] == "e" * 64
    assert spec["baseline"] == {"uri": "s3://m/iris/run-2/baseline.json", "sha256": "f" * 64}
    assert spec["trainingData"] == {"uri": "s3://d/iris.csv", "sha256": SHA}
    assert spec["source"] == {"namespace": "ml", "name": "iris-train", "uid": "uid-1", "run": 2}
    assert spec["libraryVersions"]["sklearn"] == "1.5.2"
    assert spec["metrics"] == {"accuracy": 0.95, "f1_macro": 0.94}
    crd = next(crdgen.crd(k) for k in crdgen.KINDS if k.kind == "ModelVersion")
    assert validate(manifest, crd) == []
    json.dumps(manifest)  # plain JSON, ready for the API client


def test_pending_approval() -> None:
    assert reg.pending_approval().state == "Pending"


def test_the_approval_baseline_is_the_newest_approved_earlier_version() -> None:
    versions = [
        version("iris-v1", "Approved"),
        version("iris-v2", "Rejected"),
        version("iris-v3", "Approved"),
        version("iris-v4"),
        version("iris-v5", "Approved"),
        version("other-v9", "Approved"),
    ]
    baseline = reg.approval_baseline(versions[3], versions)
    assert baseline is not None and baseline.name == "iris-v3"
    # A later Approved version never judges an earlier one; the first has nothing to beat.
    assert reg.approval_baseline(versions[0], versions) is None
