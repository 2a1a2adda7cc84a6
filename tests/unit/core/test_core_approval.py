from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kiln.api.model_version import Approval, ApprovalCheck, FairnessReport
from kiln.api.training_job import (
    FairnessGate,
    MetricThreshold,
    NotWorseThanApproved,
    RegistrationPolicy,
)
from kiln.core import approval as ap

pytestmark = pytest.mark.unit

NOW = datetime(2026, 4, 1, tzinfo=UTC)


# --- thresholds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "value", "passed"),
    [
        (0.9, None, 0.95, True),
        (0.9, None, 0.9, True),
        (0.9, None, 0.89, False),
        (None, 0.5, 0.4, True),
        (None, 0.5, 0.51, False),
        (0.1, 0.2, 0.15, True),
        (0.1, 0.2, 0.25, False),
    ],
)
def test_threshold(low: float | None, high: float | None, value: float, passed: bool) -> None:
    check = ap.check_threshold(
        MetricThreshold(metric="accuracy", min=low, max=high), {"accuracy": value}
    )
    assert check.passed is passed
    assert (check.name, check.value, check.min, check.max) == (
        "threshold/accuracy",
        value,
        low,
        high,
    )
    assert "accuracy" in check.message


def test_missing_metric_fails_the_threshold() -> None:
    check = ap.check_threshold(MetricThreshold(metric="r2", min=0.5), {"accuracy": 1.0})
    assert not check.passed
    assert check.value is None
    assert "not reported" in check.message


# --- not worse than approved --------------------------------------------------------------


def gate(metric: str, delta: float) -> NotWorseThanApproved:
    return NotWorseThanApproved(metric=metric, max_degradation=delta)


@pytest.mark.parametrize(
    ("metric", "baseline", "value", "delta", "passed"),
    [
        ("accuracy", 0.95, 0.96, 0.0, True),
        ("accuracy", 0.95, 0.95, 0.0, True),
        ("accuracy", 0.95, 0.94, 0.0, False),
        ("accuracy", 0.95, 0.94, 0.02, True),
        ("accuracy", 0.95, 0.92, 0.02, False),
        ("rmse", 10.0, 9.0, 0.0, True),
        ("rmse", 10.0, 10.5, 0.0, False),
        ("rmse", 10.0, 10.5, 1.0, True),
        ("rmse", 10.0, 11.5, 1.0, False),
        ("log_loss", 0.3, 0.2, 0.0, True),
    ],
)
def test_not_worse_respects_metric_direction(
    metric: str, baseline: float, value: float, delta: float, passed: bool
) -> None:
    check = ap.check_not_worse(
        gate(metric, delta), {metric: value}, ap.Baseline("iris-v3", {metric: baseline})
    )
    assert check.passed is passed
    assert check.baseline == baseline
    assert check.baseline_version == "iris-v3"
    assert check.value == value
    assert "iris-v3" in check.message


def test_not_worse_reports_the_bound_on_the_right_side() -> None:
    higher = ap.check_not_worse(
        gate("accuracy", 0.05), {"accuracy": 0.9}, ap.Baseline("v", {"accuracy": 0.9})
    )
    assert (higher.min, higher.max) == (pytest.approx(0.85), None)
    lower = ap.check_not_worse(gate("mae", 0.5), {"mae": 1.0}, ap.Baseline("v", {"mae": 2.0}))
    assert (lower.min, lower.max) == (None, 2.5)


def test_first_version_has_nothing_to_be_worse_than() -> None:
    check = ap.check_not_worse(gate("accuracy", 0), {"accuracy": 0.5}, None)
    assert check.passed
    assert "no Approved version" in check.message


def test_baseline_without_the_metric_passes_with_a_note() -> None:
    check = ap.check_not_worse(gate("r2", 0), {"r2": 0.5}, ap.Baseline("iris-v1", {"accuracy": 1}))
    assert check.passed
    assert "has no r2" in check.message


def test_new_version_missing_the_metric_fails() -> None:
    check = ap.check_not_worse(gate("r2", 0), {}, ap.Baseline("iris-v1", {"r2": 0.5}))
    assert not check.passed


# --- fairness -------------------------------------------------------------------------------

FAIR = FairnessGate(sensitive_column="sex", metric="accuracy", max_gap=0.05)


def report(
    gap: float | None, groups: dict[str, float] | None = None, **changes: str
) -> FairnessReport:
    values = {"column": "sex", "metric": "accuracy", "gap": gap, "groups": groups or {}}
    values.update(changes)
    return FairnessReport.model_validate(values)


@pytest.mark.parametrize(("gap", "passed"), [(0.01, True), (0.05, True), (0.051, False)])
def test_fairness_gap(gap: float, passed: bool) -> None:
    check = ap.check_fairness(FAIR, report(gap))
    assert check.passed is passed
    assert (check.name, check.value, check.max) == ("fairness/sex/accuracy", gap, 0.05)


