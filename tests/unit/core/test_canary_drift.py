"""The canary's built-in drift check: planned vector queries, prediction drift against the
stable track, input drift against the canary version's own baseline, and how both feed the
analysis verdict and the rollout."""

from __future__ import annotations

import math
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.manifests import promtool

from kiln.api.model_deployment import CanarySpec, ModelDeploymentSpec, ModelDeploymentStatus
from kiln.contract.monitoring import (
    MAX_MONITORED_FEATURES,
    MISSING_BIN,
    OTHER_BIN,
    Baseline,
    Distribution,
    FeatureProfile,
)
from kiln.core import analysis as an
from kiln.core import canary
from kiln.core.analysis import QueryResult, VectorResult

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SEP = an.FEATURE_BIN_SEPARATOR
CANARY_SEL = 'namespace="prod",model="iris",version="iris-v2",track="canary"'
STABLE_SEL = 'namespace="prod",model="iris",version="iris-v1",track="stable"'
DRIFT = an.DriftPlan(max_psi=0.2, min_rows=100, inputs=True, has_stable=True)


def _plan(stable_version: str | None = "iris-v1", **canary_fields: Any) -> an.AnalysisPlan:
    return an.plan(
        CanarySpec.model_validate(canary_fields),
        namespace="prod",
        name="iris",
        model="iris",
        canary_version="iris-v2",
        stable_version=stable_version,
    )


def ok(values: dict[str, float]) -> VectorResult:
    return VectorResult("ok", values)


NO_DATA = VectorResult("no_data", {}, "empty result (no matching series)")
DOWN = VectorResult("unreachable", {}, "connection refused")


def classes(canary: dict[str, float], stable: dict[str, float]) -> dict[str, VectorResult]:
    return {
        an.CANARY_CLASSES_KEY: ok(canary),
        an.STABLE_CLASSES_KEY: ok(stable),
        an.CANARY_BUCKETS_KEY: NO_DATA,
        an.STABLE_BUCKETS_KEY: NO_DATA,
    }


def predictions(vectors: dict[str, VectorResult], drift: an.DriftPlan = DRIFT) -> Any:
    return an.judge_prediction_drift(drift, vectors, step=1, now=NOW)


def feature_bins(features: dict[str, dict[str, float]]) -> VectorResult:
    return ok({f"{f}{SEP}{b}": c for f, bins in features.items() for b, c in bins.items()})


TEN = {str(i): 0.1 for i in range(10)}
BASELINE: dict[str, dict[str, float]] = {
    "petal_length": TEN,
    "sepal_width": TEN,
    "species_hint": {"a": 0.5, "b": 0.5},
}


def even(n: float = 200) -> dict[str, float]:
    return {str(i): n / 10 for i in range(10)}


def inputs(
    features: dict[str, dict[str, float]] | VectorResult,
    baseline: dict[str, dict[str, float]] | None = BASELINE,
    drift: an.DriftPlan = DRIFT,
    message: str = "",
) -> Any:
    answer = features if isinstance(features, VectorResult) else feature_bins(features)
    return an.judge_input_drift(
        drift,
        {an.CANARY_INPUTS_KEY: answer},
        baseline,
        step=1,
        now=NOW,
        baseline_message=message,
    )


# -- plan --------------------------------------------------------------------------------


def test_the_drift_check_is_off_by_default() -> None:
    plan = _plan()
    assert plan.vector_queries == {} and plan.drift is None
    assert [c.name for c in plan.checks] == ["error-rate", "latency-p99"]


