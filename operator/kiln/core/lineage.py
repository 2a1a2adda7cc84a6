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

PREFIX = "lineage.kiln.dev/"
TRAINING_JOB = PREFIX + "training-job"  # <namespace>/<name>
TRAINING_JOB_UID = PREFIX + "training-job-uid"
RUN = PREFIX + "run"
DATASET = PREFIX + "dataset"  # <uri>@sha256:<hex>
TRAINER_IMAGE = PREFIX + "trainer-image"
ESTIMATOR = PREFIX + "estimator"
PARAMS = PREFIX + "params"  # canonical JSON, when small enough
PARAMS_HASH = PREFIX + "params-hash"  # sha256:<hex> of the canonical JSON
SEED = PREFIX + "seed"
PARENT_VERSION = PREFIX + "parent-version"

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


def lineage_annotations(lineage: Lineage) -> dict[str, str]:
    """The `lineage.kiln.dev/…` annotations of a ModelVersion."""
    annotations = {
        TRAINING_JOB: f"{lineage.namespace}/{lineage.training_job}",
        TRAINING_JOB_UID: lineage.training_job_uid,
        RUN: str(lineage.run),
        DATASET: f"{lineage.dataset_uri}@sha256:{lineage.dataset_sha256}",
        TRAINER_IMAGE: lineage.trainer_image,
        PARAMS_HASH: lineage.params_hash,
        SEED: str(lineage.seed),
    }
    if lineage.estimator:
        annotations[ESTIMATOR] = lineage.estimator
    if lineage.params is not None:
        text = canonical_json(lineage.params)
        if len(text) <= MAX_PARAMS_ANNOTATION:
            annotations[PARAMS] = text
    if lineage.parent_version:
        annotations[PARENT_VERSION] = lineage.parent_version
    return annotations


def parse_lineage(annotations: dict[str, str]) -> Lineage:
    """Read the annotations back (KeyError/ValueError when they are incomplete)."""
    namespace, _, name = annotations[TRAINING_JOB].partition("/")
    dataset_uri, _, digest = annotations[DATASET].rpartition("@")
    params_text = annotations.get(PARAMS)
    return Lineage(
        namespace=namespace,
        training_job=name,
        training_job_uid=annotations[TRAINING_JOB_UID],
        run=int(annotations[RUN]),
        dataset_uri=dataset_uri,
        dataset_sha256=digest.removeprefix("sha256:"),
        trainer_image=annotations[TRAINER_IMAGE],
        estimator=annotations.get(ESTIMATOR),
        params=json.loads(params_text) if params_text is not None else None,
        params_hash=annotations[PARAMS_HASH],
        seed=int(annotations[SEED]),
        parent_version=annotations.get(PARENT_VERSION),
    )
