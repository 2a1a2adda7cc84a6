"""kstatus conditions: set one without losing when it last changed.

kstatus (what `kubectl wait`, Flux and Argo CD read) wants three standard types:
`Ready` (the object does what it says), `Reconciling` (work in progress) and `Stalled`
(stuck until a person acts). They are "abnormal-true": Reconciling and Stalled are only
present while true, so a healthy object shows just `Ready=True`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from kiln.api.common import Condition, ConditionStatus
from kiln.api.wire import READY, RECONCILING, STALLED


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of the given type, if present."""
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    condition = find(conditions, type_)
    return condition is not None and condition.status == "True"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """A new list with the condition set, in place of any of the same type.

    `lastTransitionTime` moves only when the status changes: a reason or message update on
    an unchanged status keeps the old time, so it tells how long the state has lasted.
    """
    previous = find(conditions, type_)
    transition = (
        previous.last_transition_time
        if previous is not None
        and previous.status == status
        and previous.last_transition_time is not None
        else now
    )
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=observed_generation,
    )
    result = [c for c in conditions if c.type != type_]
    index = next((i for i, c in enumerate(conditions) if c.type == type_), len(result))
    result.insert(index, updated)
    return result


def remove_condition(conditions: Sequence[Condition], type_: str) -> list[Condition]:
    return [c for c in conditions if c.type != type_]


def mark_ready(
    conditions: Sequence[Condition],
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Ready=True; Reconciling and Stalled removed (the object has settled)."""
    result = set_condition(conditions, READY, "True", reason, message, now, observed_generation)
    return remove_condition(remove_condition(result, RECONCILING), STALLED)


def mark_reconciling(
    conditions: Sequence[Condition],
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Reconciling=True, Ready=False with the same reason; Stalled removed."""
    result = set_condition(
        conditions, RECONCILING, "True", reason, message, now, observed_generation
    )
    result = set_condition(result, READY, "False", reason, message, now, observed_generation)
    return remove_condition(result, STALLED)


def mark_stalled(
    conditions: Sequence[Condition],
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Stalled=True, Ready=False with the same reason; Reconciling removed."""
    result = set_condition(conditions, STALLED, "True", reason, message, now, observed_generation)
    result = set_condition(result, READY, "False", reason, message, now, observed_generation)
    return remove_condition(result, RECONCILING)


def mark_failed(
    conditions: Sequence[Condition],
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Ready=False at rest (a finished failure, not a stuck reconcile)."""
    result = set_condition(conditions, READY, "False", reason, message, now, observed_generation)
    return remove_condition(remove_condition(result, RECONCILING), STALLED)
