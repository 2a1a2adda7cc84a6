"""Why a training run failed: a reason the operator turns into a condition, and an exit code.

The reasons, their exit codes and whether a retry may help are the contract with the
operator (``kiln.contract.train_report.Reason``, docs/trainer.md).
"""

from __future__ import annotations

from kiln.contract.train_report import Reason


class TrainingError(Exception):
    """A failure with a reason a user can act on; the message is one line."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = " ".join(message.split())
