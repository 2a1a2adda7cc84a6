"""The trainer's phase in a run's status (`status.runs[].trainer`, a trial's `trainer`).

While an attempt's pod runs, the operator reads the tail of its log every
`trainerLogIntervalSeconds` at most (`log_due`) and keeps the phases the trainer's
`phase.start` / `phase.end` records (`kiln.contract.progress`) name; once the pod ended, the
trainer's report has every phase's start and duration and replaces what the log showed
(`trainer_progress`). Pure: text and observations in, the status record out; the same
inputs give an equal record, so a pass that saw nothing new writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from kiln.api.trainer_progress import MAX_TRAINER_PHASES, TrainerPhase, TrainerProgress
from kiln.contract.progress import TRAINING_PHASES, PhaseEvent, parse_phase_line
from kiln.contract.train_report import PhaseTimes, parse_termination_message

# How much of the log a read asks for: the trainer writes a handful of lines per phase
# (a trial one per fold), so the newest phase boundary is in the last few; a longer tail
# only costs the kubelet and the apiserver more bytes. A phase the tail no longer holds
# stays as an earlier read recorded it.
LOG_TAIL_LINES = 100

_ORDER = {name: index for index, name in enumerate(TRAINING_PHASES)}


def _moment(ts: float) -> datetime | None:
    """Unix seconds as the status stores times (whole seconds, UTC); None if absurd."""
    try:
        return datetime.fromtimestamp(math.floor(ts), UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _ordered(phases: Iterable[TrainerPhase]) -> list[TrainerPhase]:
    # Phases of one second share a start time: the trainer's order breaks the tie.
    kept = sorted(phases, key=lambda p: (p.start_time, _ORDER.get(p.phase, len(_ORDER))))
    return kept[-MAX_TRAINER_PHASES:]


def observed_phases(log_text: str) -> list[TrainerPhase]:
    """The phases a stretch of the trainer's log shows, in order: each `phase.start`, with
    the duration of its `phase.end` when that is there too. Lines that are not phase
    records (other events, tracebacks, a last line cut short) are skipped; a `phase.end`
    whose start is before the stretch gives nothing (its start time is unknown)."""
    starts: dict[str, datetime] = {}
    seconds: dict[str, float] = {}
    for line in log_text.splitlines():
        event: PhaseEvent | None = parse_phase_line(line)
        if event is None:
            continue
        if event.kind == "start":
            moment = _moment(event.ts)
            if moment is not None:
                starts[event.phase] = moment
                seconds.pop(event.phase, None)
        elif event.seconds is not None and event.phase in starts:
            seconds[event.phase] = round(event.seconds, 3)
    return _ordered(
        TrainerPhase(phase=name, start_time=start, seconds=seconds.get(name))
        for name, start in starts.items()
    )


def reported_phases(report: PhaseTimes) -> list[TrainerPhase]:
    """The phases a trainer's report records (complete, exact durations)."""
    phases = []
    for name, ts in report.phase_starts.items():
        if name not in _ORDER or not math.isfinite(ts):
            continue
        moment = _moment(ts)
        if moment is None:
            continue
        duration = report.duration_seconds.get(name)
        if duration is not None and not (math.isfinite(duration) and duration >= 0):
            duration = None
        seconds = round(duration, 3) if duration is not None else None
        phases.append(TrainerPhase(phase=name, start_time=moment, seconds=seconds))
    return _ordered(phases)


def _merged(earlier: list[TrainerPhase], newer: list[TrainerPhase]) -> list[TrainerPhase]:
    """What a read adds to what earlier reads saw: a phase runs once per trainer process,
    so its name identifies it; the newer read's view of it wins."""
    by_name = {p.phase: p for p in earlier}
    for phase in newer:
        known = by_name.get(phase.phase)
        if known is not None and phase.seconds is None and known.start_time == phase.start_time:
            phase = known  # the end an earlier read saw stays
        by_name[phase.phase] = phase
    return _ordered(by_name.values())


def _record(pod: str, phases: list[TrainerPhase], finished: bool) -> TrainerProgress | None:
    if not phases:
        return None
    latest = phases[-1]
    return TrainerProgress(
        pod=pod,
        phase=latest.phase,
        phase_start_time=latest.start_time,
        phases=phases,
        finished=finished,
    )


def trainer_progress(
    previous: TrainerProgress | None,
    pod: str,
    *,
    log_text: str | None = None,
    ended: bool = False,
    termination_message: str | None = None,
) -> TrainerProgress | None:
    """The trainer's phases in `pod` (the current attempt's) after this pass.

    - A record of another pod (an earlier attempt) is not carried over: the status shows the
      current attempt's trainer.
    - While the pod runs, `log_text` (the tail just read, or None when none was read this
      pass or the read failed) adds what it shows to what was recorded.
    - Once it ended: the phases of its report (`phaseStarts`, `durationSeconds`), else of
      the log tail Kubernetes put in the termination message (`FallbackToLogsOnError`, a
      crash), added to what was recorded; a record already final stays as it is.
    """
    base = previous if previous is not None and previous.pod == pod else None
    earlier = list(base.phases) if base is not None else []
    if ended:
        if base is not None and base.finished:
            return base
        report = parse_termination_message(termination_message)
        if report is not None and report.phase_starts:
            return _record(pod, reported_phases(report), finished=True) or base
        if report is None and termination_message:
            merged = _merged(earlier, observed_phases(termination_message))
            return _record(pod, merged, finished=True) or base
        return _record(pod, earlier, finished=True) if earlier else None
    if log_text is None:
        return base
    return _record(pod, _merged(earlier, observed_phases(log_text)), finished=False) or base


def log_due(running: bool, last_read: float | None, now: float, interval: float) -> bool:
    """Whether to read a pod's log in this pass: it runs, reading is on (`interval` > 0) and
    the last read (monotonic seconds, None: never) is at least `interval` old."""
    if not running or interval <= 0:
        return False
    return last_read is None or now - last_read >= interval


def log_requeue(running_pods: int, interval: float) -> timedelta | None:
    """While a pod runs, the next look reads its log again after `interval` (off: none)."""
    if running_pods <= 0 or interval <= 0:
        return None
    return timedelta(seconds=interval)
