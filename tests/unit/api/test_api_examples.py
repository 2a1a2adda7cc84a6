"""Every Kiln object under examples/ passes the CRD schema, its CEL rules and the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.crd_validation import validate

from kiln.api import crdgen
from kiln.api.model_deployment import ModelDeployment
from kiln.api.training_job import TrainingJob

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
CRDS = {kind.kind: crdgen.crd(kind) for kind in crdgen.KINDS}
MODELS: dict[str, Any] = {"TrainingJob": TrainingJob, "ModelDeployment": ModelDeployment}


def kiln_objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and str(document.get("apiVersion", "")).startswith("kiln.dev/"):
                found.append((f"{path.relative_to(EXAMPLES)}:{document['kind']}", document))
    return found


OBJECTS = kiln_objects()


def test_the_penguins_example_is_among_them() -> None:
    assert {"penguins/trainingjob.yaml:TrainingJob", "iris/trainingjob.yaml:TrainingJob"} <= {
        label for label, _ in OBJECTS
    }


@pytest.mark.parametrize(("label", "document"), OBJECTS, ids=[label for label, _ in OBJECTS])
def test_example_is_valid(label: str, document: dict[str, Any]) -> None:
    assert validate(document, CRDS[document["kind"]]) == []
    MODELS[document["kind"]].model_validate(document)
