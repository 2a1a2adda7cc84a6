"""Canary analysis, pure: PromQL checks planned from the spec, results judged against bounds.

A check is a PromQL template that must return exactly one number. Templates get
`{{ selector }}` (label matchers of the track measured), `{{ interval }}` (the analysis
window), `{{ namespace }}` and `{{ name }}` filled in. The selectors use the labels
kiln-serve puts on its own series (`model`, `version`, `track`) plus the `namespace` label
every Kubernetes pod scrape config adds, so they work with the dev cluster's scrape config
and with a Prometheus Operator PodMonitor alike.

Outcomes (never a pass without evidence):
- Successful: enough canary requests, a value, inside the bounds.
- Failed: enough canary requests, a value, outside the bounds.
- Inconclusive: the query answered but without a usable number (no series, NaN), or the
  canary served fewer than `minRequests` requests in the window.
- Error: Prometheus could not be reached or rejected the query.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from kiln.api.model_deployment import AnalysisOutcome, AnalysisResult, CanarySpec

REQUESTS_METRIC = "kiln_inference_requests_total"
LATENCY_METRIC = "kiln_inference_request_duration_seconds_bucket"
ERROR_RATE_CHECK = "error-rate"
MIN_WINDOW_SECONDS = 30
REQUESTS_KEY = "canary/requests"

QueryStatus = Literal["ok", "no_data", "unreachable", "error"]


@dataclass(frozen=True)
class QueryResult:
    """What one instant query gave: a number, nothing, or why there is no answer."""

    status: QueryStatus
    value: float | None = None
    message: str = ""

    @classmethod
    def of(cls, value: float) -> QueryResult:
        if math.isnan(value):
            return cls("no_data", None, "the query returned NaN (no samples in the window)")
        return cls("ok", value)


@dataclass(frozen=True)
class VectorResult:
    """What one instant query by a label gave: label value -> number, or why not.

    `no_data` when Prometheus answered with no series; NaN samples are left out."""

    status: QueryStatus
    values: Mapping[str, float] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class CheckPlan:
    name: str
    canary_key: str
    stable_key: str | None
    min: float | None
    max: float | None
    min_requests: int


@dataclass(frozen=True)
class AnalysisPlan:
    """Queries to run (key -> PromQL) and how to judge them."""

    queries: dict[str, str]
    checks: tuple[CheckPlan, ...]
    window: str
    requests_key: str = REQUESTS_KEY

    @property
    def needs_requests(self) -> bool:
        return any(c.min_requests > 0 for c in self.checks)


@dataclass(frozen=True)
class Verdict:
    outcome: AnalysisOutcome
    results: list[AnalysisResult] = field(default_factory=list)

    def summary(self) -> str:
        return "; ".join(describe(r) for r in self.results) or "no checks configured"


def label_matchers(labels: Mapping[str, str]) -> str:
    """`a="x",b="y"` with values escaped as PromQL string literals."""
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def track_selector(namespace: str, model: str, version: str, track: str) -> str:
    return label_matchers(
        {"namespace": namespace, "model": model, "version": version, "track": track}
    )


def window_for(interval_seconds: int) -> str:
    """The range of `rate()`/`increase()`: the step interval, at least 30 s (several scrapes)."""
    return f"{max(interval_seconds, MIN_WINDOW_SECONDS)}s"


_PLACEHOLDER = re.compile(r"\{\{\s*(selector|interval|namespace|name)\s*\}\}")


def render(template: str, *, selector: str, interval: str, namespace: str, name: str) -> str:
    values = {"selector": selector, "interval": interval, "namespace": namespace, "name": name}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


SELECTOR = "{{ selector }}"
INTERVAL = "{{ interval }}"


def error_rate_template() -> str:
    """5xx share of all inference requests; 0 when there were requests but no 5xx series."""
    errors = f'sum(rate({REQUESTS_METRIC}{{{SELECTOR},code=~"5.."}}[{INTERVAL}]))'
    total = f"sum(rate({REQUESTS_METRIC}{{{SELECTOR}}}[{INTERVAL}]))"
    return f"({errors} or vector(0)) / {total}"


def latency_template(quantile: float) -> str:
    buckets = f"sum by (le) (rate({LATENCY_METRIC}{{{SELECTOR}}}[{INTERVAL}]))"
    return f"histogram_quantile({quantile:g}, {buckets})"


def requests_template() -> str:
    return f"sum(increase({REQUESTS_METRIC}{{{SELECTOR}}}[{INTERVAL}]))"


def latency_check_name(quantile: float) -> str:
    return f"latency-p{quantile * 100:g}".replace(".", "")


def plan(
    canary: CanarySpec,
    *,
    namespace: str,
    name: str,
    model: str,
    canary_version: str,
    stable_version: str | None,
) -> AnalysisPlan:
    """The queries of one analysis of `canary_version` (against `stable_version` if relative)."""
    window = window_for(canary.interval_seconds)
    canary_sel = track_selector(namespace, model, canary_version, "canary")
    stable_sel = (
        track_selector(namespace, model, stable_version, "stable") if stable_version else None
    )

    def fill(template: str, selector: str) -> str:
        return render(template, selector=selector, interval=window, namespace=namespace, name=name)

    queries = {REQUESTS_KEY: fill(requests_template(), canary_sel)}
    checks: list[CheckPlan] = []
    builtin = canary.builtin_checks
    if builtin.error_rate.enabled:
        queries["canary/" + ERROR_RATE_CHECK] = fill(error_rate_template(), canary_sel)
        checks.append(
            CheckPlan(
                ERROR_RATE_CHECK,
                "canary/" + ERROR_RATE_CHECK,
                None,
                None,
                builtin.error_rate.max_ratio,
                canary.min_requests,
            )
        )
    if builtin.latency.enabled:
        check_name = latency_check_name(builtin.latency.quantile)
        queries["canary/" + check_name] = fill(
            latency_template(builtin.latency.quantile), canary_sel
        )
        checks.append(
            CheckPlan(
                check_name,
                "canary/" + check_name,
                None,
                None,
                builtin.latency.max_seconds,
                canary.min_requests,
            )
        )
    for check in canary.checks:
        key = "canary/user/" + check.name
        queries[key] = fill(check.query, canary_sel)
        stable_key = None
        if check.relative_to_stable:
            stable_key = "stable/user/" + check.name
            # Without a stable version there is nothing to compare with: the stable query
            # is left out and the check is Inconclusive.
            if stable_sel is not None:
                queries[stable_key] = fill(check.query, stable_sel)
        min_requests = canary.min_requests if check.min_requests is None else check.min_requests
        checks.append(CheckPlan(check.name, key, stable_key, check.min, check.max, min_requests))
    return AnalysisPlan(queries=queries, checks=tuple(checks), window=window)


_MISSING = QueryResult("no_data", None, "no result for this query")


def evaluate(
    analysis: AnalysisPlan,
    results: Mapping[str, QueryResult],
    *,
    step: int,
    now: datetime,
) -> Verdict:
    """Judge every check; the overall outcome is the worst of them.

    Failed > Error > Inconclusive > Successful: one failing check fails the analysis even
    when another could not be measured; an unmeasurable check keeps it from passing.
    """
    requests_result = results.get(analysis.requests_key, _MISSING)
    judged = [_judge(c, results, requests_result, step, now) for c in analysis.checks]
    return Verdict(overall([r.outcome for r in judged]), judged)


def overall(outcomes: Sequence[AnalysisOutcome]) -> AnalysisOutcome:
    order: tuple[AnalysisOutcome, ...] = ("Failed", "Error", "Inconclusive")
    for outcome in order:
        if outcome in outcomes:
            return outcome
    return "Successful"


def _judge(
    check: CheckPlan,
    results: Mapping[str, QueryResult],
    requests_result: QueryResult,
    step: int,
    now: datetime,
) -> AnalysisResult:
    canary = results.get(check.canary_key, _MISSING)
    stable = results.get(check.stable_key, _MISSING) if check.stable_key else None
    requests = requests_result.value if requests_result.status == "ok" else None
    if requests is None and requests_result.status == "no_data":
        requests = 0.0

    def result(
        outcome: AnalysisOutcome, message: str, value: float | None = None
    ) -> AnalysisResult:
        return AnalysisResult(
            check=check.name,
            step=step,
            outcome=outcome,
            value=value if value is not None else canary.value,
            stable_value=stable.value if stable is not None else None,
            min=check.min,
            max=check.max,
            requests=requests,
            message=message[:1024],
            time=now,
        )

    for what, answer in (("canary", canary), ("stable", stable), ("requests", requests_result)):
        if answer is not None and answer.status in ("unreachable", "error"):
            if what == "requests" and check.min_requests == 0:
                continue
            return result("Error", f"{what} query: {answer.status}: {answer.message}")
    if check.min_requests > 0 and (requests or 0.0) < check.min_requests:
        return result(
            "Inconclusive",
            f"only {requests or 0.0:g} canary requests in the window, "
            f"{check.min_requests} needed before the check counts",
        )
    if canary.status != "ok" or canary.value is None:
        return result("Inconclusive", f"canary query: no data ({canary.message or 'empty'})")
    value = canary.value
    if check.stable_key is not None:
        if stable is None or stable.status != "ok" or stable.value is None:
            text = stable.message if stable is not None else ""
            return result("Inconclusive", f"stable query: no data ({text or 'empty'})")
        value = canary.value - stable.value
    inside = (check.min is None or value >= check.min) and (check.max is None or value <= check.max)
    label = "canary - stable" if check.stable_key else "value"
    text = f"{label} {value:.6g} {'within' if inside else 'outside'} {bounds_text(check)}"
    return result("Successful" if inside else "Failed", text, value)


def bounds_text(check: CheckPlan | AnalysisResult) -> str:
    low = "-inf" if check.min is None else f"{check.min:g}"
    high = "+inf" if check.max is None else f"{check.max:g}"
    return f"[{low}, {high}]"


def describe(result: AnalysisResult) -> str:
    value = "n/a" if result.value is None else f"{result.value:.4g}"
    return f"{result.check}={value} {bounds_text(result)} {result.outcome}"
