"""A failed reconcile as the user sees it: a condition and an Event, never only a log line.

The controller chassis catches whatever a reconcile raised and describes it here as a
`Failure`: permanent when retrying cannot help until a person acts (the apiserver refused
an object as invalid, RBAC forbids a verb, a resource type is not installed), transient
otherwise (the apiserver is unreachable, overloaded, or a write raced another).

- permanent: `Stalled=True` with the reason, and the object is looked at again only slowly;
- transient: `Reconciling=True` with the error, and the key is retried with back-off.

Either way a Warning Event names the cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from kiln.api.common import Condition
from kiln.api.wire import (
    API_UNAVAILABLE,
    FORBIDDEN,
    OBJECT_NOT_FOUND,
    OBJECT_REJECTED,
    RECONCILE_ERROR,
    RESOURCE_NOT_FOUND,
    WRITE_CONFLICT,
)
from kiln.core import conditions as cond

# Back-off of transient failures: 1 s, 2 s, 4 s … at most a minute.
BACKOFF_CAP_SECONDS = 60
# A permanent failure is looked at again this often (the fix may be outside the object:
# RBAC granted, a CRD installed).
STALLED_RESYNC_SECONDS = 60.0
MAX_MESSAGE = 1024

# apiserver answers that no retry fixes, and the reason each becomes.
PERMANENT_STATUSES: dict[int, str] = {
    400: OBJECT_REJECTED,
    403: FORBIDDEN,
    405: OBJECT_REJECTED,
    422: OBJECT_REJECTED,
}
# A 404 is permanent only when the resource type itself is not served (a CRD such as the
# Gateway API's HTTPRoute is not installed); an object gone between two requests is a race.
MISSING_RESOURCE_TYPE = "the server could not find the requested resource"


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    permanent: bool


def api_failure(status: int, message: str, request: str = "") -> Failure:
    """An apiserver answer (`status`, its message) to `request` (e.g. "POST …/services")."""
    detail = f"{request}: {status} {message}" if request else f"{status} {message}"
    reason = PERMANENT_STATUSES.get(status)
    if status == 404 and MISSING_RESOURCE_TYPE in message:
        reason = RESOURCE_NOT_FOUND
    if reason is not None:
        return Failure(reason, compose(detail), permanent=True)
    transient = {404: OBJECT_NOT_FOUND, 409: WRITE_CONFLICT}.get(status, API_UNAVAILABLE)
    return Failure(transient, compose(detail), permanent=False)


def unreachable(error: str, request: str = "") -> Failure:
    """The apiserver (or another peer) could not be reached at all."""
    detail = f"{request}: {error}" if request else error
    return Failure(API_UNAVAILABLE, compose(detail), permanent=False)


def unexpected(error_type: str, error: str) -> Failure:
    """A bug or an unforeseen state: retried, and shown so that it gets reported."""
    return Failure(RECONCILE_ERROR, compose(f"{error_type}: {error}"), permanent=False)


def compose(message: str) -> str:
    """One line, bounded: what a condition message and an Event can carry."""
    line = " ".join(message.split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


def failure_conditions(
    conditions: Sequence[Condition],
    failure: Failure,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Stalled for a permanent failure, Reconciling for a transient one; Ready=False."""
    mark = cond.mark_stalled if failure.permanent else cond.mark_reconciling
    return mark(conditions, failure.reason, failure.message, now, generation)


def backoff_seconds(failures: int) -> float:
    """Delay before retrying after `failures` (>= 1) transient failures in a row."""
    return float(min(2 ** max(failures - 1, 0), BACKOFF_CAP_SECONDS))


def retry_after(failure: Failure, failures: int) -> float:
    """When to look again after a failed reconcile."""
    return STALLED_RESYNC_SECONDS if failure.permanent else backoff_seconds(failures)
