"""TrainingJob + run/attempt -> the training Pod manifest (a plain dict, pure).

The pod passes Pod Security `restricted`, is owned by its TrainingJob (garbage-collected
with it), gets S3 credentials from a Secret by reference only, and receives its job
description as JSON in `KILN_TRAIN_SPEC` (the schema of `kiln.contract.train_spec.TrainSpec`).
The trainer reports back through the termination message; `FallbackToLogsOnError` keeps
the tail of the log there when it crashed before writing one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kiln.api.training_job import TrainingJob, TrainingJobSpec
from kiln.api.wire import (
    API_VERSION,
    ATTEMPT_LABEL,
    MODEL_LABEL,
    PARAMS_HASH_ANNOTATION,
    PART_OF,
    PART_OF_LABEL,
    RUN_LABEL,
    TRAINING_JOB_LABEL,
    TRAINING_JOB_UID_LABEL,
    TRIAL_LABEL,
)
from kiln.core.lineage import params_hash
from kiln.core.registry import label_value
from kiln.core.search import trial_pod_name
from kiln.core.training import pod_name
from kiln.settings import DEFAULT_TRAINER_IMAGE

TRAIN_SPEC_ENV = "KILN_TRAIN_SPEC"
TRAINER_CONTAINER = "trainer"
TRAINER_COMMAND = ["kiln-train"]
TRAINER_USER_ID = 1000
TERMINATION_MESSAGE_PATH = "/dev/termination-log"


class PodBuildError(ValueError):
    """The TrainingJob cannot be turned into a pod as it stands (a Stalled condition)."""


@dataclass(frozen=True)
class TrainerDefaults:
    """Operator configuration that fills what a TrainingJob leaves out."""

    image: str = DEFAULT_TRAINER_IMAGE
    output_uri: str | None = None
    s3_endpoint: str | None = None
    image_pull_policy: str = "IfNotPresent"


@dataclass(frozen=True)
class SearchPod:
    """What a search adds to a pod: a trial's values, or the final training's best values
    and the search that chose them."""

    params: dict[str, Any]
    # Trial mode: the trial's number (the pod is `<tj>-<run>-t<k>-<attempt>`, no model).
    trial: int | None = None
    # Final mode: the search, for the trainer's search.json (contract SearchSummary).
    summary: dict[str, Any] | None = None


def _trial_document(job: TrainingJob, number: int) -> dict[str, Any]:
    search = job.spec.search
    if search is None:
        raise PodBuildError("a trial pod needs spec.search")
    validation = search.objective.validation
    document: dict[str, Any] = {
        "number": number,
        "metric": search.objective.metric,
        "maximize": search.objective.maximize(),
    }
    if validation.k_folds is not None:
        document["kFolds"] = validation.k_folds
    else:
        document["validationFraction"] = validation.holdout_fraction()
    return document


def train_spec(
    job: TrainingJob, run: int, defaults: TrainerDefaults, search: SearchPod | None = None
) -> dict[str, Any]:
    """The JSON document the trainer reads from KILN_TRAIN_SPEC (camelCase keys)."""
    spec = job.spec
    output_uri = spec.output.uri or defaults.output_uri
    if not output_uri:
        raise PodBuildError(
            "spec.output.uri is not set and the operator has no default artifact location"
        )
    document: dict[str, Any] = {
        "model": spec.model,
        "params": {**spec.params, **search.params} if search is not None else spec.params,
        "dataset": spec.dataset.to_wire(),
        "evaluation": {
            "testSize": spec.evaluation.test_size,
            "seed": spec.evaluation.seed,
            "metrics": evaluation_metrics(spec),
        },
        "output": {"uri": output_uri},
        "run": {
            "namespace": job.metadata.namespace or "default",
            "trainingJob": job.metadata.name or "",
            "number": run,
        },
    }
    if spec.estimator is not None:
        document["estimator"] = spec.estimator
    if spec.preprocessing is not None:
        document["preprocessing"] = spec.preprocessing.to_wire()
    if search is not None and search.trial is not None:
        document["trial"] = _trial_document(job, search.trial)
    elif search is not None and search.summary is not None:
        document["search"] = search.summary
    return document


def evaluation_metrics(spec: TrainingJobSpec) -> list[str]:
    """The metric list, with the fairness gate's metric first.

    The trainer measures fairness on its primary metric (the first one), so the gate's
    metric must lead for the gate to have something to check.
    """
    metrics = list(spec.evaluation.metrics)
    fairness = spec.registration.fairness
    if fairness is None:
        return metrics
    return [fairness.metric, *(m for m in metrics if m != fairness.metric)]


def _environment(
    job: TrainingJob, run: int, defaults: TrainerDefaults, search: SearchPod | None
) -> list[dict[str, Any]]:
    spec = job.spec
    env: list[dict[str, Any]] = [
        {"name": TRAIN_SPEC_ENV, "value": json.dumps(train_spec(job, run, defaults, search))},
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        # Credentials come from a Secret: boto3 must never probe the metadata address.
        {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
    ]
    endpoint = spec.output.s3_endpoint or defaults.s3_endpoint
    if endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": endpoint})
    secret = spec.output.credentials_secret_ref
    if secret is not None:
        for variable, key in (
            ("AWS_ACCESS_KEY_ID", secret.access_key_id_key),
            ("AWS_SECRET_ACCESS_KEY", secret.secret_access_key_key),
        ):
            env.append(
                {
                    "name": variable,
                    "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}},
                }
            )
    return env


def _resources(spec: TrainingJobSpec) -> dict[str, Any]:
    if spec.resources is None:
        return {}
    return spec.resources.to_wire()


def training_pod(
    job: TrainingJob,
    run: int,
    attempt: int,
    defaults: TrainerDefaults,
    active_deadline_seconds: int | None = None,
    search: SearchPod | None = None,
) -> dict[str, Any]:
    """The Pod for one attempt of one run (or of one search trial, `search.trial`).
    Deterministic: same inputs, same manifest."""
    name = job.metadata.name
    uid = job.metadata.uid
    if not name or not uid:
        raise PodBuildError("the TrainingJob has no name or uid yet")
    spec = job.spec
    job_label = label_value(name)
    labels = {
        TRAINING_JOB_LABEL: job_label,
        TRAINING_JOB_UID_LABEL: uid,
        RUN_LABEL: str(run),
        ATTEMPT_LABEL: str(attempt),
        MODEL_LABEL: spec.model,
        "app.kubernetes.io/name": "kiln-trainer",
        "app.kubernetes.io/instance": job_label,
        "app.kubernetes.io/component": "training",
        PART_OF_LABEL: PART_OF,
        "app.kubernetes.io/managed-by": "kiln",
    }
    trial = search.trial if search is not None else None
    if trial is not None:
        labels[TRIAL_LABEL] = str(trial)
        labels["app.kubernetes.io/component"] = "trial"
    params = {**spec.params, **search.params} if search is not None else spec.params
    container: dict[str, Any] = {
        "name": TRAINER_CONTAINER,
        "image": spec.image or defaults.image,
        "imagePullPolicy": defaults.image_pull_policy,
        "command": list(spec.command) if spec.command else list(TRAINER_COMMAND),
        "env": _environment(job, run, defaults, search),
        "resources": _resources(spec),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": TRAINER_USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only}
            for v in spec.volumes
        ],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": TRAINER_USER_ID,
            "runAsGroup": TRAINER_USER_ID,
            "fsGroup": TRAINER_USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {
                "name": v.name,
                "persistentVolumeClaim": {"claimName": v.claim_name, "readOnly": v.read_only},
            }
            for v in spec.volumes
        ],
    }
    if active_deadline_seconds is not None:
        pod_spec["activeDeadlineSeconds"] = active_deadline_seconds
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": (
                pod_name(name, run, attempt)
                if trial is None
                else trial_pod_name(name, run, trial, attempt)
            ),
            "namespace": job.metadata.namespace or "default",
            "labels": labels,
            "annotations": {PARAMS_HASH_ANNOTATION: params_hash(params)},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "TrainingJob",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_spec,
    }
