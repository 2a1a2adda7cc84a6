"""The operator's metrics exist before anything happened, so dashboards show 0, not nothing."""

from __future__ import annotations

import re

import pytest
from prometheus_client import generate_latest

from kiln import telemetry
from kiln.core.training import BACKOFF_LIMIT_EXCEEDED, RUN_FAILURE_REASONS

pytestmark = pytest.mark.unit


def test_known_series_exist_before_anything_is_counted() -> None:
    telemetry.zero_known_series(
        kinds=["TrainingJob", "ModelDeployment"],
        failure_reasons=RUN_FAILURE_REASONS,
        approvals=["Pending", "Approved", "Rejected"],
    )
    text = generate_latest().decode()

    def sample(series: str) -> bool:
        # Present with a value (other tests in the process may have counted some already).
        return re.search(rf"^{re.escape(series)} \d", text, re.M) is not None

    assert sample('kiln_reconcile_errors_total{kind="ModelDeployment"}')
    assert sample(f'kiln_training_runs_total{{reason="{BACKOFF_LIMIT_EXCEEDED}",result="Failed"}}')
    assert sample('kiln_training_runs_total{reason="InvalidDataset",result="Failed"}')
    assert sample('kiln_model_versions_registered_total{approval="Rejected"}')
    assert sample('kiln_training_run_duration_seconds_count{result="Failed"}')
