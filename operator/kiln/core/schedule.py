"""Continuous training triggers: cron schedule, dataset change, concurrency and history.

Semantics follow batch/v1 CronJob where users expect them to: a missed schedule starts at
most one run (the latest missed time), `Forbid` skips a trigger while a run is active,
`Replace` cancels the active runs first, `Allow` runs them side by side, and the history
limits keep the pods of the newest finished runs only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from croniter import croniter

from kiln.api.training_job import ConcurrencyPolicy, RunRecord

ACTIVE_PHASES = ("Pending", "Running")


def schedule_error(schedule: str) -> str | None:
    """Why the cron expression is unusable, or None when croniter accepts it."""
    if not croniter.is_valid(schedule):
        return f"invalid cron schedule {schedule!r}"
    return None


def next_fire_time(schedule: str, after: datetime) -> datetime:
    """The first scheduled time strictly after `after` (UTC)."""
    fire: datetime = croniter(schedule, after.astimezone(UTC)).get_next(datetime)
    return fire.astimezone(UTC)


def latest_fire_time(schedule: str, now: datetime) -> datetime:
    """The latest scheduled time at or before `now` (UTC)."""
    # croniter's get_prev is strictly before its start; one second later makes it "at or".
    start = now.astimezone(UTC) + timedelta(seconds=1)
    fire: datetime = croniter(schedule, start).get_prev(datetime)
    return fire.astimezone(UTC)


@dataclass(frozen=True)
class ScheduleCheck:
    # The scheduled time to start a run for now, if any; record it as lastScheduleTime.
    due: datetime | None
    # When to look again.
    next_time: datetime


def check_schedule(
    schedule: str, last_schedule_time: datetime | None, created: datetime, now: datetime
) -> ScheduleCheck:
    """Whether the schedule fired since it last started a run, and when it fires next.

    Missed times collapse into one run (the latest), so an operator that was down for a
    day does not start a day's worth of runs on its return.
    """
    since = last_schedule_time or created
    latest = latest_fire_time(schedule, now)
    due = latest if latest > since else None
    return ScheduleCheck(due, next_fire_time(schedule, now))


def active_runs(runs: Sequence[RunRecord]) -> list[RunRecord]:
    return [r for r in runs if r.phase in ACTIVE_PHASES]


@dataclass(frozen=True)
class TriggerDecision:
    start: bool
    cancel_runs: list[int] = field(default_factory=list)
    reason: Literal["NoActiveRun", "Allowed", "Forbidden", "Replaced", "Suspended"] = "NoActiveRun"


def decide_trigger(
    policy: ConcurrencyPolicy, runs: Sequence[RunRecord], suspended: bool = False
) -> TriggerDecision:
    """What a fired trigger does, given the runs in flight."""
    if suspended:
        return TriggerDecision(start=False, reason="Suspended")
    active = active_runs(runs)
    if not active:
        return TriggerDecision(start=True)
    if policy == "Allow":
        return TriggerDecision(start=True, reason="Allowed")
    if policy == "Forbid":
        return TriggerDecision(start=False, reason="Forbidden")
    return TriggerDecision(start=True, cancel_runs=[r.run for r in active], reason="Replaced")


def dataset_changed(previous_digest: str | None, observed_digest: str | None) -> bool:
    """A change worth a run: a new digest/ETag after one was recorded.

    The first observation only records the baseline (the job's first run already trained
    on that data), and an unknown digest (store unreachable) is never a change.
    """
    if previous_digest is None or observed_digest is None:
        return False
    return previous_digest != observed_digest


def runs_to_prune(runs: Sequence[RunRecord], successful_limit: int, failed_limit: int) -> list[int]:
    """Run numbers whose pods and records go: finished runs beyond the history limits.

    Active runs are always kept. ModelVersions are never pruned: the registry is history.
    """
    succeeded = sorted((r.run for r in runs if r.phase == "Succeeded"), reverse=True)
    failed = sorted((r.run for r in runs if r.phase == "Failed"), reverse=True)
    return sorted(succeeded[successful_limit:] + failed[failed_limit:])


def next_run_number(current: int, runs: Sequence[RunRecord]) -> int:
    """Runs are numbered 1, 2, 3… and never reuse a number, even after pruning."""
    return max([current, *(r.run for r in runs)]) + 1
