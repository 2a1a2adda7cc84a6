"""A status write removes what went away, nested fields included (a merge patch keeps any
field it does not name)."""

from __future__ import annotations

import pytest

from kiln.api.training_job import TrainingJobStatus
from kiln.handlers.training import TrainingController

pytestmark = pytest.mark.unit


def test_a_nested_field_that_became_empty_is_written_as_null() -> None:
    status = TrainingJobStatus.model_validate(
        {
            "phase": "Running",
            "progress": {"trials": "8/8", "total": 8, "succeeded": 8, "failed": 0,
                         "running": 0, "pending": 0, "stage": "Training"},
        }
    )  # fmt: skip
    patch = TrainingController.status_patch(TrainingController.__new__(TrainingController),
                                            status, "42")  # fmt: skip
    progress = patch["status"]["progress"]
    assert progress["eta"] is None and progress["bestObjective"] is None  # gone, not kept
    assert progress["total"] == 8
    assert patch["status"]["trainer"] is None
    assert patch["metadata"] == {"resourceVersion": "42"}
