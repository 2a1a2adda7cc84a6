"""The trainer's phases as the operator follows them: their names, the log records that
mark their boundaries, and what the report says of them.

The trainer (`kiln.trainer.run`, `kiln.trainer.trial`) writes one JSON object per line on
stdout (`kiln.trainer.logs.EventLog`); at each phase boundary one of

    {"ts": 1767268800.123, "level": "info", "event": "phase.start", "phase": "fit"}
    {"ts": 1767268801.456, "level": "info", "event": "phase.end", "phase": "fit", "seconds": 1.333}

`ts` is Unix time in seconds (3 decimals); `seconds` is measured on a monotonic clock. Its
report (the termination message, a success or a failure it knows the reason of) carries
`phaseStarts` ({phase: ts of its `phase.start`}) and `durationSeconds` ({phase: seconds})
for every phase it entered, the one it failed in included.

The operator reads the newest of these lines from the pod's log while the pod runs, and the
report once it ended (`kiln.core.progress`). Only the names below are read: anything else on
a line, or a line that is not such a record, is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, TypeGuard

PHASE_START_EVENT = "phase.start"
PHASE_END_EVENT = "phase.end"

LOAD = "load"  # read and verify the dataset
FIT = "fit"  # plan the preparation, split, fit (a trial: fit and score every fold)
EVALUATE = "evaluate"  # metrics, fairness and the baseline on the test split
UPLOAD = "upload"  # the model, baseline and report (a trial: its report)

# In the order a training runs them; a trial scores while it fits and has no evaluate.
TRAINING_PHASES: tuple[str, ...] = (LOAD, FIT, EVALUATE, UPLOAD)
TRIAL_PHASES: tuple[str, ...] = (LOAD, FIT, UPLOAD)
TRAINER_PHASES: frozenset[str] = frozenset(TRAINING_PHASES)

# The report's keys (camelCase, as on every Kiln wire).
PHASE_STARTS_KEY = "phaseStarts"
DURATIONS_KEY = "durationSeconds"


@dataclass(frozen=True)
class PhaseEvent:
    """One phase boundary read back from a log line."""

    kind: Literal["start", "end"]
    phase: str
    ts: float
    seconds: float | None = None


def parse_phase_line(line: str) -> PhaseEvent | None:
    """The phase boundary a log line records, or None for any other line (another event,
    text, a line cut short, a phase name this contract does not define)."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    event, phase, ts = record.get("event"), record.get("phase"), record.get("ts")
    if event not in (PHASE_START_EVENT, PHASE_END_EVENT) or phase not in TRAINER_PHASES:
        return None
    if not _finite_number(ts):
        return None
    seconds = record.get("seconds")
    return PhaseEvent(
        kind="start" if event == PHASE_START_EVENT else "end",
        phase=str(phase),
        ts=float(ts),
        seconds=float(seconds) if _finite_number(seconds) and seconds >= 0 else None,
    )


def _finite_number(value: object) -> TypeGuard[int | float]:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value == value
        and abs(value) != float("inf")
    )
