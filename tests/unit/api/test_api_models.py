"""The models speak camelCase on the wire and snake_case in Python, and agree with the trainer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tests.support.builders import TrainingJobBuilder

from kiln.api.metrics import METRIC_DIRECTIONS, higher_is_better
from kiln.api.model_deployment import ModelDeployment
from kiln.api.model_version import ModelVersion, version_name
from kiln.api.training_job import RunRecord, TrainingJob, TrainingJobStatus

pytestmark = pytest.mark.unit

TJ: dict[str, Any] = (
    TrainingJobBuilder("iris")
    .uid("u-1")
    .generation(2)
    .params(max_iter=200, class_weight={"setosa": 2, "virginica": [1]})
    .dataset("s3://d/iris.csv", sensitiveColumn="site")
    .backoff_limit(1)
    .spec(activeDeadlineSeconds=60)
    .credentials("s3")
    .fairness("site", "accuracy", 0.1)
    .triggers(schedule="@daily", datasetChange={})
    .status(
        observedGeneration=2,
        phase="Running",
        run=1,
        runs=[{"run": 1, "phase": "Running", "attempts": 1}],
        conditions=[
            {
                "type": "Ready",
                "status": "False",
                "reason": "Running",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    )
    .obj()
)


def test_trainingjob_reads_camel_case_into_snake_case() -> None:
    job = TrainingJob.model_validate(TJ)
    assert job.spec.backoff_limit == 1
    assert job.spec.active_deadline_seconds == 60
    assert job.spec.dataset.sensitive_column == "site"
    assert job.spec.output.credentials_secret_ref is not None
    assert job.spec.output.credentials_secret_ref.access_key_id_key == "AWS_ACCESS_KEY_ID"
    assert job.spec.params == {"max_iter": 200, "class_weight": {"setosa": 2, "virginica": [1]}}
    assert job.spec.triggers is not None
    assert job.spec.triggers.concurrency_policy == "Forbid"
    assert job.spec.triggers.dataset_change is not None
    assert job.spec.triggers.dataset_change.poll_interval_seconds == 300
    assert job.status.conditions[0].last_transition_time == datetime(2026, 1, 1, tzinfo=UTC)
    assert job.status.runs == [RunRecord(run=1, phase="Running", attempts=1)]


def test_wire_form_round_trips_in_camel_case() -> None:
    job = TrainingJob.model_validate(TJ)
    wire = job.to_wire()
    assert wire["spec"]["backoffLimit"] == 1
    assert wire["spec"]["dataset"]["sensitiveColumn"] == "site"
    assert wire["status"]["observedGeneration"] == 2
    assert "backoff_limit" not in wire["spec"]
    assert TrainingJob.model_validate(wire) == job


def test_status_serialises_only_declared_fields() -> None:
    status = TrainingJobStatus(phase="Succeeded", run=2, model_version="iris-v2")
    assert status.to_wire() == {
        "phase": "Succeeded",
        "run": 2,
        "attempts": 0,
        "modelVersion": "iris-v2",
        "metrics": {},
        "runs": [],
        "conditions": [],
    }


def test_unknown_fields_from_a_newer_crd_are_ignored() -> None:
    spec: dict[str, Any] = {**TJ["spec"], "someFutureField": True}
    document = {**TJ, "spec": spec}
    assert TrainingJob.model_validate(document).spec.model == "iris"


@pytest.mark.parametrize(
    ("metric", "higher"),
    [("accuracy", True), ("r2", True), ("roc_auc", True), ("rmse", False), ("log_loss", False)],
)
def test_metric_direction(metric: str, higher: bool) -> None:
    assert higher_is_better(metric) is higher
    assert METRIC_DIRECTIONS[metric] == ("higherIsBetter" if higher else "lowerIsBetter")


def test_version_name() -> None:
    assert version_name("iris", 12) == "iris-v12"


def test_modelversion_defaults_to_pending_approval_and_skops() -> None:
    version = ModelVersion.model_validate(
        {
            "metadata": {"name": "iris-v1"},
            "spec": {
                "model": "iris",
                "version": 1,
                "artifact": {"uri": "s3://m/model.skops", "sha256": "0" * 64},
            },
        }
    )
    assert version.status.approval.state == "Pending"
    assert version.spec.artifact.format == "skops"


def test_modeldeployment_canary_defaults() -> None:
    deployment = ModelDeployment.model_validate(
        {"spec": {"model": "iris", "followLatestApproved": True, "canary": {}}}
    )
    canary = deployment.spec.canary
    assert canary is not None
    assert canary.steps == [10, 50]
    assert canary.builtin_checks.error_rate.enabled
    assert canary.builtin_checks.latency.quantile == 0.99
    assert deployment.spec.replicas == 2
    assert deployment.status.canary_weight == 0


@pytest.mark.parametrize("kind", [TrainingJob, ModelVersion, ModelDeployment])
def test_every_kind_is_served_at_the_wire_group_and_version(kind: type) -> None:
    # `Literal` needs the string spelled out in each model; this keeps it equal to wire's.
    from kiln.api import wire

    assert kind.model_fields["api_version"].default == wire.API_VERSION
