"""Lineage annotations: everything needed to re-run a ModelVersion's training exactly.

They live under `lineage.kiln.dev/…` on the ModelVersion, next to (and redundant with) its
spec, so `kubectl get mv -o yaml` answers "where did this model come from" at a glance and
label-free tools (Argo CD diff, audits) can read them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from kiln.api import wire
from kiln.api.training_job import TrainingJob
from kiln.contract.train_report import TrainerSuccess

# Annotations share a 256 KiB budget per object; params larger than this are kept only as
# a hash (the TrainingJob at that generation, in Git, holds them).
MAX_PARAMS_ANNOTATION = 8192


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def params_hash(params: dict[str, Any]) -> str:
    """`sha256:<hex>` of the canonical JSON of the params (key order does not matter)."""
    digest = hashlib.sha256(canonical_json(params).encode()).hexdigest()
    return f"sha256:{digest}"


@dataclass(frozen=True)
class Lineage:
    namespace: str
    training_job: str
    training_job_uid: str
    run: int
    dataset_uri: str
    dataset_sha256: str
    trainer_image: str
    estimator: str | None
    params: dict[str, Any] | None
    params_hash: str
    seed: int
    parent_version: str | None = None
    # The hyperparameter search that chose the params (`core.search.search_lineage`).
    search: dict[str, Any] | None = None


def lineage_of_run(
    job: TrainingJob,
    run: int,
    result: TrainerSuccess,
    trainer_image: str,
    parent_version: str | None,
    search: dict[str, Any] | None = None,
) -> Lineage:
    """The lineage of a run's ModelVersion: the trainer's report where it says what it
    used (it resolves the estimator and params it actually fitted), the spec otherwise."""
    params = result.params if result.params is not None else job.spec.params
    return Lineage(
        namespace=job.metadata.namespace or "default",
        training_job=job.metadata.name or "",
        training_job_uid=job.metadata.uid or "",
        run=run,
        dataset_uri=result.dataset.uri,
        dataset_sha256=result.dataset.sha256,
        trainer_image=trainer_image,
        estimator=result.estimator or job.spec.estimator,
        params=params,
        params_hash=params_hash(params),
        seed=job.spec.evaluation.seed,
        parent_version=parent_version,
        search=search,
    )


def lineage_annotations(lineage: Lineage) -> dict[str, str]:
    """The `lineage.kiln.dev/…` annotations of a ModelVersion."""
    annotations = {
        wire.LINEAGE_TRAINING_JOB: f"{lineage.namespace}/{lineage.training_job}",
        wire.LINEAGE_TRAINING_JOB_UID: lineage.training_job_uid,
        wire.LINEAGE_RUN: str(lineage.run),
        wire.LINEAGE_DATASET: f"{lineage.dataset_uri}@sha256:{lineage.dataset_sha256}",
        wire.LINEAGE_TRAINER_IMAGE: lineage.trainer_image,
        wire.LINEAGE_PARAMS_HASH: lineage.params_hash,
        wire.LINEAGE_SEED: str(lineage.seed),
    }
    if lineage.estimator:
        annotations[wire.LINEAGE_ESTIMATOR] = lineage.estimator
    if lineage.params is not None:
        text = canonical_json(lineage.params)
        if len(text) <= MAX_PARAMS_ANNOTATION:
            annotations[wire.LINEAGE_PARAMS] = text
    if lineage.parent_version:
        annotations[wire.LINEAGE_PARENT_VERSION] = lineage.parent_version
    if lineage.search is not None:
        search = dict(lineage.search)
        if len(canonical_json(search)) > MAX_PARAMS_ANNOTATION:
            search.pop("space", None)  # the TrainingJob at that generation holds it
        annotations[wire.LINEAGE_SEARCH] = canonical_json(search)
    return annotations


def parse_lineage(annotations: dict[str, str]) -> Lineage:
    """Read the annotations back (KeyError/ValueError when they are incomplete)."""
    namespace, _, name = annotations[wire.LINEAGE_TRAINING_JOB].partition("/")
    dataset_uri, _, digest = annotations[wire.LINEAGE_DATASET].rpartition("@")
    params_text = annotations.get(wire.LINEAGE_PARAMS)
    search_text = annotations.get(wire.LINEAGE_SEARCH)
    return Lineage(
        namespace=namespace,
        training_job=name,
        training_job_uid=annotations[wire.LINEAGE_TRAINING_JOB_UID],
        run=int(annotations[wire.LINEAGE_RUN]),
        dataset_uri=dataset_uri,
        dataset_sha256=digest.removeprefix("sha256:"),
        trainer_image=annotations[wire.LINEAGE_TRAINER_IMAGE],
        estimator=annotations.get(wire.LINEAGE_ESTIMATOR),
        params=json.loads(params_text) if params_text is not None else None,
        params_hash=annotations[wire.LINEAGE_PARAMS_HASH],
        seed=int(annotations[wire.LINEAGE_SEED]),
        parent_version=annotations.get(wire.LINEAGE_PARENT_VERSION),
        search=json.loads(search_text) if search_text is not None else None,
    )
