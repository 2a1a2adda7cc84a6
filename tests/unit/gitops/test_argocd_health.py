"""The Argo CD health checks in manifests/argocd/health/*.lua, run under Lua 5.1 (lupa),
the dialect of gopher-lua that Argo CD embeds, against Kiln's status objects in every phase
(tests/support/status_samples.py builds them with the operator's own status code)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from tests.support.health import ARGO_SCRIPTS, ROOT, argocd_health
from tests.support.status_samples import Sample, all_samples

pytestmark = pytest.mark.unit

ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    assert obj["kind"] == kind
    return argocd_health(obj)


@pytest.mark.parametrize("sample", all_samples(), ids=lambda s: s.name)
def test_each_phase_has_the_expected_health(sample: Sample) -> None:
    result = health(sample.object["kind"], sample.object)
    assert result["status"] in ARGO_STATUSES
    assert result["status"] == sample.argocd, result


def test_messages_carry_the_reason() -> None:
    samples = {s.name: s for s in all_samples()}
    failed = health("TrainingJob", samples["tj-failed"].object)
    assert "BackoffLimitExceeded" in failed["message"]
    rolled_back = health("ModelDeployment", samples["md-rolled-back"].object)
    assert "RolledBack" in rolled_back["message"]
    assert "AnalysisFailed" in rolled_back["message"]
    rejected = health("ModelVersion", samples["mv-rejected"].object)
    assert "accuracy 0.4 < 0.9" in rejected["message"]


def test_docs_snippet_installs_every_script() -> None:
    """docs/gitops.md's argocd-cm snippet embeds each script verbatim."""
    text = (ROOT / "docs/gitops.md").read_text()
    block = text.split("```yaml\n# argocd-cm\n", 1)[1].split("```", 1)[0]
    data = yaml.safe_load(block)["data"]
    for kind, script in ARGO_SCRIPTS.items():
        key = f"resource.customizations.health.kiln.dev_{kind}"
        assert data[key] == script.read_text(), key
