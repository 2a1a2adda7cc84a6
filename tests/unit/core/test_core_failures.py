"""How a failed reconcile is shown: which failures stall, which retry, and how soon."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kiln.core import conditions as cond
from kiln.core import failures

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 1, tzinfo=UTC)
SERVICES = "POST /api/v1/namespaces/prod/services"


@pytest.mark.parametrize(
    ("status", "message", "reason", "permanent"),
    [
        (
            422,
            'Service "x" is invalid: metadata.name: must be no more than 63',
            "ObjectRejected",
            True,
        ),
        (400, "bad request", "ObjectRejected", True),
        (403, 'cannot create resource "pods"', "Forbidden", True),
        (404, "the server could not find the requested resource", "ResourceNotFound", True),
        (404, 'deployments.apps "iris-stable" not found', "ObjectNotFound", False),
        (409, "the object has been modified", "WriteConflict", False),
        (429, "too many requests", "ApiUnavailable", False),
        (500, "etcdserver: request timed out", "ApiUnavailable", False),
        (503, "etcdserver: leader changed", "ApiUnavailable", False),
    ],
)
def test_apiserver_answers_stall_only_when_no_retry_can_help(
    status: int, message: str, reason: str, permanent: bool
) -> None:
    failure = failures.api_failure(status, message, SERVICES)
    assert (failure.reason, failure.permanent) == (reason, permanent)
    assert failure.message == f"{SERVICES}: {status} {message}"


def test_unreachable_and_unexpected_failures_are_retried() -> None:
    assert not failures.unreachable("Connection refused").permanent
    bug = failures.unexpected("KeyError", "'spec'")
    assert (bug.reason, bug.message, bug.permanent) == ("ReconcileError", "KeyError: 'spec'", False)


def test_a_message_is_one_bounded_line() -> None:
    assert failures.compose("first\n  second\tthird") == "first second third"
    long = failures.compose("x" * 5000)
    assert len(long) == failures.MAX_MESSAGE and long.endswith("…")


def test_a_permanent_failure_stalls_and_a_transient_one_reconciles() -> None:
    rejected = failures.api_failure(422, "invalid", SERVICES)
    stalled = failures.failure_conditions([], rejected, NOW, 3)
    assert cond.is_true(stalled, "Stalled") and not cond.is_true(stalled, "Ready")
    assert cond.find(stalled, "Stalled").reason == "ObjectRejected"  # type: ignore[union-attr]
    assert cond.find(stalled, "Stalled").observed_generation == 3  # type: ignore[union-attr]

    unavailable = failures.api_failure(503, "leader changed", SERVICES)
    retrying = failures.failure_conditions(stalled, unavailable, NOW, 3)
    assert cond.is_true(retrying, "Reconciling") and cond.find(retrying, "Stalled") is None
    assert "leader changed" in cond.find(retrying, "Reconciling").message  # type: ignore[union-attr]


def test_transient_failures_back_off_to_a_minute_and_stalls_resync_slowly() -> None:
    transient = failures.unreachable("refused")
    assert [failures.retry_after(transient, n) for n in (1, 2, 3, 7, 50)] == [1, 2, 4, 60, 60]
    permanent = failures.api_failure(403, "forbidden")
    assert failures.retry_after(permanent, 1) == failures.STALLED_RESYNC_SECONDS
