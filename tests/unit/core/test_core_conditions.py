from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kiln.api.common import Condition
from kiln.core import conditions as c

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_condition_gets_now_as_transition_time() -> None:
    result = c.set_condition([], "Ready", "False", "Pending", "waiting", T0, 3)
    assert result == [
        Condition(
            type="Ready",
            status="False",
            reason="Pending",
            message="waiting",
            last_transition_time=T0,
            observed_generation=3,
        )
    ]


def test_same_status_keeps_transition_time_but_updates_reason_and_message() -> None:
    first = c.set_condition([], "Ready", "False", "Pending", "waiting", T0)
    second = c.set_condition(first, "Ready", "False", "Running", "training", T1, 4)
    assert second[0].last_transition_time == T0
    assert (second[0].reason, second[0].message, second[0].observed_generation) == (
        "Running",
        "training",
        4,
    )


def test_status_change_moves_transition_time() -> None:
    first = c.set_condition([], "Ready", "False", "Pending", "", T0)
    second = c.set_condition(first, "Ready", "True", "Succeeded", "", T1)
    assert second[0].last_transition_time == T1


def test_missing_transition_time_is_filled_even_without_change() -> None:
    legacy = [Condition(type="Ready", status="True")]
    assert c.set_condition(legacy, "Ready", "True", "Ok", "", T1)[0].last_transition_time == T1


def test_setting_keeps_other_conditions_and_their_order() -> None:
    start = c.set_condition([], "Ready", "False", "A", "", T0)
    start = c.set_condition(start, "Approved", "True", "B", "", T0)
    updated = c.set_condition(start, "Ready", "True", "C", "", T1)
    assert [x.type for x in updated] == ["Ready", "Approved"]
    assert updated[1] == start[1]
    assert start[0].status == "False", "the input list must not be modified"


def test_find_and_is_true() -> None:
    conds = c.set_condition([], "Ready", "True", "Ok", "", T0)
    assert c.find(conds, "Ready") is conds[0]
    assert c.find(conds, "Stalled") is None
    assert c.is_true(conds, "Ready")
    assert not c.is_true(conds, "Stalled")


def test_reconciling_sets_ready_false_and_clears_stalled() -> None:
    conds = c.mark_stalled([], "InvalidSpec", "bad", T0)
    conds = c.mark_reconciling(conds, "Running", "training", T1)
    assert {x.type: x.status for x in conds} == {"Reconciling": "True", "Ready": "False"}
    assert c.find(conds, "Ready") is not None


def test_stalled_sets_ready_false_and_clears_reconciling() -> None:
    conds = c.mark_reconciling([], "Running", "", T0)
    conds = c.mark_stalled(conds, "BackoffLimitExceeded", "gave up", T1, 7)
    assert {x.type: x.status for x in conds} == {"Stalled": "True", "Ready": "False"}
    stalled = c.find(conds, "Stalled")
    assert stalled is not None and stalled.reason == "BackoffLimitExceeded"
    assert stalled.observed_generation == 7
    ready = c.find(conds, "Ready")
    assert ready is not None and ready.last_transition_time == T0, "Ready stayed False"


def test_ready_clears_reconciling_and_stalled() -> None:
    conds = c.mark_reconciling([], "Running", "", T0)
    conds = c.mark_ready(conds, "Succeeded", "done", T1)
    assert [(x.type, x.status) for x in conds] == [("Ready", "True")]


def test_failed_is_ready_false_at_rest() -> None:
    conds = c.mark_reconciling([], "Running", "", T0)
    conds = c.mark_failed(conds, "DeadlineExceeded", "too slow", T1)
    assert [(x.type, x.status, x.reason) for x in conds] == [("Ready", "False", "DeadlineExceeded")]
