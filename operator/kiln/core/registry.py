"""The model registry: version numbers and the ModelVersion a successful run becomes.

Version numbers are allocated from the versions that exist, never from a counter in
memory: the adapter creates `<model>-v<N>` with N = highest existing + 1, and on a 409
Conflict (a concurrent run took N) lists again and retries. A run that already has its
ModelVersion (the operator restarted after creating it) is found by its labels and never
registered twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from kiln.api.model_version import (
    Approval,
    ModelVersion,
    ModelVersionSource,
    ModelVersionSpec,
    ModelVersionStatus,
    TrainingData,
    version_name,
)
from kiln.api.wire import (
    API_VERSION,
    APPROVED,
    MODEL_LABEL,
    PART_OF,
    PART_OF_LABEL,
    RUN_LABEL,
    TRAINING_JOB_LABEL,
    TRAINING_JOB_UID_LABEL,
    VERSION_LABEL,
)
from kiln.contract.train_report import TrainerSuccess
from kiln.core import conditions as cond
from kiln.core.approval import Baseline
from kiln.core.lineage import Lineage, lineage_annotations
from kiln.core.training import bounded_name

MAX_LABEL_VALUE = 63


def label_value(name: str) -> str:
    """An object name shortened (with a hash) to fit a label value."""
    return bounded_name(name, limit=MAX_LABEL_VALUE)


def parse_version(name: str, model: str) -> int | None:
    """N from `<model>-v<N>`, or None when the name is not a version of that model."""
    match = re.fullmatch(re.escape(model) + r"-v([1-9][0-9]*)", name)
    return int(match.group(1)) if match else None


def next_version(model: str, existing_names: Iterable[str]) -> int:
    """One more than the highest version of `model` among the names (1 when none)."""
    numbers = [n for n in (parse_version(name, model) for name in existing_names) if n]
    return max(numbers, default=0) + 1


def registered_for_run(
    versions: Iterable[ModelVersion], training_job_uid: str, run: int
) -> ModelVersion | None:
    """The ModelVersion already created for this run, if any (idempotent registration)."""
    for version in versions:
        labels = version.metadata.labels
        if labels.get(TRAINING_JOB_UID_LABEL) == training_job_uid and labels.get(RUN_LABEL) == str(
            run
        ):
            return version
    return None


def latest_approved(versions: Sequence[ModelVersion], model: str) -> ModelVersion | None:
    """The Approved version of `model` with the highest number."""
    approved = [
        v for v in versions if v.spec.model == model and v.status.approval.state == "Approved"
    ]
    return max(approved, key=lambda v: v.spec.version, default=None)


def approval_baseline(version: ModelVersion, versions: Sequence[ModelVersion]) -> Baseline | None:
    """What the registration policy compares `version` with: the newest Approved version
    of the same model numbered below it (a later version never judges an earlier one)."""
    earlier = [
        v
        for v in versions
        if v.metadata.name != version.metadata.name and v.spec.version < version.spec.version
    ]
    found = latest_approved(earlier, version.spec.model)
    return Baseline(found.metadata.name or "", found.spec.metrics) if found is not None else None


def model_version_manifest(
    *,
    model: str,
    version: int,
    namespace: str,
    result: TrainerSuccess,
    lineage: Lineage,
) -> dict[str, Any]:
    """The ModelVersion object to create for a successful run (status is set afterwards)."""
    spec = ModelVersionSpec(
        model=model,
        version=version,
        artifact=result.artifact,
        framework="scikit-learn",
        library_versions=result.versions,
        metrics=result.metrics,
        fairness=result.fairness,
        input_schema=result.input_schema,
        training_data=TrainingData(uri=result.dataset.uri, sha256=result.dataset.sha256),
        baseline=result.baseline,
        source=ModelVersionSource(
            namespace=lineage.namespace,
            name=lineage.training_job,
            uid=lineage.training_job_uid,
            run=lineage.run,
        ),
    )
    name = version_name(model, version)
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelVersion",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                MODEL_LABEL: model,
                VERSION_LABEL: str(version),
                TRAINING_JOB_LABEL: label_value(lineage.training_job),
                TRAINING_JOB_UID_LABEL: lineage.training_job_uid,
                RUN_LABEL: str(lineage.run),
                PART_OF_LABEL: PART_OF,
            },
            "annotations": lineage_annotations(lineage),
        },
        "spec": spec.to_wire(),
    }


def pending_approval() -> Approval:
    """The approval a ModelVersion has before the policy has looked at it."""
    return Approval(state="Pending", reason="waiting for the registration policy")


def approval_conditions(
    status: ModelVersionStatus, approval: Approval, now: datetime, generation: int | None
) -> ModelVersionStatus:
    """Ready=True (the entry is complete) and Approved=True/False/Unknown with a reason."""
    conditions = cond.mark_ready(
        status.conditions, "Registered", "the model version is registered", now, generation
    )
    state = approval.state
    condition_status = {"Approved": "True", "Rejected": "False"}.get(state, "Unknown")
    reason = {"Approved": "Approved", "Rejected": "Rejected"}.get(state, "PendingApproval")
    conditions = cond.set_condition(
        conditions,
        APPROVED,
        condition_status,  # type: ignore[arg-type]
        reason,
        approval.reason or "",
        now,
        generation,
    )
    return status.model_copy(
        update={"approval": approval, "conditions": conditions, "observed_generation": generation}
    )


def policy_applied(version: ModelVersion) -> bool:
    return cond.find(version.status.conditions, APPROVED) is not None
