"""``kiln-train``: the entry point of the training pod.

Reads ``KILN_TRAIN_SPEC``, trains, writes the report to the termination log
(``KILN_TERMINATION_LOG``, default ``/dev/termination-log``) and exits with the code of
the failure reason (0 on success; see ``kiln.trainer.errors.Reason``).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kiln.contract.train_spec import TrainSpec
from kiln.store import ObjectStore
from kiln.trainer.errors import Reason, TrainingError
from kiln.trainer.logs import EventLog
from kiln.trainer.report import bounded, failure_report
from kiln.trainer.run import PhaseTimer, train
from kiln.trainer.trial import run_trial

SPEC_ENV = "KILN_TRAIN_SPEC"
TERMINATION_LOG_ENV = "KILN_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def parse_spec(env: Mapping[str, str]) -> TrainSpec:
    raw = env.get(SPEC_ENV)
    if not raw:
        raise TrainingError(Reason.INVALID_SPEC, f"environment variable {SPEC_ENV} is not set")
    try:
        return TrainSpec.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '<root>'}: {error['msg']}"
            for error in exc.errors()
        )
        raise TrainingError(Reason.INVALID_SPEC, f"invalid {SPEC_ENV}: {problems}") from exc


def run_trainer(env: Mapping[str, str], log: EventLog, store: ObjectStore | None = None) -> int:
    """Train and report; returns the process exit code."""
    report: dict[str, Any]
    reason: Reason | None = None
    # Shared with the run, so that a failure's report still says which phases ran, and how
    # long (the phase it failed in included).
    timer = PhaseTimer(log)
    try:
        spec = parse_spec(env)
        log.emit("start", model=spec.model, estimator=spec.estimator, run=spec.run.number)
        objects = store or ObjectStore(env=env)
        if spec.trial:
            report = run_trial(spec, objects, log, timer)
        else:
            report = train(spec, objects, log, timer)
    except TrainingError as exc:
        reason = exc.reason
        report = failure_report(exc.reason, exc.message)
    except Exception as exc:  # the report must be written whatever went wrong
        reason = Reason.INTERNAL_ERROR
        report = failure_report(reason, f"{type(exc).__name__}: {exc}")
        log.emit("traceback", level="error", traceback=traceback.format_exc())
    if reason is not None and timer.starts:
        report.update(timer.report_fields())
    message = bounded(report)
    write_termination_log(env.get(TERMINATION_LOG_ENV, DEFAULT_TERMINATION_LOG), message, log)
    if reason is None:
        log.emit("done", ok=True)
        return 0
    log.emit("done", level="error", ok=False, reason=reason.label, message=report["message"])
    return reason.exit_code


def write_termination_log(path: str, message: bytes, log: EventLog) -> None:
    try:
        Path(path).write_bytes(message)
    except OSError as exc:
        # Exit code and stdout still carry the outcome; say why the file is missing.
        log.emit("termination-log.unwritable", level="error", path=path, error=str(exc))
    log.emit("report", report=message.decode())


def main() -> int:
    return run_trainer(os.environ, EventLog())


if __name__ == "__main__":
    sys.exit(main())
