"""The operator's metrics exist at 0 before anything happened, so dashboards show 0."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from kiln import telemetry
from kiln.core.training import BACKOFF_LIMIT_EXCEEDED, RUN_FAILURE_REASONS

pytestmark = pytest.mark.unit


def test_known_series_are_created_at_zero() -> None:
    telemetry.zero_known_series(
        kinds=["TrainingJob", "ModelDeployment"],
        failure_reasons=RUN_FAILURE_REASONS,
        approvals=["Pending", "Approved", "Rejected"],
    )
    text = generate_latest().decode()
    assert 'kiln_reconcile_errors_total{kind="ModelDeployment"} 0.0' in text
    assert (
        f'kiln_training_runs_total{{reason="{BACKOFF_LIMIT_EXCEEDED}",result="Failed"}} 0.0' in text
    )
    assert 'kiln_training_runs_total{reason="InvalidDataset",result="Failed"} 0.0' in text
    assert 'kiln_model_versions_registered_total{approval="Rejected"} 0.0' in text
    assert 'kiln_training_run_duration_seconds_count{result="Failed"} 0.0' in text
