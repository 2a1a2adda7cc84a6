"""Register a successful run as a ModelVersion, once, and apply the registration policy.

Idempotent by construction: the run's ModelVersion is looked up by its labels
(`kiln.dev/training-job-uid` + `kiln.dev/run`) before anything is created, and the version
number is allocated by create-and-retry: `<model>-v<N>` with N one above the highest that
exists; a 409 (a concurrent run took N) lists again and tries N+1. The policy decision is
written to the status right after; a version found without one (the operator died in
between) gets it on the next pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kiln.api.model_version import Approval, ModelVersion
from kiln.api.training_job import TrainingJob
from kiln.api.wire import MODEL_LABEL
from kiln.contract.train_report import TrainerSuccess
from kiln.core.approval import evaluate_policy, headline_metric
from kiln.core.lineage import lineage_of_run
from kiln.core.registry import (
    approval_baseline,
    approval_conditions,
    latest_approved,
    model_version_manifest,
    next_version,
    policy_applied,
    registered_for_run,
)
from kiln.k8s.client import MODEL_VERSIONS, ApiError, KubeClient

logger = logging.getLogger(__name__)

MAX_ALLOCATION_ATTEMPTS = 64


class RegistrationError(RuntimeError):
    """The version could not be allocated (retried by the caller's backoff)."""


@dataclass(frozen=True)
class Registered:
    name: str
    approval: Approval
    created: bool


def parse_versions(items: list[dict[str, Any]]) -> list[ModelVersion]:
    """The ModelVersions among listed objects; a malformed one is logged and left out."""
    parsed = []
    for item in items:
        try:
            parsed.append(ModelVersion.model_validate(item))
        except ValidationError:
            logger.warning("ignoring malformed ModelVersion %s", item.get("metadata", {}))
    return parsed


async def register_run(
    client: KubeClient,
    job: TrainingJob,
    run: int,
    result: TrainerSuccess,
    trainer_image: str,
    now: datetime,
    search: dict[str, Any] | None = None,
) -> Registered:
    """The ModelVersion of this run: found if it exists, else created with its approval."""
    namespace = job.metadata.namespace or "default"
    model = job.spec.model
    uid = job.metadata.uid or ""
    raw = await client.list(MODEL_VERSIONS, namespace, labels={MODEL_LABEL: model})
    versions = parse_versions(raw)
    for _ in range(MAX_ALLOCATION_ATTEMPTS):
        existing = registered_for_run(versions, uid, run)
        if existing is not None:
            approval = existing.status.approval
            if not policy_applied(existing):
                approval = await _apply_policy(client, job, existing, versions, now)
            return Registered(existing.metadata.name or "", approval, created=False)
        names = [item.get("metadata", {}).get("name", "") for item in raw]
        number = next_version(model, names)
        parent = latest_approved(versions, model)
        lineage = lineage_of_run(
            job, run, result, trainer_image, parent.metadata.name if parent else None, search
        )
        manifest = model_version_manifest(
            model=model, version=number, namespace=namespace, result=result, lineage=lineage
        )
        try:
            created = ModelVersion.model_validate(
                await client.create(MODEL_VERSIONS, namespace, manifest)
            )
        except ApiError as e:
            if not e.conflict:
                raise
            raw = await client.list(MODEL_VERSIONS, namespace, labels={MODEL_LABEL: model})
            versions = parse_versions(raw)
            continue
        approval = await _apply_policy(client, job, created, versions, now)
        return Registered(created.metadata.name or "", approval, created=True)
    raise RegistrationError(f"could not allocate a version of {model}: too many conflicts")


async def _apply_policy(
    client: KubeClient,
    job: TrainingJob,
    version: ModelVersion,
    versions: list[ModelVersion],
    now: datetime,
) -> Approval:
    baseline = approval_baseline(version, versions)
    approval = evaluate_policy(
        job.spec.registration, version.spec.metrics, version.spec.fairness, baseline, now
    )
    status = approval_conditions(version.status, approval, now, version.metadata.generation)
    status = status.model_copy(
        update={
            "headline_metric": headline_metric(
                version.spec.metrics, list(job.spec.evaluation.metrics)
            )
        }
    )
    await client.patch(
        MODEL_VERSIONS,
        version.metadata.namespace,
        version.metadata.name or "",
        {"status": status.to_wire()},
        subresource="status",
    )
    return approval
