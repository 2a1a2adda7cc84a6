"""Why a training run failed: a reason the operator turns into a condition, and an exit code.

Exit codes are part of the contract with the operator (docs/trainer.md): the reason is
also in the termination message, but the exit code survives when that file is lost.
``retryable`` tells the operator whether another attempt could succeed.
"""

from __future__ import annotations

from enum import Enum


class Reason(Enum):
    INTERNAL_ERROR = ("InternalError", 1, True)
    INVALID_SPEC = ("InvalidSpec", 2, False)
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


class TrainingError(Exception):
    """A failure with a reason a user can act on; the message is one line."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = " ".join(message.split())