def test_fairness_gap_is_computed_from_groups_when_absent() -> None:
    check = ap.check_fairness(FAIR, report(None, {"f": 0.9, "m": 0.8}))
    assert not check.passed
    assert check.value == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("observed", "fragment"),
    [
        (None, "no per-group accuracy"),
        (report(0.0, column="age"), "no per-group accuracy"),
        (report(0.0, metric="f1_macro"), "measured f1_macro"),
        (report(None, {"f": 0.9}), "fewer than two groups"),
    ],
)
def test_fairness_fails_closed(observed: FairnessReport | None, fragment: str) -> None:
    check = ap.check_fairness(FAIR, observed)
    assert not check.passed
    assert fragment in check.message


# --- the whole policy ---------------------------------------------------------------------

POLICY = RegistrationPolicy(
    thresholds=[MetricThreshold(metric="accuracy", min=0.9)],
    not_worse_than_approved=gate("accuracy", 0.01),
    fairness=FAIR,
)
GOOD = {"accuracy": 0.95}
BASE = ap.Baseline("iris-v1", {"accuracy": 0.94})


def test_everything_passes_auto_approves() -> None:
    approval = ap.evaluate_policy(POLICY, GOOD, report(0.01), BASE, NOW)
    assert approval.state == "Approved"
    assert (approval.by, approval.at) == ("kiln-operator", NOW)
    assert [c.name for c in approval.checks] == [
        "threshold/accuracy",
        "notWorseThanApproved/accuracy",
        "fairness/sex/accuracy",
    ]
    assert all(c.passed for c in approval.checks)


def test_a_failing_check_rejects_and_names_every_failure() -> None:
    approval = ap.evaluate_policy(POLICY, {"accuracy": 0.85}, report(0.2), BASE, NOW)
    assert approval.state == "Rejected"
    assert approval.by == "kiln-operator"
    assert approval.reason is not None
    assert "threshold/accuracy" in approval.reason
    assert "notWorseThanApproved/accuracy" in approval.reason
    assert "fairness/sex/accuracy" in approval.reason
    assert [c.passed for c in approval.checks] == [False, False, False]


def test_manual_mode_waits_for_a_person_when_checks_pass() -> None:
    manual = POLICY.model_copy(update={"approval": "manual"})
    approval = ap.evaluate_policy(manual, GOOD, report(0.0), BASE, NOW)
    assert approval.state == "Pending"
    assert approval.by is None and approval.at is None
    assert len(approval.checks) == 3


def test_manual_mode_still_rejects_a_failing_model() -> None:
    manual = POLICY.model_copy(update={"approval": "manual"})
    assert ap.evaluate_policy(manual, {"accuracy": 0.1}, report(0.0), BASE, NOW).state == "Rejected"


def test_no_gates_auto_approves() -> None:
    approval = ap.evaluate_policy(RegistrationPolicy(), {}, None, None, NOW)
    assert approval.state == "Approved"
    assert approval.checks == []
    assert approval.reason == "no checks configured"


# --- a person decides -----------------------------------------------------------------------

FAILED_CHECKS = Approval(
    state="Rejected",
    checks=[ApprovalCheck(name="threshold/accuracy", passed=False, value=0.5, min=0.9)],
)


def test_manual_approval_records_who_when_why_and_keeps_checks() -> None:
    pending = Approval(state="Pending", checks=[ApprovalCheck(name="x", passed=True)])
    approved = ap.decide_manually(pending, "Approved", "alice@example.com", "looks good", NOW)
    assert approved == Approval(
        state="Approved", by="alice@example.com", at=NOW, reason="looks good", checks=pending.checks
    )


def test_manual_rejection_without_reason_gets_a_default_reason() -> None:
    rejected = ap.decide_manually(Approval(), "Rejected", "bob", "  ", NOW)
    assert (rejected.state, rejected.reason, rejected.by) == ("Rejected", "rejected by bob", "bob")


def test_overriding_failed_checks_needs_a_reason() -> None:
    with pytest.raises(ap.ApprovalError, match="needs a reason"):
        ap.decide_manually(FAILED_CHECKS, "Approved", "alice", "", NOW)
    approved = ap.decide_manually(FAILED_CHECKS, "Approved", "alice", "business override", NOW)
    assert approved.state == "Approved" and approved.checks == FAILED_CHECKS.checks


def test_a_decision_needs_a_person() -> None:
    with pytest.raises(ap.ApprovalError, match="who"):
        ap.decide_manually(Approval(), "Approved", " ", "ok", NOW)


def test_headline_metric() -> None:
    assert ap.headline_metric({"accuracy": 0.973456, "f1_macro": 0.9}, ["accuracy"]) == (
        "accuracy=0.9735"
    )
    assert ap.headline_metric({"r2": 0.5, "mae": 2.0}, ["accuracy"]) == "mae=2"
    assert ap.headline_metric({}, ["accuracy"]) is None
