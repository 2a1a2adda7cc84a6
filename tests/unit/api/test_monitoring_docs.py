"""The YAML in docs/monitoring.md and the drift check's snippet in docs/canary.md are valid
objects of the API they document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kiln.api.model_deployment import CanarySpec, ModelDeployment

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[3] / "docs"


def yaml_blocks(name: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", (DOCS / name).read_text(), flags=re.S)


def test_the_monitoring_example_is_a_valid_model_deployment() -> None:
    (example,) = yaml_blocks("monitoring.md")
    md = ModelDeployment.model_validate(yaml.safe_load(example))
    monitoring = md.spec.monitoring
    assert monitoring is not None and monitoring.capture is not None
    assert (monitoring.window_seconds, monitoring.drift.psi_threshold) == (300, 0.2)
    assert md.spec.canary is not None and md.spec.canary.builtin_checks.drift.enabled


def test_the_drift_check_snippet_is_a_valid_canary_spec() -> None:
    (snippet,) = [b for b in yaml_blocks("canary.md") if "drift:" in b]
    canary = CanarySpec.model_validate(yaml.safe_load(snippet)["spec"]["canary"])
    drift = canary.builtin_checks.drift
    assert (drift.enabled, drift.max_psi, drift.min_rows, drift.inputs) == (True, 0.2, 100, True)
