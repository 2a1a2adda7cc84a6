"""Kiln's status objects under kstatus, the library Flux's health checks and cli-utils
appliers use (sigs.k8s.io/cli-utils/pkg/kstatus/status), run for real: the `kstatus` CLI
in tools/kstatus is built from the Go module by scripts/build-tools.sh (`make tools`)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.health import kstatus
from tests.support.status_samples import Sample, all_samples

pytestmark = pytest.mark.unit


def compute(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    return kstatus(objects)


SAMPLES = all_samples()


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, str]]:
    computed = compute([s.object for s in SAMPLES])
    return {s.name: r for s, r in zip(SAMPLES, computed, strict=True)}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_each_phase_reads_as_expected(sample: Sample, results: dict[str, dict[str, str]]) -> None:
    result = results[sample.name]
    assert result["status"] == sample.kstatus, result


def test_every_status_has_an_integer_observed_generation() -> None:
    for sample in SAMPLES:
        status = sample.object.get("status") or {}
        if "observedGeneration" in status:
            assert isinstance(status["observedGeneration"], int), sample.name


def test_a_finished_failure_is_never_current(results: dict[str, dict[str, str]]) -> None:
    # Flux must never report a failed training as healthy. (It reads as InProgress, so a
    # Kustomization health check waits for its timeout: see docs/gitops.md.)
    assert results["tj-failed"]["status"] != "Current"


def test_generation_not_observed_is_in_progress(results: dict[str, dict[str, str]]) -> None:
    for name in ("tj-stale", "md-stale"):
        assert results[name]["status"] == "InProgress"
        assert "latest observed generation" in results[name]["message"]


def test_the_cli_is_the_real_library() -> None:
    # A built-in kind with kstatus's own rules: a Deployment short of replicas.
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "generation": 1},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": 1},
    }
    assert compute([deployment])[0]["status"] == "InProgress"
