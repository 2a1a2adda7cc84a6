"""Canary analysis: PromQL planned from the spec, results judged against their bounds."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from kiln.api.model_deployment import CanarySpec, MetricCheck
from kiln.core import analysis as an
from kiln.core.analysis import QueryResult

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OK = QueryResult.of


def _plan(**canary: object) -> an.AnalysisPlan:
    return an.plan(
        CanarySpec.model_validate(canary),
        namespace="prod",
        name="iris",
        model="iris",
        canary_version="iris-v2",
        stable_version="iris-v1",
    )


def test_builtin_queries_select_the_canary_of_this_version() -> None:
    plan = _plan(intervalSeconds=60)
    selector = 'namespace="prod",model="iris",version="iris-v2",track="canary"'
    assert plan.queries[an.REQUESTS_KEY] == (
        f"sum(increase(kiln_inference_requests_total{{{selector}}}[60s]))"
    )
    assert plan.queries["canary/error-rate"] == (
        f'(sum(rate(kiln_inference_requests_total{{{selector},code=~"5.."}}[60s])) '
        f"or vector(0)) / sum(rate(kiln_inference_requests_total{{{selector}}}[60s]))"
    )
    assert plan.queries["canary/latency-p99"] == (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(kiln_inference_request_duration_seconds_bucket{{{selector}}}[60s])))"
    )
    assert [c.name for c in plan.checks] == ["error-rate", "latency-p99"]
    assert plan.checks[0].max == 0.01 and plan.checks[1].max == 0.5


def test_window_is_at_least_thirty_seconds() -> None:
    assert _plan(intervalSeconds=5).window == "30s"
    assert _plan(intervalSeconds=120).window == "120s"


def test_builtins_can_be_switched_off() -> None:
    plan = _plan(builtinChecks={"errorRate": {"enabled": False}, "latency": {"enabled": False}})
    assert plan.checks == ()
    assert list(plan.queries) == [an.REQUESTS_KEY]


def test_user_check_template_is_filled_for_canary_and_stable() -> None:
    check = MetricCheck(
        name="accuracy-drop",
        query="avg(my_metric{ {{selector}} }[{{ interval }}]) + 0*{{namespace}}_{{ name }}",
        max=0.05,
        relative_to_stable=True,
        min_requests=5,
    )
    plan = _plan(checks=[check.to_wire()], intervalSeconds=45)
    canary = plan.queries["canary/user/accuracy-drop"]
    stable = plan.queries["stable/user/accuracy-drop"]
    assert 'version="iris-v2",track="canary"' in canary and "[45s]" in canary
    assert 'version="iris-v1",track="stable"' in stable
    assert canary.endswith("0*prod_iris")
    user = plan.checks[-1]
    assert (user.stable_key, user.min_requests, user.max) == ("stable/user/accuracy-drop", 5, 0.05)


def test_label_values_are_escaped() -> None:
    assert an.label_matchers({"a": 'x"y\\z'}) == 'a="x\\"y\\\\z"'


def test_latency_check_name_follows_the_quantile() -> None:
    assert an.latency_check_name(0.99) == "latency-p99"
    assert an.latency_check_name(0.5) == "latency-p50"
    assert an.latency_check_name(0.995) == "latency-p995"


def test_nan_is_no_data() -> None:
    assert QueryResult.of(math.nan).status == "no_data"
    assert QueryResult.of(1.5) == QueryResult("ok", 1.5)


ERROR_RATE = an.CheckPlan("error-rate", "c", None, None, 0.01, 20)
RELATIVE = an.CheckPlan("drift", "c", "s", -0.1, 0.1, 20)
NO_MIN = an.CheckPlan("any", "c", None, 1.0, None, 0)


@pytest.mark.parametrize(
    ("check", "results", "outcome", "value", "message"),
    [
        (ERROR_RATE, {"c": OK(0.0), "r": OK(100)}, "Successful", 0.0, "within [-inf, 0.01]"),
        (ERROR_RATE, {"c": OK(0.01), "r": OK(100)}, "Successful", 0.01, "within"),
        (ERROR_RATE, {"c": OK(0.2), "r": OK(100)}, "Failed", 0.2, "outside [-inf, 0.01]"),
        (ERROR_RATE, {"c": OK(0.2), "r": OK(19)}, "Inconclusive", 0.2, "only 19 canary"),
        (ERROR_RATE, {"c": OK(0.0), "r": QueryResult("no_data")}, "Inconclusive", 0.0, "only 0"),
        (ERROR_RATE, {"r": OK(100)}, "Inconclusive", None, "no data"),
        (
            ERROR_RATE,
            {"c": QueryResult("no_data", None, "empty"), "r": OK(100)},
            "Inconclusive",
            None,
            "no data",
        ),
        (
            ERROR_RATE,
            {"c": QueryResult("unreachable", None, "refused"), "r": OK(100)},
            "Error",
            None,
            "canary query: unreachable: refused",
        ),
        (
            ERROR_RATE,
            {"c": OK(0.0), "r": QueryResult("unreachable", None, "refused")},
            "Error",
            0.0,
            "requests query: unreachable",
        ),
        (
            ERROR_RATE,
            {"c": QueryResult("error", None, "bad_data: parse error"), "r": OK(100)},
            "Error",
            None,
            "parse error",
        ),
        (RELATIVE, {"c": OK(0.9), "s": OK(0.85), "r": OK(50)}, "Successful", 0.05, "canary - "),
        (RELATIVE, {"c": OK(0.6), "s": OK(0.9), "r": OK(50)}, "Failed", -0.3, "outside"),
        (RELATIVE, {"c": OK(0.6), "r": OK(50)}, "Inconclusive", 0.6, "stable query: no data"),
        (
            RELATIVE,
            {"c": OK(0.6), "s": QueryResult("unreachable", None, "x"), "r": OK(50)},
            "Error",
            0.6,
            "stable query",
        ),
        # A check that needs no requests ignores a failing request count.
        (NO_MIN, {"c": OK(2.0), "r": QueryResult("unreachable")}, "Successful", 2.0, "within"),
        (NO_MIN, {"c": OK(0.5)}, "Failed", 0.5, "outside [1, +inf]"),
    ],
)
def test_judging_one_check(
    check: an.CheckPlan,
    results: dict[str, QueryResult],
    outcome: str,
    value: float | None,
    message: str,
) -> None:
    plan = an.AnalysisPlan(queries={}, checks=(check,), window="30s", requests_key="r")
    verdict = an.evaluate(plan, results, step=2, now=NOW)
    (result,) = verdict.results
    assert verdict.outcome == outcome
    assert result.outcome == outcome
    assert result.value == pytest.approx(value) if value is not None else result.value is None
    assert message in result.message
    assert (result.step, result.time, result.min, result.max) == (2, NOW, check.min, check.max)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([], "Successful"),
        (["Successful", "Successful"], "Successful"),
        (["Successful", "Inconclusive"], "Inconclusive"),
        (["Inconclusive", "Error"], "Error"),
        (["Error", "Failed", "Inconclusive"], "Failed"),
    ],
)
def test_overall_outcome_is_the_worst(outcomes: list[str], expected: str) -> None:
    assert an.overall(outcomes) == expected  # type: ignore[arg-type]


def test_summary_lists_values_and_bounds() -> None:
    plan = an.AnalysisPlan(queries={}, checks=(ERROR_RATE,), window="30s", requests_key="r")
    verdict = an.evaluate(plan, {"c": OK(0.5), "r": OK(40)}, step=0, now=NOW)
    assert verdict.summary() == "error-rate=0.5 [-inf, 0.01] Failed"
