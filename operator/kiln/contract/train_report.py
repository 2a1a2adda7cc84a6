"""What the trainer tells the operator: the termination message and the exit code.

The trainer (`kiln.trainer.report`) writes one of these reports as JSON to its container's
termination message; the operator reads it back from the Pod status. The exit code carries
the reason too, so that it survives when the message is lost (a crash before it was
written leaves the tail of the log there instead, `FallbackToLogsOnError`).
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from kiln.api.common import KilnModel
from kiln.api.model_version import Artifact, BaselineReference, FairnessReport, InputSchema
from kiln.api.wire import INVALID_SPEC


class Reason(Enum):
    """Why a run failed: the condition reason, the exit code, and whether a retry may help."""

    INTERNAL_ERROR = ("InternalError", 1, True)
    INVALID_SPEC = (INVALID_SPEC, 2, False)  # the same reason as the operator's own
    DATASET_UNAVAILABLE = ("DatasetUnavailable", 3, True)
    INTEGRITY_ERROR = ("IntegrityError", 4, False)
    INVALID_DATASET = ("InvalidDataset", 5, False)
    INVALID_ESTIMATOR = ("InvalidEstimator", 6, False)
    INVALID_PARAMS = ("InvalidParams", 7, False)
    TRAINING_FAILED = ("TrainingFailed", 8, False)
    UPLOAD_FAILED = ("UploadFailed", 9, True)

    def __init__(self, label: str, exit_code: int, retryable: bool) -> None:
        self.label = label
        self.exit_code = exit_code
        self.retryable = retryable


class DatasetDigest(KilnModel):
    uri: str
    sha256: str
    rows: int | None = None


class PhaseTimes(KilnModel):
    """What a report says of the trainer's phases (`kiln.contract.progress`): when each
    one it entered started (Unix seconds) and how long it took. Empty from a trainer that
    predates them."""

    phase_starts: dict[str, float] = Field(default_factory=dict)
    duration_seconds: dict[str, float] = Field(default_factory=dict)

    @field_validator("phase_starts", "duration_seconds", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any) -> Any:
        """Only what reads as numbers: a report is never refused for its timings."""
        if not isinstance(value, dict):
            return {}
        return {
            str(k): v
            for k, v in value.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }


class TrainerSuccess(PhaseTimes):
    """The termination message of a successful run (kiln.trainer.run.train)."""

    ok: Literal[True]
    artifact: Artifact
    baseline: BaselineReference | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    dataset: DatasetDigest
    versions: dict[str, str] = Field(default_factory=dict)
    input_schema: InputSchema = Field(default_factory=InputSchema)
    fairness: FairnessReport | None = None
    estimator: str | None = None
    params: dict[str, Any] | None = None
    report_uri: str | None = None
    # A search's final training: every trial's report, gathered (search.json).
    search_report_uri: str | None = None
    # The trainer shrinks a report over 4 KiB (feature dtypes dropped, lists cut); the full
    # one is at report_uri.
    truncated: bool = False

    @field_validator("input_schema", mode="before")
    @classmethod
    def _bare_feature_names(cls, value: Any) -> Any:
        """A shrunk report lists features as bare names; read them as name-only features."""
        if isinstance(value, dict) and isinstance(value.get("features"), list):
            features = [{"name": f} if isinstance(f, str) else f for f in value["features"]]
            return {**value, "features": features}
        return value


class TrialSuccess(PhaseTimes):
    """The termination message of a successful trial of a search (kiln.trainer.trial).

    A trial fits on part of the training split and scores the objective on the rest (or by
    k-fold cross-validation); it produces no artifact and never sees the test split.
    """

    ok: Literal[True]
    trial: int = Field(ge=0)
    objective: float
    metric: str
    metrics: dict[str, float] = Field(default_factory=dict)
    folds: list[float] = Field(default_factory=list)
    params: dict[str, Any] | None = None
    dataset: DatasetDigest | None = None
    report_uri: str | None = None
    truncated: bool = False


class TrainerFailure(PhaseTimes):
    """The termination message of a run that knows why it failed."""

    ok: Literal[False]
    reason: str
    message: str = ""
    exit_code: int | None = None
    retryable: bool = True


def parse_termination_message(
    text: str | None,
) -> TrainerSuccess | TrialSuccess | TrainerFailure | None:
    """The trainer's report, or None when the message is absent or not a report.

    With `terminationMessagePolicy: FallbackToLogsOnError` a crashed trainer leaves the
    tail of its log there instead: that is None, not an exception.
    """
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    try:
        if document.get("ok") is True and "trial" in document:
            return TrialSuccess.model_validate(document)
        if document.get("ok") is True:
            return TrainerSuccess.model_validate(document)
        if document.get("ok") is False:
            return TrainerFailure.model_validate(document)
    except ValidationError:
        return None
    return None
