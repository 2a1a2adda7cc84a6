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

The built-in drift check (`builtinChecks.drift`, off by default) reads distributions rather
than one number (`VectorQuery`, answered by `VectorResult`s): the canary's predicted classes
(or predicted-value buckets, for regressors) against stable's over the same window, and the
canary's input bins against the training shares of its own baseline, each judged by PSI
(`kiln.core.psi`). It gives the results `drift-predictions` and `drift-inputs`; too few
rows on either track, or no baseline to compare the inputs with, is Inconclusive.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from kiln.api.model_deployment import AnalysisOutcome, AnalysisResult, CanarySpec
from kiln.contract.monitoring import (
    FEATURE_BIN_METRIC,
    MAX_MONITORED_FEATURES,
    MISSING_BIN,
    Baseline,
)
from kiln.core import psi as psi_

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
class VectorQuery:
    """An instant query whose series are told apart by the label `by`."""

    promql: str
    by: str


@dataclass(frozen=True)
class DriftPlan:
    """How to judge the built-in drift check (its queries are in `vector_queries`)."""

    max_psi: float
    min_rows: int
    inputs: bool
    has_stable: bool


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
    vector_queries: dict[str, VectorQuery] = field(default_factory=dict)
    drift: DriftPlan | None = None

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
    vector_queries: dict[str, VectorQuery] = {}
    drift = None
    if builtin.drift.enabled:
        vector_queries = drift_queries(canary_sel, stable_sel, window, inputs=builtin.drift.inputs)
        drift = DriftPlan(
            max_psi=builtin.drift.max_psi,
            min_rows=builtin.drift.min_rows,
            inputs=builtin.drift.inputs,
            has_stable=stable_sel is not None,
        )
    return AnalysisPlan(
        queries=queries,
        checks=tuple(checks),
        window=window,
        vector_queries=vector_queries,
        drift=drift,
    )


# -- the built-in drift check -------------------------------------------------------------

DRIFT_PREDICTIONS_CHECK = "drift-predictions"
DRIFT_INPUTS_CHECK = "drift-inputs"
PREDICTIONS_METRIC = "kiln_predictions_total"  # classifiers: label `class`
PREDICTION_BUCKET_METRIC = "kiln_prediction_value_bucket"  # regressors: fixed `le` buckets
FEATURE_BIN_SERIES = FEATURE_BIN_METRIC + "_total"  # labels `feature`, `bin`
# The inputs query joins `feature` and `bin` into one label (query_vector reads one), with
# the ASCII unit separator between them: a character no column or category name carries
# (written `\x1f` in the PromQL string literal, which Prometheus decodes as Go does).
FEATURE_BIN_LABEL = "feature_bin"
FEATURE_BIN_SEPARATOR = "\x1f"
CANARY_CLASSES_KEY = "canary/drift/classes"
STABLE_CLASSES_KEY = "stable/drift/classes"
CANARY_BUCKETS_KEY = "canary/drift/buckets"
STABLE_BUCKETS_KEY = "stable/drift/buckets"
CANARY_INPUTS_KEY = "canary/drift/inputs"

# feature -> bin label -> share in the training data (what `feature_shares` makes).
InputBaseline = Mapping[str, Mapping[str, float]]


def classes_template() -> str:
    return f"sum by (class) (increase({PREDICTIONS_METRIC}{{{SELECTOR}}}[{INTERVAL}]))"


def buckets_template() -> str:
    return f"sum by (le) (increase({PREDICTION_BUCKET_METRIC}{{{SELECTOR}}}[{INTERVAL}]))"


def inputs_template() -> str:
    bins = f"sum by (feature, bin) (increase({FEATURE_BIN_SERIES}{{{SELECTOR}}}[{INTERVAL}]))"
    return f'label_join({bins}, "{FEATURE_BIN_LABEL}", "\\x1f", "feature", "bin")'


def drift_queries(
    canary_sel: str, stable_sel: str | None, window: str, *, inputs: bool
) -> dict[str, VectorQuery]:
    """The drift check's queries: both tracks' predicted classes and predicted-value buckets
    (whichever the model exports has data), and the canary's input bins."""

    def fill(template: str, selector: str) -> str:
        return template.replace(SELECTOR, selector).replace(INTERVAL, window)

    queries = {CANARY_CLASSES_KEY: VectorQuery(fill(classes_template(), canary_sel), "class")}
    queries[CANARY_BUCKETS_KEY] = VectorQuery(fill(buckets_template(), canary_sel), "le")
    if stable_sel is not None:
        queries[STABLE_CLASSES_KEY] = VectorQuery(fill(classes_template(), stable_sel), "class")
        queries[STABLE_BUCKETS_KEY] = VectorQuery(fill(buckets_template(), stable_sel), "le")
    if inputs:
        queries[CANARY_INPUTS_KEY] = VectorQuery(
            fill(inputs_template(), canary_sel), FEATURE_BIN_LABEL
        )
    return queries