def test_plan_asks_for_both_tracks_distributions_and_the_canary_inputs() -> None:
    plan = _plan(intervalSeconds=60, builtinChecks={"drift": {"enabled": True, "maxPsi": 0.3}})
    assert plan.drift == an.DriftPlan(max_psi=0.3, min_rows=100, inputs=True, has_stable=True)
    q = plan.vector_queries
    assert q[an.CANARY_CLASSES_KEY] == an.VectorQuery(
        f"sum by (class) (increase(kiln_predictions_total{{{CANARY_SEL}}}[60s]))", "class"
    )
    assert q[an.STABLE_CLASSES_KEY] == an.VectorQuery(
        f"sum by (class) (increase(kiln_predictions_total{{{STABLE_SEL}}}[60s]))", "class"
    )
    assert q[an.CANARY_BUCKETS_KEY] == an.VectorQuery(
        f"sum by (le) (increase(kiln_prediction_value_bucket{{{CANARY_SEL}}}[60s]))", "le"
    )
    assert q[an.STABLE_BUCKETS_KEY].promql.endswith(
        f"kiln_prediction_value_bucket{{{STABLE_SEL}}}[60s]))"
    )
    assert q[an.CANARY_INPUTS_KEY] == an.VectorQuery(
        "label_join(sum by (feature, bin) "
        f"(increase(kiln_feature_bin_total{{{CANARY_SEL}}}[60s])), "
        '"feature_bin", "\\x1f", "feature", "bin")',
        "feature_bin",
    )
    # The number queries are the usual ones; the drift check adds none of them.
    assert set(plan.queries) == {an.REQUESTS_KEY, "canary/error-rate", "canary/latency-p99"}


def test_plan_without_inputs_or_without_a_stable_version() -> None:
    no_inputs = _plan(builtinChecks={"drift": {"enabled": True, "inputs": False}})
    assert an.CANARY_INPUTS_KEY not in no_inputs.vector_queries
    assert no_inputs.drift is not None and not no_inputs.drift.inputs
    lonely = _plan(stable_version=None, builtinChecks={"drift": {"enabled": True}})
    assert set(lonely.vector_queries) == {
        an.CANARY_CLASSES_KEY,
        an.CANARY_BUCKETS_KEY,
        an.CANARY_INPUTS_KEY,
    }
    assert lonely.drift is not None and not lonely.drift.has_stable


