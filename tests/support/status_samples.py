"""Representative objects of every kind in every phase, with the status Kiln's own code
writes (the core's summarize / condition helpers, the registry's approval conditions), for
the GitOps health tests: kstatus (Flux, cli-utils) and the Argo CD Lua checks.

Each sample names what a GitOps tool should conclude: `kstatus` (Current / InProgress /
Failed) and `argocd` (Healthy / Progressing / Suspended / Degraded).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kiln.api.common import Condition
from kiln.api.model_deployment import ModelDeploymentStatus
from kiln.api.model_version import Approval, ModelVersionStatus
from kiln.api.training_job import RunRecord, TrainingJob
from kiln.core import conditions as cond
from kiln.core.trainingjob import summarize

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PROGRESSING = "Progressing"
DEGRADED = "Degraded"


@dataclass(frozen=True)
class Sample:
    name: str
    object: dict[str, Any]
    kstatus: str
    argocd: str


def _meta(name: str, generation: int) -> dict[str, Any]:
    return {"name": name, "namespace": "ml", "generation": generation, "uid": f"uid-{name}"}


def _training_job(generation: int = 2) -> TrainingJob:
    raw = yaml.safe_load((ROOT / "examples/iris/trainingjob.yaml").read_text())
    raw["metadata"]["generation"] = generation
    job = TrainingJob.model_validate(raw)
    # The operator has seen this generation before (summarize keeps observedGeneration).
    return job.model_copy(
        update={"status": job.status.model_copy(update={"observed_generation": 2})}
    )


def _tj_object(job: TrainingJob, status: dict[str, Any], generation: int) -> dict[str, Any]:
    wire = job.to_wire()
    wire["metadata"] = _meta("iris", generation)
    wire["status"] = status
    return wire


def training_jobs() -> list[Sample]:
    job = _training_job()
    run = RunRecord(run=1, phase="Pending", trigger="create", attempts=1, start_time=NOW)
    running = run.model_copy(update={"phase": "Running", "pod": "iris-r1-a1"})
    succeeded = running.model_copy(
        update={"phase": "Succeeded", "completion_time": NOW, "model_version": "iris-v1"}
    )
    failed = running.model_copy(
        update={
            "phase": "Failed",
            "completion_time": NOW,
            "reason": "BackoffLimitExceeded",
            "message": "3 attempts failed",
        }
    )
    retrying = run.model_copy(update={"attempts": 2, "next_attempt_time": NOW})

    def status(runs: list[RunRecord]) -> dict[str, Any]:
        return summarize(job, runs, NOW).to_wire()

    samples = [
        Sample("tj-pending", _tj_object(job, status([run]), 2), "InProgress", "Progressing"),
        Sample("tj-running", _tj_object(job, status([running]), 2), "InProgress", "Progressing"),
        Sample("tj-retrying", _tj_object(job, status([retrying]), 2), "InProgress", "Progressing"),
        Sample("tj-succeeded", _tj_object(job, status([succeeded]), 2), "Current", "Healthy"),
        # A finished failure is Stalled: nothing happens until the spec or a trigger changes.
        Sample("tj-failed", _tj_object(job, status([failed]), 2), "Failed", "Degraded"),
        Sample("tj-no-run", _tj_object(job, status([]), 2), "InProgress", "Suspended"),
    ]
    # The user changed the spec; the operator has not looked yet.
    stale = status([succeeded])
    samples.append(Sample("tj-stale", _tj_object(job, stale, 3), "InProgress", "Progressing"))
    # An invalid spec that slipped past the CRD: the handler marks it Stalled.
    stalled = cond.mark_stalled([], "InvalidSpec", "spec.params: not a mapping", NOW, 2)
    samples.append(
        Sample(
            "tj-invalid",
            _tj_object(job, {"observedGeneration": 2, "conditions": _wire(stalled)}, 2),
            "Failed",
            "Degraded",
        )
    )
    # Just created, no status yet: kstatus cannot tell (no observedGeneration) and says
    # Current; the Argo CD check waits for the operator.
    samples.append(Sample("tj-new", _tj_object(job, {}, 1), "Current", "Progressing"))
    return samples


def _wire(conditions: list[Condition]) -> list[dict[str, Any]]:
    return [c.to_wire() for c in conditions]


def model_versions() -> list[Sample]:
    from kiln.core.registry import approval_conditions

    def obj(status: ModelVersionStatus | None) -> dict[str, Any]:
        return {
            "apiVersion": "kiln.dev/v1alpha1",
            "kind": "ModelVersion",
            "metadata": _meta("iris-v1", 1),
            "spec": {"model": "iris", "version": 1},
            **({"status": status.to_wire()} if status is not None else {}),
        }

    def decided(state: str, reason: str) -> ModelVersionStatus:
        approval = Approval(state=state, by="kiln", at=NOW, reason=reason)  # type: ignore[arg-type]
        return approval_conditions(ModelVersionStatus(), approval, NOW, 1)

    return [
        Sample("mv-unregistered", obj(None), "Current", "Progressing"),
        Sample("mv-approved", obj(decided("Approved", "policy passed")), "Current", "Healthy"),
        Sample("mv-pending", obj(decided("Pending", "awaiting review")), "Current", "Suspended"),
        Sample(
            "mv-rejected", obj(decided("Rejected", "accuracy 0.4 < 0.9")), "Current", "Degraded"
        ),
    ]


def model_deployments() -> list[Sample]:
    """The phase -> condition mapping of kiln.core.canary (Rollout.decision)."""

    def obj(phase: str | None, kind: str, reason: str, generation: int = 4) -> dict[str, Any]:
        status = ModelDeploymentStatus(phase=phase, message=f"{phase} ({reason})")  # type: ignore[arg-type]
        mark = {
            "ready": cond.mark_ready,
            "reconciling": cond.mark_reconciling,
            "stalled": cond.mark_stalled,
        }[kind]
        status.conditions = mark([], reason, status.message or "", NOW, 4)
        status.observed_generation = 4
        return {
            "apiVersion": "kiln.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": _meta("iris", generation),
            "spec": {"model": "iris", "replicas": 2},
            "status": status.to_wire(),
        }

    # name, phase, condition kind, reason, generation, kstatus, Argo CD
    table = [
        ("md-promoted", "Promoted", "ready", "Serving", 4, "Current", "Healthy"),
        ("md-rolling-out", PROGRESSING, "reconciling", "RollingOut", 4, "InProgress", PROGRESSING),
        ("md-canary", PROGRESSING, "reconciling", "CanaryStep", 4, "InProgress", PROGRESSING),
        ("md-paused", "Paused", "reconciling", "Paused", 4, "InProgress", "Suspended"),
        ("md-inconclusive", "Paused", "stalled", "InconclusiveAnalysis", 4, "Failed", DEGRADED),
        ("md-rolled-back", "RolledBack", "stalled", "AnalysisFailed", 4, "Failed", "Degraded"),
        ("md-failed", "Failed", "stalled", "ArtifactDigestMismatch", 4, "Failed", "Degraded"),
        ("md-no-target", None, "stalled", "NoApprovedVersion", 4, "Failed", "Degraded"),
        ("md-stale", "Promoted", "ready", "Serving", 5, "InProgress", "Progressing"),
    ]  # fmt: skip
    return [
        Sample(name, obj(phase, kind, reason, generation), ks, argo)
        for name, phase, kind, reason, generation, ks, argo in table
    ]


def all_samples() -> list[Sample]:
    return [*training_jobs(), *model_versions(), *model_deployments()]
