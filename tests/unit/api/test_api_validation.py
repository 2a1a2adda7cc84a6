"""Invalid objects are rejected, with the field named, by the CRD rules and by the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from tests.support.builders import TrainingJobBuilder
from tests.support.crd_validation import validate
from tests.support.invalid_objects import (
    INVALID_MODEL_DEPLOYMENTS,
    VALID_MD,
    case_id,
    with_value,
)

from kiln.api import crdgen
from kiln.api.model_deployment import ModelDeployment
from kiln.api.model_version import ModelVersion
from kiln.api.training_job import TrainingJob

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / "data"
INVALID_DIR = DATA / "invalid_trainingjobs"
EXPECTED = "test.kiln.dev/expected-error"
CRDS = {kind.kind: crdgen.crd(kind) for kind in crdgen.KINDS}
INVALID_FILES = sorted(INVALID_DIR.glob("*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


VALID_TJ = _load(DATA / "valid_trainingjob.yaml")

VALID_MV: dict[str, Any] = {
    "apiVersion": "kiln.dev/v1alpha1",
    "kind": "ModelVersion",
    "metadata": {"name": "iris-v3"},
    "spec": {
        "model": "iris",
        "version": 3,
        "artifact": {"uri": "s3://models/iris/run-3/model.skops", "sha256": "a" * 64},
        "metrics": {"accuracy": 0.96},
        "libraryVersions": {"sklearn": "1.5.2"},
        "inputSchema": {"features": [{"name": "sepal_length"}], "classes": ["setosa", 1]},
    },
}


def test_there_are_at_least_fifteen_invalid_trainingjobs() -> None:
    assert len(INVALID_FILES) >= 15
    fragments = [_load(p)["metadata"]["annotations"][EXPECTED] for p in INVALID_FILES]
    assert all("spec." in f for f in fragments), fragments


def test_valid_objects_pass_the_crd_and_the_models() -> None:
    for kind, document in (
        ("TrainingJob", VALID_TJ),
        ("ModelVersion", VALID_MV),
        ("ModelDeployment", VALID_MD),
    ):
        assert validate(document, CRDS[kind]) == [], kind
    TrainingJob.model_validate(VALID_TJ)
    ModelVersion.model_validate(VALID_MV)
    ModelDeployment.model_validate(VALID_MD)


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.stem)
def test_invalid_trainingjob_is_rejected_with_the_field_named(path: Path) -> None:
    document = _load(path)
    errors = validate(document, CRDS["TrainingJob"])
    expected = document["metadata"]["annotations"][EXPECTED]
    assert errors, f"{path.name} was accepted"
    assert any(expected in error for error in errors), errors


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.stem)
def test_invalid_trainingjob_is_rejected_by_the_model_too(path: Path) -> None:
    with pytest.raises(ValidationError):
        TrainingJob.model_validate(_load(path))


def test_defaults_are_filled_like_the_apiserver_would() -> None:
    minimal = (
        TrainingJobBuilder("m")
        .for_create()
        .estimator("sklearn.tree.DecisionTreeClassifier")
        .dataset("file:///data/iris.csv")
        .obj()
    )
    assert validate(minimal, CRDS["TrainingJob"]) == []
    parsed = TrainingJob.model_validate(minimal).spec
    assert parsed.backoff_limit == 3
    assert parsed.evaluation.test_size == 0.2
    assert parsed.evaluation.seed == 42
    assert parsed.dataset.format == "csv"
    assert parsed.registration.approval == "auto"


def test_modelversion_spec_is_immutable() -> None:
    changed = with_value(VALID_MV, "spec.metrics", {"accuracy": 0.99})
    errors = validate(changed, CRDS["ModelVersion"], old=VALID_MV)
    assert any("spec is immutable" in e for e in errors), errors
    assert validate(VALID_MV, CRDS["ModelVersion"], old=VALID_MV) == []


def test_modelversion_rejects_a_bad_digest_and_format() -> None:
    bad_digest = with_value(VALID_MV, "spec.artifact.sha256", "A" * 64)
    assert any("spec.artifact.sha256" in e for e in validate(bad_digest, CRDS["ModelVersion"]))
    bad_format = with_value(VALID_MV, "spec.artifact.format", "onnx")
    assert any("spec.artifact.format" in e for e in validate(bad_format, CRDS["ModelVersion"]))


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    INVALID_MODEL_DEPLOYMENTS,
    ids=[case_id(c) for c in INVALID_MODEL_DEPLOYMENTS],
)
def test_invalid_modeldeployment_is_rejected(path: str, value: Any, fragment: str) -> None:
    document = with_value(VALID_MD, path, value)
    errors = validate(document, CRDS["ModelDeployment"])
    assert any(fragment in e for e in errors), errors
    with pytest.raises(ValidationError):
        ModelDeployment.model_validate(document)


def test_modeldeployment_version_must_belong_to_the_model() -> None:
    document = with_value(
        with_value(VALID_MD, "spec.followLatestApproved", None), "spec.modelVersion", "wine-v1"
    )
    errors = validate(document, CRDS["ModelDeployment"])
    assert any("spec.modelVersion must be a version of spec.model" in e for e in errors)
    pinned = with_value(
        with_value(VALID_MD, "spec.followLatestApproved", None), "spec.modelVersion", "iris-v1"
    )
    assert validate(pinned, CRDS["ModelDeployment"]) == []
    assert ModelDeployment.model_validate(pinned).spec.model_version == "iris-v1"