def feature_shares(baseline: Baseline) -> dict[str, dict[str, float]]:
    """A ModelVersion's training shares per feature and bin, for the features kiln-serve
    counts (the first MAX_MONITORED_FEATURES, in baseline order). Missing values are not a
    bin of the baseline's distributions, so they are not compared."""
    return {
        f.name: dict(zip(f.distribution.bin_labels(), f.distribution.shares, strict=False))
        for f in baseline.features[:MAX_MONITORED_FEATURES]
    }


def decumulate(buckets: Mapping[str, float]) -> dict[str, float]:
    """Cumulative `le` buckets -> the count of each bucket, named by its interval.

    Negative differences (an `increase()` extrapolated per series) count as 0; a bucket
    whose `le` is not a number is ignored."""
    bounds: list[tuple[float, str]] = []
    for le in buckets:
        try:
            bounds.append((float(le), le))
        except ValueError:
            continue
    bounds.sort()
    counts: dict[str, float] = {}
    previous_bound, previous_count = -math.inf, 0.0
    for bound, le in bounds:
        cumulative = buckets[le]
        low = "-Inf" if previous_bound == -math.inf else f"{previous_bound:g}"
        high = "+Inf" if bound == math.inf else f"{bound:g}"
        counts[f"({low}, {high}]"] = max(0.0, cumulative - previous_count)
        previous_bound, previous_count = bound, max(previous_count, cumulative)
    return counts


