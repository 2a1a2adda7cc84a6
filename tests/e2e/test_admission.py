"""Every ModelDeployment admission row of docs/api.md against a real apiserver.

The same cases the unit tests evaluate with the generated CRD locally
(`tests/support/invalid_objects.py`), applied with `kubectl`: each is refused at apply time
with the field named, and nothing is stored. The TrainingJob rows are
`tests/e2e/test_training.py::test_invalid_trainingjob_is_rejected_naming_the_field`, over
`tests/data/invalid_trainingjobs/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.e2e.conftest import Kube
from tests.support.invalid_objects import (
    INVALID_MODEL_DEPLOYMENTS,
    VALID_MD,
    case_id,
    with_value,
)

from kiln.api.wire import GROUP, VERSION

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crds(kube: Kube) -> None:
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


def test_the_valid_modeldeployment_is_admitted(
    kube: Kube, namespace: str, crds: None, tmp_path: Path
) -> None:
    """The baseline every invalid case changes one field of: refused only for that field."""
    path = tmp_path / "valid.yaml"
    path.write_text(yaml.safe_dump(VALID_MD))
    kube.kubectl("apply", "-n", namespace, "-f", str(path))


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    INVALID_MODEL_DEPLOYMENTS,
    ids=[case_id(c) for c in INVALID_MODEL_DEPLOYMENTS],
)
def test_invalid_modeldeployment_is_rejected_naming_the_field(
    kube: Kube, namespace: str, crds: None, tmp_path: Path, field: str, value: Any, fragment: str
) -> None:
    path = tmp_path / "invalid.yaml"
    path.write_text(yaml.safe_dump(with_value(VALID_MD, field, value)))
    result = kube.kubectl("apply", "-n", namespace, "-f", str(path), check=False)
    assert result.returncode != 0, f"{field}={value!r} was accepted"
    assert fragment in result.stderr, result.stderr
    stored = client.CustomObjectsApi(kube.api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments"
    )
    assert stored["items"] == []
