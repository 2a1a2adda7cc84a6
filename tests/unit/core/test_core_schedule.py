from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kiln.api.training_job import RunRecord
from kiln.core import schedule as s

pytestmark = pytest.mark.unit

T0 = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)


def test_schedule_error() -> None:
    assert s.schedule_error("*/5 * * * *") is None
    assert s.schedule_error("@daily") is None
    assert s.schedule_error("61 * * * *") is not None
    assert s.schedule_error("* * * *") is not None


def test_next_fire_time_is_strictly_after() -> None:
    assert s.next_fire_time("0 * * * *", T0) == datetime(2026, 5, 1, 13, 0, tzinfo=UTC)
    on_the_hour = datetime(2026, 5, 1, 13, 0, tzinfo=UTC)
    assert s.next_fire_time("0 * * * *", on_the_hour) == datetime(2026, 5, 1, 14, 0, tzinfo=UTC)


def test_latest_fire_time_includes_now() -> None:
    on_the_hour = datetime(2026, 5, 1, 13, 0, tzinfo=UTC)
    assert s.latest_fire_time("0 * * * *", on_the_hour) == on_the_hour
    assert s.latest_fire_time("0 * * * *", T0) == datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_nothing_due_before_the_first_fire_after_creation() -> None:
    check = s.check_schedule("0 * * * *", None, created=T0, now=T0 + timedelta(minutes=10))
    assert check.due is None
    assert check.next_time == datetime(2026, 5, 1, 13, 0, tzinfo=UTC)


def test_due_once_the_time_has_come() -> None:
    check = s.check_schedule(
        "0 * * * *", None, created=T0, now=datetime(2026, 5, 1, 13, 0, 5, tzinfo=UTC)
    )
    assert check.due == datetime(2026, 5, 1, 13, 0, tzinfo=UTC)


def test_not_due_again_for_the_same_time() -> None:
    fired = datetime(2026, 5, 1, 13, 0, tzinfo=UTC)
    check = s.check_schedule("0 * * * *", fired, created=T0, now=fired + timedelta(minutes=30))
    assert check.due is None


def test_missed_times_collapse_into_the_latest() -> None:
    last = datetime(2026, 5, 1, 13, 0, tzinfo=UTC)
    now = datetime(2026, 5, 3, 9, 15, tzinfo=UTC)
    check = s.check_schedule("0 * * * *", last, created=T0, now=now)
    assert check.due == datetime(2026, 5, 3, 9, 0, tzinfo=UTC)
    assert check.next_time == datetime(2026, 5, 3, 10, 0, tzinfo=UTC)


def run(number: int, phase: str) -> RunRecord:
    return RunRecord(run=number, phase=phase)


ACTIVE = [run(1, "Succeeded"), run(2, "Running"), run(3, "Pending")]
IDLE = [run(1, "Succeeded"), run(2, "Failed")]


@pytest.mark.parametrize("policy", ["Allow", "Forbid", "Replace"])
def test_no_active_run_always_starts(policy: s.ConcurrencyPolicy) -> None:
    assert s.decide_trigger(policy, IDLE) == s.TriggerDecision(start=True)


def test_allow_runs_side_by_side() -> None:
    assert s.decide_trigger("Allow", ACTIVE) == s.TriggerDecision(True, [], "Allowed")


def test_forbid_skips() -> None:
    assert s.decide_trigger("Forbid", ACTIVE) == s.TriggerDecision(False, [], "Forbidden")


def test_replace_cancels_the_active_runs() -> None:
    assert s.decide_trigger("Replace", ACTIVE) == s.TriggerDecision(True, [2, 3], "Replaced")


def test_suspend_wins() -> None:
    assert s.decide_trigger("Allow", IDLE, suspended=True) == s.TriggerDecision(
        False, [], "Suspended"
    )


@pytest.mark.parametrize(
    ("previous", "observed", "changed"),
    [
        (None, "etag-1", False),
        ("etag-1", "etag-1", False),
        ("etag-1", "etag-2", True),
        ("etag-1", None, False),
    ],
)
def test_dataset_changed(previous: str | None, observed: str | None, changed: bool) -> None:
    assert s.dataset_changed(previous, observed) is changed


def test_history_pruning_keeps_the_newest_of_each_kind_and_every_active_run() -> None:
    runs = [
        run(1, "Succeeded"),
        run(2, "Failed"),
        run(3, "Succeeded"),
        run(4, "Failed"),
        run(5, "Succeeded"),
        run(6, "Running"),
        run(7, "Succeeded"),
        run(8, "Failed"),
    ]
    assert s.runs_to_prune(runs, successful_limit=2, failed_limit=1) == [1, 2, 3, 4]
    assert s.runs_to_prune(runs, successful_limit=0, failed_limit=0) == [1, 2, 3, 4, 5, 7, 8]
    assert s.runs_to_prune(runs, successful_limit=10, failed_limit=10) == []


def test_run_numbers_never_repeat() -> None:
    assert s.next_run_number(0, []) == 1
    assert s.next_run_number(4, [run(2, "Succeeded")]) == 5
    assert s.next_run_number(1, [run(7, "Running")]) == 8