def split_feature_bins(values: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """The inputs query's `feature<US>bin` keys -> feature -> bin -> count."""
    features: dict[str, dict[str, float]] = {}
    for key, count in values.items():
        feature, found, label = key.partition(FEATURE_BIN_SEPARATOR)
        if found:
            features.setdefault(feature, {})[label] = count
    return features


_NO_VECTOR = VectorResult("no_data", {}, "no result for this query")


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def _drift_result(
    check: str, drift: DriftPlan, step: int, now: datetime
) -> Callable[..., AnalysisResult]:
    def result(
        outcome: AnalysisOutcome,
        message: str,
        value: float | None = None,
        rows: float | None = None,
    ) -> AnalysisResult:
        return AnalysisResult(
            check=check,
            step=step,
            outcome=outcome,
            value=value,
            max=drift.max_psi,
            requests=rows,
            message=message[:1024],
            time=now,
        )

    return result


def judge_prediction_drift(
    drift: DriftPlan, vectors: Mapping[str, VectorResult], *, step: int, now: datetime
) -> AnalysisResult:
    """The canary's prediction distribution against stable's over the same window."""
    result = _drift_result(DRIFT_PREDICTIONS_CHECK, drift, step, now)
    if not drift.has_stable:
        return result("Inconclusive", "no stable version to compare the canary's predictions with")
    chosen: tuple[str, dict[str, float], dict[str, float]] | None = None
    for kind, canary_key, stable_key, metric in (
        ("class", CANARY_CLASSES_KEY, STABLE_CLASSES_KEY, PREDICTIONS_METRIC),
        ("bucket", CANARY_BUCKETS_KEY, STABLE_BUCKETS_KEY, PREDICTION_BUCKET_METRIC),
    ):
        canary = vectors.get(canary_key, _NO_VECTOR)
        stable = vectors.get(stable_key, _NO_VECTOR)
        for track, answer in (("canary", canary), ("stable", stable)):
            if answer.status in ("unreachable", "error"):
                return result("Error", f"{track} {metric} query: {answer.status}: {answer.message}")
        if canary.status != "ok" and stable.status != "ok":
            continue  # not this kind of model: try the next series
        for track, answer in (("canary", canary), ("stable", stable)):
            if answer.status != "ok":
                return result(
                    "Inconclusive", f"no {metric} series for the {track} track in the window"
                )
        convert = dict if kind == "class" else decumulate
        chosen = (kind, convert(canary.values), convert(stable.values))
        break
    if chosen is None:
        return result(
            "Inconclusive",
            f"no {PREDICTIONS_METRIC} or {PREDICTION_BUCKET_METRIC} series in the window",
        )
    kind, canary_counts, stable_counts = chosen
    canary_rows = sum(max(0.0, c) for c in canary_counts.values())
    stable_rows = sum(max(0.0, c) for c in stable_counts.values())
    if canary_rows < drift.min_rows or stable_rows < drift.min_rows:
        return result(
            "Inconclusive",
            f"only {canary_rows:.0f} canary and {stable_rows:.0f} stable predicted rows in the "
            f"window, {drift.min_rows} needed on each track before the check counts",
            rows=canary_rows,
        )
    expected = psi_.shares(stable_counts)
    observed = psi_.shares(canary_counts)
    terms = psi_.psi_terms(expected, canary_counts)
    value = sum(terms.values())
    worst = psi_.worst_bin(terms) or ""
    detail = (
        f"worst {kind} {worst!r}: canary {_percent(observed.get(worst, 0.0))} vs stable "
        f"{_percent(expected.get(worst, 0.0))}; {canary_rows:.0f} canary / "
        f"{stable_rows:.0f} stable rows"
    )
    if value > drift.max_psi:
        return result(
            "Failed",
            f"canary predictions differ from stable's: PSI {value:.4g} > {drift.max_psi:g} "
            f"({detail})",
            value,
            canary_rows,
        )
    return result(
        "Successful",
        f"canary predictions vs stable's: PSI {value:.4g} <= {drift.max_psi:g} ({detail})",
        value,
        canary_rows,
    )


def judge_input_drift(
    drift: DriftPlan,
    vectors: Mapping[str, VectorResult],
    baseline: InputBaseline | None,
    *,
    step: int,
    now: datetime,
    baseline_message: str = "",
) -> AnalysisResult:
    """The canary's input bins against its own version's training shares, per feature; the
    feature with the highest PSI decides."""
    result = _drift_result(DRIFT_INPUTS_CHECK, drift, step, now)
    if baseline is None:
        why = f": {baseline_message}" if baseline_message else ""
        return result(
            "Inconclusive",
            f"the canary version's training baseline is not available{why}; its inputs "
            "cannot be compared (builtinChecks.drift.inputs: false judges the predictions "
            "alone)",
        )
    answer = vectors.get(CANARY_INPUTS_KEY, _NO_VECTOR)
    if answer.status in ("unreachable", "error"):
        return result("Error", f"canary {FEATURE_BIN_SERIES} query: {answer.status}: "
                      f"{answer.message}")  # fmt: skip
    if answer.status != "ok":
        return result(
            "Inconclusive", f"no {FEATURE_BIN_SERIES} series for the canary track in the window"
        )
    observed = split_feature_bins(answer.values)
    judged: list[tuple[float, str, str, float, float, float]] = []
    thin: list[str] = []
    most = 0.0
    for feature, expected in baseline.items():
        counts = {b: c for b, c in observed.get(feature, {}).items() if b != MISSING_BIN}
        samples = sum(max(0.0, c) for c in counts.values())
        most = max(most, samples)
        if not expected or sum(expected.values()) <= 0:
            continue  # nothing measured in training (an all-missing column)
        if samples < drift.min_rows:
            thin.append(feature)
            continue
        terms = psi_.psi_terms(expected, counts)
        worst = psi_.worst_bin(terms) or ""
        share = psi_.shares(counts).get(worst, 0.0)
        judged.append(
            (sum(terms.values()), feature, worst, share, expected.get(worst, 0.0), samples)
        )
    not_judged = f"; not judged (< {drift.min_rows} values): {', '.join(thin)}" if thin else ""
    if not judged:
        return result(
            "Inconclusive",
            f"no input feature has {drift.min_rows} values in the window (most: {most:.0f})",
            rows=most,
        )
    judged.sort(key=lambda j: -j[0])
    value, feature, worst, share, trained, samples = judged[0]
    detail = (
        f"{feature!r} bin {worst!r}: canary {_percent(share)} vs training {_percent(trained)}, "
        f"{samples:.0f} values"
    )
    if value > drift.max_psi:
        others = [f"{f} {v:.3g}" for v, f, *_ in judged[1:] if v > drift.max_psi]
        also = f"; also over: {', '.join(others)}" if others else ""
        return result(
            "Failed",
            f"canary inputs drift from its training baseline: {feature} PSI {value:.4g} > "
            f"{drift.max_psi:g} ({detail}){also}{not_judged}",
            value,
            most,
        )
    return result(
        "Successful",
        f"canary inputs vs its training baseline: highest PSI {value:.4g} <= "
        f"{drift.max_psi:g} ({detail}; {len(judged)} features judged){not_judged}",
        value,
        most,
    )


_MISSING = QueryResult("no_data", None, "no result for this query")


def evaluate(
    analysis: AnalysisPlan,
    results: Mapping[str, QueryResult],
    *,
    step: int,
    now: datetime,
    vectors: Mapping[str, VectorResult] | None = None,
    input_baseline: InputBaseline | None = None,
    baseline_message: str = "",
) -> Verdict:
    """Judge every check; the overall outcome is the worst of them.

    Failed > Error > Inconclusive > Successful: one failing check fails the analysis even
    when another could not be measured; an unmeasurable check keeps it from passing.

    `vectors` answer `analysis.vector_queries` (the drift check); `input_baseline` is the
    canary version's training shares (`feature_shares`), None when it could not be read
    (`baseline_message` says why), which leaves the inputs part Inconclusive.
    """
    requests_result = results.get(analysis.requests_key, _MISSING)
    judged = [_judge(c, results, requests_result, step, now) for c in analysis.checks]
    if analysis.drift is not None:
        answers = vectors or {}
        judged.append(judge_prediction_drift(analysis.drift, answers, step=step, now=now))
        if analysis.drift.inputs:
            judged.append(
                judge_input_drift(
                    analysis.drift,
                    answers,
                    input_baseline,
                    step=step,
                    now=now,
                    baseline_message=baseline_message,
                )
            )
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
