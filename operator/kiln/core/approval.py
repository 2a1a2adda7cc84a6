"""The registration policy: does a new ModelVersion pass its gates?

Every gate becomes an `ApprovalCheck` with the values it compared, so a Rejected version
says exactly why. A missing value never passes (fail closed). A person can then approve or
reject by hand; who, when and why are recorded next to the checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from kiln.api.metrics import higher_is_better
from kiln.api.model_version import Approval, ApprovalCheck, FairnessReport
from kiln.api.training_job import (
    FairnessGate,
    MetricThreshold,
    NotWorseThanApproved,
    RegistrationPolicy,
)

POLICY_ACTOR = "kiln-operator"


@dataclass(frozen=True)
class Baseline:
    """The Approved version a new one is compared with."""

    name: str
    metrics: Mapping[str, float]


def check_threshold(threshold: MetricThreshold, metrics: Mapping[str, float]) -> ApprovalCheck:
    name = f"threshold/{threshold.metric}"
    value = metrics.get(threshold.metric)
    bounds = dict(metric=threshold.metric, min=threshold.min, max=threshold.max)
    if value is None:
        return ApprovalCheck(
            name=name, passed=False, message=f"{threshold.metric} was not reported", **bounds
        )
    too_low = threshold.min is not None and value < threshold.min
    too_high = threshold.max is not None and value > threshold.max
    if too_low:
        message = f"{threshold.metric}={value:g} is below the minimum {threshold.min:g}"
    elif too_high:
        message = f"{threshold.metric}={value:g} is above the maximum {threshold.max:g}"
    else:
        message = f"{threshold.metric}={value:g} is within bounds"
    return ApprovalCheck(
        name=name, passed=not (too_low or too_high), value=value, message=message, **bounds
    )


def check_not_worse(
    gate: NotWorseThanApproved, metrics: Mapping[str, float], baseline: Baseline | None
) -> ApprovalCheck:
    metric = gate.metric
    name = f"notWorseThanApproved/{metric}"
    value = metrics.get(metric)
    if value is None:
        return ApprovalCheck(
            name=name, passed=False, metric=metric, message=f"{metric} was not reported"
        )
    if baseline is None:
        return ApprovalCheck(
            name=name,
            passed=True,
            metric=metric,
            value=value,
            message="no Approved version to compare with",
        )
    reference = baseline.metrics.get(metric)
    if reference is None:
        return ApprovalCheck(
            name=name,
            passed=True,
            metric=metric,
            value=value,
            baseline_version=baseline.name,
            message=f"{baseline.name} has no {metric} to compare with",
        )
    delta = gate.max_degradation
    if higher_is_better(metric):
        bound_min, bound_max = reference - delta, None
        passed = value >= reference - delta
    else:
        bound_min, bound_max = None, reference + delta
        passed = value <= reference + delta
    verdict = "not worse than" if passed else "worse than"
    return ApprovalCheck(
        name=name,
        passed=passed,
        metric=metric,
        value=value,
        min=bound_min,
        max=bound_max,
        baseline=reference,
        baseline_version=baseline.name,
        message=f"{metric}={value:g} is {verdict} {baseline.name} ({reference:g}) "
        f"allowing a degradation of {delta:g}",
    )


def check_fairness(gate: FairnessGate, report: FairnessReport | None) -> ApprovalCheck:
    name = f"fairness/{gate.sensitive_column}/{gate.metric}"
    base = dict(metric=gate.metric, max=gate.max_gap)
    if report is None or report.column != gate.sensitive_column:
        return ApprovalCheck(
            name=name,
            passed=False,
            message=f"no per-group {gate.metric} was reported for column {gate.sensitive_column}",
            **base,
        )
    if report.metric != gate.metric:
        return ApprovalCheck(
            name=name,
            passed=False,
            message=f"the trainer measured {report.metric} per group, not {gate.metric}",
            **base,
        )
    gap = report.gap
    if gap is None and len(report.groups) >= 2:
        gap = max(report.groups.values()) - min(report.groups.values())
    if gap is None:
        return ApprovalCheck(
            name=name,
            passed=False,
            message=f"fewer than two groups of {gate.sensitive_column} in the test split",
            **base,
        )
    passed = gap <= gate.max_gap
    verdict = "within" if passed else "above"
    return ApprovalCheck(
        name=name,
        passed=passed,
        value=gap,
        message=f"{gate.metric} gap across {gate.sensitive_column} is {gap:g}, {verdict} "
        f"the maximum {gate.max_gap:g}",
        **base,
    )


def evaluate_policy(
    policy: RegistrationPolicy,
    metrics: Mapping[str, float],
    fairness: FairnessReport | None,
    baseline: Baseline | None,
    now: datetime,
) -> Approval:
    """Approved, Rejected (with the failing checks named) or Pending for a person."""
    checks = [check_threshold(t, metrics) for t in policy.thresholds]
    if policy.not_worse_than_approved is not None:
        checks.append(check_not_worse(policy.not_worse_than_approved, metrics, baseline))
    if policy.fairness is not None:
        checks.append(check_fairness(policy.fairness, fairness))
    failed = [c for c in checks if not c.passed]
    if failed:
        reason = "failed " + "; ".join(f"{c.name}: {c.message}" for c in failed)
        return Approval(state="Rejected", by=POLICY_ACTOR, at=now, reason=reason, checks=checks)
    summary = f"passed {len(checks)} check(s)" if checks else "no checks configured"
    if policy.approval == "manual":
        return Approval(
            state="Pending", reason=f"{summary}; waiting for a person to approve", checks=checks
        )
    return Approval(state="Approved", by=POLICY_ACTOR, at=now, reason=summary, checks=checks)


class ApprovalError(ValueError):
    """A manual decision that cannot be recorded as asked."""


ManualState = Literal["Approved", "Rejected"]


def decide_manually(
    current: Approval, state: ManualState, by: str, reason: str, now: datetime
) -> Approval:
    """A person's decision, recorded with who, when and why; the policy's checks are kept.

    Overriding the policy (approving a version that failed a check) needs a reason.
    """
    if not by.strip():
        raise ApprovalError("a manual decision must say who made it")
    overrides = state == "Approved" and any(not c.passed for c in current.checks)
    if overrides and not reason.strip():
        raise ApprovalError("approving a version that failed its checks needs a reason")
    return Approval(
        state=state,
        by=by,
        at=now,
        reason=reason.strip() or f"{state.lower()} by {by}",
        checks=current.checks,
    )


def headline_metric(metrics: Mapping[str, float], preferred: list[str]) -> str | None:
    """`name=value` of the first preferred metric reported (else the first by name)."""
    for name in [*preferred, *sorted(metrics)]:
        if name in metrics:
            return f"{name}={metrics[name]:.4g}"
    return None