def test_drift_queries_pass_promtool(tmp_path: Path) -> None:
    plan = _plan(builtinChecks={"drift": {"enabled": True}})
    rules = [
        {"record": f"kiln:drift:{i}", "expr": q.promql}
        for i, q in enumerate(plan.vector_queries.values())
    ]
    path = tmp_path / "drift.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "drift", "rules": rules}]}))
    answer = subprocess.run(
        [str(promtool()), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_prometheus_joins_feature_and_bin_with_the_separator_the_judge_splits_on(
    tmp_path: Path,
) -> None:
    """Prometheus itself (promtool's rule tests) evaluates the inputs query: the joined label
    holds the unit separator, not a backslash sequence."""
    query = an.inputs_template().replace(an.SELECTOR, 'track="canary"').replace(an.INTERVAL, "5m")
    # `mid` captures what stands between the feature and the bin: exactly one character.
    probe = f'label_replace({query}, "mid", "$1", "feature_bin", "petal_length(.)3")'
    tests = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'kiln_feature_bin_total{track="canary",feature="petal_length",'
                        'bin="3"}',
                        "values": "0+2x10",
                    }
                ],
                "promql_expr_test": [
                    {
                        "expr": probe,
                        "eval_time": "10m",
                        "exp_samples": [
                            {
                                "labels": '{bin="3",feature="petal_length",'
                                'feature_bin="petal_length\\u001f3",mid="\\u001f"}',
                                "value": 10,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "separator.test.yaml"
    path.write_text(yaml.safe_dump(tests))
    answer = subprocess.run(
        [str(promtool()), "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    # What parse_vector_response makes of that label (JSON "\u001f") splits back cleanly.
    assert an.split_feature_bins({"petal_length\u001f3": 10.0}) == {"petal_length": {"3": 10.0}}


# -- helpers -----------------------------------------------------------------------------


def test_decumulate_turns_le_buckets_into_interval_counts() -> None:
    cumulative = {"+Inf": 100.0, "0": 10.0, "1": 40.0, "-1": 5.0}
    assert an.decumulate(cumulative) == {
        "(-Inf, -1]": 5.0,
        "(-1, 0]": 5.0,
        "(0, 1]": 30.0,
        "(1, +Inf]": 60.0,
    }


def test_decumulate_clamps_extrapolation_noise_and_skips_odd_bounds() -> None:
    assert an.decumulate({"1": 10.2, "2": 9.9, "+Inf": 12.0, "x": 3.0}) == {
        "(-Inf, 1]": 10.2,
        "(1, 2]": 0.0,
        "(2, +Inf]": pytest.approx(1.8),
    }
    assert an.decumulate({}) == {}


def test_split_feature_bins_ignores_keys_without_a_separator() -> None:
    assert an.split_feature_bins(
        {f"a{SEP}0": 1.0, f"a{SEP}{OTHER_BIN}": 2.0, f"b{SEP}x{SEP}y": 3.0, "junk": 4.0}
    ) == {"a": {"0": 1.0, OTHER_BIN: 2.0}, "b": {f"x{SEP}y": 3.0}}


def test_feature_shares_of_a_baseline_cover_the_served_features() -> None:
    features = [
        FeatureProfile(
            name=f"f{i}",
            kind="numeric",
            distribution=Distribution(edges=[1.0], shares=[0.25, 0.75], count=4),
        )
        for i in range(MAX_MONITORED_FEATURES + 3)
    ]
    features[1] = FeatureProfile(
        name="colour",
        kind="categorical",
        distribution=Distribution(labels=["red", OTHER_BIN], shares=[0.9, 0.1], count=10),
    )
    shares = an.feature_shares(Baseline(rows=10, features=features))
    assert len(shares) == MAX_MONITORED_FEATURES
    assert shares["f0"] == {"0": 0.25, "1": 0.75}
    assert shares["colour"] == {"red": 0.9, OTHER_BIN: 0.1}
    assert f"f{MAX_MONITORED_FEATURES}" not in shares


# -- predictions -------------------------------------------------------------------------


def test_same_class_shares_pass_with_the_psi_as_value() -> None:
    result = predictions(
        classes(
            {"setosa": 50, "versicolor": 50, "virginica": 50},
            {"setosa": 200, "versicolor": 200, "virginica": 200},
        )
    )
    assert result.check == "drift-predictions" and result.outcome == "Successful"
    assert result.value == pytest.approx(0.0)
    assert (result.max, result.min, result.requests, result.step) == (0.2, None, 150, 1)
    assert "PSI 0 <= 0.2" in result.message and "150 canary / 600 stable rows" in result.message


def test_different_class_shares_fail_naming_the_worst_class() -> None:
    result = predictions(
        classes(
            {"setosa": 10, "versicolor": 80, "virginica": 60},
            {"setosa": 200, "versicolor": 200, "virginica": 200},
        )
    )
    assert result.outcome == "Failed"
    assert result.value is not None and result.value > 0.2
    assert "PSI" in result.message and "> 0.2" in result.message
    assert "worst class 'setosa': canary 6.7% vs stable 33.3%" in result.message


def test_a_class_only_the_canary_predicts_counts_as_drift() -> None:
    result = predictions(classes({"a": 90, "b": 10}, {"a": 1000}))
    assert result.outcome == "Failed" and "worst class 'b'" in result.message


def test_regressors_are_compared_on_de_cumulated_value_buckets() -> None:
    stable = {"0": 100.0, "10": 500.0, "100": 900.0, "+Inf": 1000.0}
    same = {"0": 10.0, "10": 50.0, "100": 90.0, "+Inf": 100.0}
    shifted = {"0": 0.0, "10": 5.0, "100": 20.0, "+Inf": 100.0}
    vectors = {
        an.CANARY_CLASSES_KEY: NO_DATA,
        an.STABLE_CLASSES_KEY: NO_DATA,
        an.CANARY_BUCKETS_KEY: ok(same),
        an.STABLE_BUCKETS_KEY: ok(stable),
    }
    passed = predictions(vectors)
    assert passed.outcome == "Successful" and passed.value == pytest.approx(0.0)
    assert passed.requests == 100
    failed = predictions(vectors | {an.CANARY_BUCKETS_KEY: ok(shifted)})
    assert failed.outcome == "Failed"
    assert "worst bucket '(100, +Inf]': canary 80.0% vs stable 10.0%" in failed.message


@pytest.mark.parametrize(
    ("canary_rows", "stable_rows"), [(99, 1000), (1000, 99), (0, 0), (99.9, 100)]
)
def test_too_few_rows_on_either_track_is_inconclusive(
    canary_rows: float, stable_rows: float
) -> None:
    result = predictions(classes({"a": canary_rows, "b": 0}, {"a": stable_rows, "b": 0}))
    assert result.outcome == "Inconclusive"
    assert f"only {canary_rows:.0f} canary and {stable_rows:.0f} stable" in result.message
    assert "100 needed on each track" in result.message
    assert result.value is None and result.requests == canary_rows


def test_exactly_min_rows_counts() -> None:
    assert predictions(classes({"a": 100}, {"a": 100})).outcome == "Successful"


@pytest.mark.parametrize("key", [an.CANARY_CLASSES_KEY, an.STABLE_CLASSES_KEY])
def test_prometheus_unreachable_is_an_error(key: str) -> None:
    vectors = classes({"a": 500}, {"a": 500}) | {key: DOWN}
    result = predictions(vectors)
    assert result.outcome == "Error"
    assert "kiln_predictions_total query: unreachable: connection refused" in result.message


def test_a_rejected_query_is_an_error() -> None:
    vectors = classes({"a": 500}, {"a": 500}) | {
        an.CANARY_CLASSES_KEY: NO_DATA,
        an.STABLE_CLASSES_KEY: NO_DATA,
        an.CANARY_BUCKETS_KEY: VectorResult("error", {}, "bad_data: parse error"),
    }
    result = predictions(vectors)
    assert result.outcome == "Error" and "kiln_prediction_value_bucket" in result.message


def test_no_prediction_series_at_all_is_inconclusive() -> None:
    assert predictions({}).outcome == "Inconclusive"
    result = predictions(classes({}, {}) | {k: NO_DATA for k in classes({}, {})})
    assert result.outcome == "Inconclusive"
    assert "no kiln_predictions_total or kiln_prediction_value_bucket series" in result.message


def test_series_on_one_track_only_is_inconclusive() -> None:
    result = predictions(classes({"a": 500}, {}) | {an.STABLE_CLASSES_KEY: NO_DATA})
    assert result.outcome == "Inconclusive"
    assert "no kiln_predictions_total series for the stable track" in result.message


def test_no_stable_version_is_inconclusive() -> None:
    result = predictions(classes({"a": 500}, {"a": 500}), replace(DRIFT, has_stable=False))
    assert result.outcome == "Inconclusive" and "no stable version" in result.message


# -- inputs ------------------------------------------------------------------------------


def test_inputs_like_the_training_data_pass() -> None:
    result = inputs(
        {"petal_length": even(), "sepal_width": even(300), "species_hint": {"a": 99, "b": 101}}
    )
    assert result.check == "drift-inputs" and result.outcome == "Successful"
    assert result.value is not None and result.value < 0.01
    assert (result.max, result.requests) == (0.2, 300)
    assert "3 features judged" in result.message


def test_a_shifted_feature_fails_naming_it_its_bin_and_the_psi() -> None:
    shifted = {"9": 160.0, **{str(i): 40 / 9 for i in range(9)}}
    result = inputs(
        {"petal_length": shifted, "sepal_width": even(), "species_hint": {"a": 80, "b": 20}}
    )
    assert result.outcome == "Failed"
    assert result.message.startswith("canary inputs drift from its training baseline: ")
    assert "petal_length PSI" in result.message
    assert "'petal_length' bin '9': canary 80.0% vs training 10.0%, 200 values" in result.message
    # A second feature over the bound is named too; the first is the worst.
    assert "also over: species_hint" in result.message
    assert result.value == pytest.approx(an.psi_.psi(TEN, shifted))


def test_missing_values_are_not_compared() -> None:
    result = inputs(
        {"petal_length": {**even(), MISSING_BIN: 5000}, "sepal_width": even()},
        baseline={"petal_length": TEN, "sepal_width": TEN},
    )
    assert result.outcome == "Successful" and result.requests == 200


def test_a_category_the_training_data_never_had_is_drift() -> None:
    result = inputs(
        {"species_hint": {"a": 50, "b": 50, OTHER_BIN: 100}},
        baseline={"species_hint": {"a": 0.5, "b": 0.5}},
    )
    assert result.outcome == "Failed" and f"bin '{OTHER_BIN}'" in result.message


def test_features_with_too_few_values_are_named_and_not_judged() -> None:
    result = inputs({"petal_length": even(), "sepal_width": even(50)})
    assert result.outcome == "Successful"
    assert "not judged (< 100 values): sepal_width, species_hint" in result.message


def test_no_feature_with_enough_values_is_inconclusive() -> None:
    result = inputs({"petal_length": even(90), "sepal_width": even(20)})
    assert result.outcome == "Inconclusive"
    assert "no input feature has 100 values in the window (most: 90)" in result.message
    assert result.requests == 90 and result.value is None


def test_a_baseline_feature_without_shares_is_skipped() -> None:
    result = inputs({"petal_length": even()}, baseline={"petal_length": TEN, "empty": {}})
    assert result.outcome == "Successful" and "not judged" not in result.message


def test_without_the_baseline_the_inputs_are_inconclusive_with_the_reason() -> None:
    result = inputs({"petal_length": even()}, baseline=None, message="baseline.json: 403")
    assert result.outcome == "Inconclusive"
    assert result.message == (
        "the canary version's training baseline is not available: baseline.json: 403; its "
        "inputs cannot be compared (builtinChecks.drift.inputs: false judges the predictions "
        "alone)"
    )
    assert "available; its" in inputs({}, baseline=None).message


def test_inputs_query_failures() -> None:
    assert inputs(DOWN).outcome == "Error"
    assert "kiln_feature_bin_total query: unreachable" in inputs(DOWN).message
    result = inputs(NO_DATA)
    assert result.outcome == "Inconclusive" and "no kiln_feature_bin_total series" in result.message


def test_messages_fit_the_status_field() -> None:
    many = {f"feature_{i:03d}_with_a_long_name": TEN for i in range(64)}
    shifted = {"9": 160.0, **{str(i): 40 / 9 for i in range(9)}}
    result = inputs({f: shifted for f in many}, baseline=many)
    assert result.outcome == "Failed" and len(result.message) <= 1024


# -- evaluate and the rollout ------------------------------------------------------------


def _passing() -> dict[str, QueryResult]:
    return {
        an.REQUESTS_KEY: QueryResult.of(500),
        "canary/error-rate": QueryResult.of(0.0),
        "canary/latency-p99": QueryResult.of(0.01),
    }


def test_evaluate_adds_both_drift_results_and_the_worst_decides() -> None:
    plan = _plan(builtinChecks={"drift": {"enabled": True}})
    vectors = classes({"a": 300, "b": 300}, {"a": 600, "b": 600}) | {
        an.CANARY_INPUTS_KEY: feature_bins({"petal_length": even()})
    }
    verdict = an.evaluate(
        plan, _passing(), step=0, now=NOW, vectors=vectors, input_baseline={"petal_length": TEN}
    )
    assert [r.check for r in verdict.results] == [
        "error-rate",
        "latency-p99",
        "drift-predictions",
        "drift-inputs",
    ]
    assert verdict.outcome == "Successful"
    assert "drift-predictions=0 [-inf, 0.2] Successful" in verdict.summary()

    skewed = vectors | {an.CANARY_CLASSES_KEY: ok({"a": 550, "b": 50})}
    failed = an.evaluate(
        plan, _passing(), step=0, now=NOW, vectors=skewed, input_baseline={"petal_length": TEN}
    )
    assert failed.outcome == "Failed"
    no_baseline = an.evaluate(plan, _passing(), step=0, now=NOW, vectors=vectors)
    assert no_baseline.outcome == "Inconclusive"
    assert no_baseline.results[-1].outcome == "Inconclusive"


def test_evaluate_without_vector_answers_is_inconclusive_never_a_pass() -> None:
    plan = _plan(builtinChecks={"drift": {"enabled": True, "inputs": False}})
    verdict = an.evaluate(plan, _passing(), step=0, now=NOW)
    assert [r.check for r in verdict.results][-1] == "drift-predictions"
    assert verdict.outcome == "Inconclusive"


def test_evaluate_without_the_drift_check_is_unchanged() -> None:
    verdict = an.evaluate(_plan(), _passing(), step=0, now=NOW, vectors={})
    assert [r.check for r in verdict.results] == ["error-rate", "latency-p99"]


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _spec() -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": "iris",
            "followLatestApproved": True,
            "replicas": 4,
            "canary": {
                "steps": [50],
                "intervalSeconds": 10,
                "failureLimit": 0,
                "builtinChecks": {"drift": {"enabled": True, "inputs": False}},
            },
        }
    )


def _observations(**fields: Any) -> canary.Observations:
    return canary.Observations(
        namespace="prod",
        name="iris",
        generation=1,
        target=canary.Target("iris-v2"),
        stable=canary.TrackObservation("iris-v1", 2, 2),
        canary=canary.TrackObservation("iris-v2", 2, 2),
        **fields,
    )


def _at_analysis() -> ModelDeploymentStatus:
    """A rollout of iris-v2 at its only step, with the analysis due."""
    status = ModelDeploymentStatus(
        observed_generation=1,
        phase="Promoted",
        stable_version="iris-v1",
        target_version="iris-v1",
        stable_replicas=4,
    )
    started = canary.step(_spec(), status, _observations(), T0).status
    assert started.canary_version == "iris-v2"
    return started


def test_a_canary_predicting_differently_is_rolled_back_by_the_drift_check_alone() -> None:
    status, later = _at_analysis(), T0 + timedelta(seconds=11)
    asked = canary.step(_spec(), status, _observations(), later)
    assert asked.analysis is not None and an.CANARY_CLASSES_KEY in asked.analysis.vector_queries
    vectors = classes({"a": 400, "b": 20, "c": 20}, {"a": 300, "b": 300, "c": 300})
    decision = canary.step(
        _spec(), status, _observations(analysis=_passing(), vectors=vectors), later
    )
    st = decision.status
    assert (st.phase, st.reason, st.failed_version) == ("RolledBack", "AnalysisFailed", "iris-v2")
    by_check = {r.check: r.outcome for r in st.analysis}
    assert by_check == {
        "error-rate": "Successful",
        "latency-p99": "Successful",
        "drift-predictions": "Failed",
    }
    assert "drift-predictions=" in (st.message or "")


def test_a_canary_predicting_alike_is_promoted() -> None:
    status, later = _at_analysis(), T0 + timedelta(seconds=11)
    vectors = classes({"a": 100, "b": 100, "c": 100}, {"a": 300, "b": 310, "c": 290})
    decision = canary.step(
        _spec(), status, _observations(analysis=_passing(), vectors=vectors), later
    )
    assert (decision.status.phase, decision.status.stable_version) == ("Promoted", "iris-v2")


def test_the_canary_baseline_reaches_the_inputs_judge() -> None:
    md_spec = _spec()
    assert md_spec.canary is not None
    md_spec.canary.builtin_checks.drift.inputs = True
    status, later = _at_analysis(), T0 + timedelta(seconds=11)
    vectors = classes({"a": 150, "b": 150}, {"a": 300, "b": 300}) | {
        an.CANARY_INPUTS_KEY: feature_bins({"petal_length": {"0": 300}})
    }
    observed = _observations(
        analysis=_passing(), vectors=vectors, canary_baseline={"petal_length": {"0": 1.0}}
    )
    assert canary.step(md_spec, status, observed, later).status.phase == "Promoted"
    without = replace(observed, canary_baseline=None, canary_baseline_message="not loaded")
    decision = canary.step(md_spec, status, without, later)
    assert decision.status.last_analysis_outcome == "Inconclusive"
    assert "baseline is not available: not loaded" in decision.status.analysis[-1].message
    assert not math.isnan(decision.status.analysis[-2].value or 0.0)


def test_the_canarys_own_baseline_is_read_only_when_its_inputs_are_compared() -> None:
    def spec(**canary: Any) -> ModelDeploymentSpec:
        return ModelDeploymentSpec.model_validate(
            {"model": "iris", "followLatestApproved": True, **canary}
        )

    assert not canary.compares_canary_inputs(spec())  # no canary at all
    assert not canary.compares_canary_inputs(spec(canary={"steps": [50]}))  # no drift check
    off = {"steps": [50], "builtinChecks": {"drift": {"enabled": False}}}
    assert not canary.compares_canary_inputs(spec(canary=off))
    predictions_only = {"steps": [50], "builtinChecks": {"drift": {"inputs": False}}}
    assert not canary.compares_canary_inputs(spec(canary=predictions_only))
    inputs = {"steps": [50], "builtinChecks": {"drift": {"enabled": True}}}
    assert canary.compares_canary_inputs(spec(canary=inputs))
