"""The trainer's phase in status: the log records read back, merged across reads, replaced by
the report once the pod ended, and when a pass reads a log at all."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kiln.api.trainer_progress import TrainerPhase, TrainerProgress
from kiln.contract.progress import parse_phase_line
from kiln.core import progress as p

pytestmark = pytest.mark.unit

T0 = 1_780_000_000.0  # Unix seconds
AT = datetime.fromtimestamp(T0, UTC)


def line(event: str, phase: str, ts: float, **fields: Any) -> str:
    return json.dumps({"ts": ts, "level": "info", "event": event, "phase": phase, **fields})


def start(phase: str, offset: float) -> str:
    return line("phase.start", phase, T0 + offset)


def end(phase: str, offset: float, seconds: float) -> str:
    return line("phase.end", phase, T0 + offset, seconds=seconds)


def at(offset: int) -> datetime:
    return AT + timedelta(seconds=offset)


# --- the contract's record ----------------------------------------------------------------


def test_a_phase_line_is_read_back() -> None:
    event = parse_phase_line(end("fit", 3.5, 1.25))
    assert event is not None
    assert (event.kind, event.phase, event.ts, event.seconds) == ("end", "fit", T0 + 3.5, 1.25)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Traceback (most recent call last):",
        '{"ts": 1, "event": "phase.start", "phase": "fi',  # cut short mid-write
        "[1, 2]",
        json.dumps({"ts": T0, "event": "dataset.loaded", "phase": "load"}),
        json.dumps({"ts": T0, "event": "phase.start", "phase": "dreaming"}),
        json.dumps({"ts": T0, "event": "phase.start"}),
        json.dumps({"ts": "yesterday", "event": "phase.start", "phase": "fit"}),
        json.dumps({"ts": True, "event": "phase.start", "phase": "fit"}),
        '{"ts": NaN, "event": "phase.start", "phase": "fit"}',
        json.dumps({"event": "phase.start", "phase": "fit"}),
    ],
)
def test_anything_else_is_not_a_phase(text: str) -> None:
    assert parse_phase_line(text) is None


def test_a_negative_or_missing_duration_is_left_out() -> None:
    event = parse_phase_line(line("phase.end", "fit", T0, seconds=-1))
    assert event is not None and event.seconds is None


# --- from the log -------------------------------------------------------------------------


def test_the_log_gives_every_phase_in_order_with_the_durations_it_shows() -> None:
    log = "\n".join(
        [
            json.dumps({"ts": T0, "event": "start", "model": "iris"}),
            start("load", 0.2),
            end("load", 0.9, 0.7),
            json.dumps({"ts": T0 + 1, "event": "dataset.loaded", "rows": 150}),
            start("fit", 1.0),
            "some library printed this",
        ]
    )
    assert p.observed_phases(log) == [
        TrainerPhase(phase="load", start_time=at(0), seconds=0.7),
        TrainerPhase(phase="fit", start_time=at(1)),
    ]


def test_phases_in_the_same_second_keep_the_trainers_order() -> None:
    log = "\n".join([start("upload", 0.9), start("evaluate", 0.5), start("fit", 0.1)])
    assert [x.phase for x in p.observed_phases(log)] == ["fit", "evaluate", "upload"]


def test_an_end_without_its_start_in_the_tail_gives_nothing() -> None:
    assert p.observed_phases(end("load", 1, 0.5)) == []


def test_a_log_without_a_phase_yet_records_nothing() -> None:
    log = json.dumps({"ts": T0, "event": "start"}) + "\n" + '{"ts": 17800'
    assert p.observed_phases(log) == []
    assert p.trainer_progress(None, "iris-1-1", log_text=log) is None


def test_a_running_pod_shows_its_newest_phase_and_when_it_began() -> None:
    log = "\n".join([start("load", 0), end("load", 2, 2.0), start("fit", 2.4)])
    progress = p.trainer_progress(None, "iris-1-1", log_text=log)
    assert progress == TrainerProgress(
        pod="iris-1-1",
        phase="fit",
        phase_start_time=at(2),
        phases=[
            TrainerPhase(phase="load", start_time=at(0), seconds=2.0),
            TrainerPhase(phase="fit", start_time=at(2)),
        ],
    )


def test_a_later_read_adds_to_what_an_earlier_one_saw() -> None:
    first = p.trainer_progress(None, "iris-1-1", log_text=start("load", 0))
    # The tail has moved past load's start: what was seen of it stays.
    later = "\n".join([end("load", 3, 3.0), start("fit", 3), "x" * 10])
    second = p.trainer_progress(first, "iris-1-1", log_text=later)
    assert second is not None
    assert second.phase == "fit" and second.phase_start_time == at(3)
    assert [x.phase for x in second.phases] == ["load", "fit"]


def test_a_read_that_shows_nothing_new_gives_an_equal_record_so_nothing_is_written() -> None:
    log = "\n".join([start("load", 0), end("load", 1, 1.0), start("fit", 1)])
    first = p.trainer_progress(None, "iris-1-1", log_text=log)
    # Round trip through the status, as the next pass reads it.
    stored = TrainerProgress.model_validate(first.to_wire() if first else {})
    assert p.trainer_progress(stored, "iris-1-1", log_text=log) == stored
    assert p.trainer_progress(stored, "iris-1-1", log_text=start("fit", 1)) == stored
    assert p.trainer_progress(stored, "iris-1-1", log_text="") == stored
    assert p.trainer_progress(stored, "iris-1-1", log_text=None) == stored


def test_no_read_this_pass_keeps_what_was_recorded() -> None:
    recorded = p.trainer_progress(None, "iris-1-1", log_text=start("fit", 0))
    assert p.trainer_progress(recorded, "iris-1-1") == recorded


def test_another_attempts_record_is_not_carried_over() -> None:
    old = p.trainer_progress(None, "iris-1-1", log_text=start("fit", 0))
    assert p.trainer_progress(old, "iris-1-2", log_text="") is None
    fresh = p.trainer_progress(old, "iris-1-2", log_text=start("load", 60))
    assert (
        fresh is not None
        and fresh.pod == "iris-1-2"
        and [x.phase for x in fresh.phases] == ["load"]
    )


# --- once the pod ended -------------------------------------------------------------------


def report(ok: bool = True, **fields: Any) -> str:
    body: dict[str, Any] = (
        {
            "ok": True,
            "artifact": {"uri": "s3://m/model.skops", "sha256": "a" * 64},
            "dataset": {"uri": "s3://d/iris.csv", "sha256": "a" * 64},
        }
        if ok
        else {"ok": False, "reason": "InvalidDataset", "message": "no column x"}
    )
    return json.dumps({**body, **fields})


def test_the_report_replaces_the_log_with_every_phase_exactly() -> None:
    seen = p.trainer_progress(None, "iris-1-1", log_text=start("load", 0))
    message = report(
        phaseStarts={"load": T0, "fit": T0 + 2.5, "evaluate": T0 + 4.0, "upload": T0 + 4.2},
        durationSeconds={"load": 2.4567, "fit": 1.5, "evaluate": 0.2, "upload": 0.6},
    )
    final = p.trainer_progress(seen, "iris-1-1", ended=True, termination_message=message)
    assert final is not None and final.finished
    assert (final.phase, final.phase_start_time) == ("upload", at(4))
    assert [(x.phase, x.start_time, x.seconds) for x in final.phases] == [
        ("load", at(0), 2.457),
        ("fit", at(2), 1.5),
        ("evaluate", at(4), 0.2),
        ("upload", at(4), 0.6),
    ]
    # Final: later passes keep it as it is.
    assert p.trainer_progress(final, "iris-1-1", ended=True, termination_message="") == final


def test_a_failure_report_names_the_phase_it_failed_in() -> None:
    message = report(ok=False, phaseStarts={"load": T0}, durationSeconds={"load": 0.3})
    final = p.trainer_progress(None, "iris-1-1", ended=True, termination_message=message)
    assert final is not None and final.finished and final.phase == "load"
    assert final.phases == [TrainerPhase(phase="load", start_time=at(0), seconds=0.3)]


def test_a_report_without_phases_keeps_what_the_log_showed() -> None:
    seen = p.trainer_progress(None, "iris-1-1", log_text=start("fit", 5))
    final = p.trainer_progress(seen, "iris-1-1", ended=True, termination_message=report())
    assert final is not None and final.finished and final.phase == "fit"
    assert p.trainer_progress(None, "iris-1-1", ended=True, termination_message=report()) is None


def test_a_crash_leaves_the_log_tail_in_the_termination_message() -> None:
    # terminationMessagePolicy FallbackToLogsOnError: the OOM-killed trainer's last lines.
    tail = "\n".join([start("load", 0), end("load", 1, 0.9), start("fit", 1), "Killed"])
    final = p.trainer_progress(None, "iris-1-1", ended=True, termination_message=tail)
    assert final is not None and final.finished and final.phase == "fit"


def test_report_timings_that_are_not_numbers_are_ignored_not_fatal() -> None:
    message = report(
        phaseStarts={"load": T0, "fit": "soon", "dreaming": T0, "upload": 1e300},
        durationSeconds={"load": -2, "fit": None},
    )
    final = p.trainer_progress(None, "iris-1-1", ended=True, termination_message=message)
    assert final is not None
    assert final.phases == [TrainerPhase(phase="load", start_time=at(0), seconds=None)]


# --- when a pass reads a log --------------------------------------------------------------


@pytest.mark.parametrize(
    ("running", "last", "now", "interval", "due"),
    [
        (True, None, 100.0, 5.0, True),  # never read
        (True, 96.0, 100.0, 5.0, False),  # read 4 s ago
        (True, 95.0, 100.0, 5.0, True),  # 5 s ago
        (False, None, 100.0, 5.0, False),  # pending or ended: the report tells
        (True, None, 100.0, 0.0, False),  # reading is off
    ],
)
def test_a_log_is_read_at_most_every_interval_while_its_pod_runs(
    running: bool, last: float | None, now: float, interval: float, due: bool
) -> None:
    assert p.log_due(running, last, now, interval) is due


def test_a_running_pod_brings_the_next_look_within_the_interval() -> None:
    assert p.log_requeue(2, 5.0) == timedelta(seconds=5)
    assert p.log_requeue(0, 5.0) is None
    assert p.log_requeue(1, 0.0) is None
