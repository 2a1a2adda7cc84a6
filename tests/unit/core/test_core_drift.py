from __future__ import annotations

import math

import pytest

from kiln.api.monitoring import DriftSpec
from kiln.contract.monitoring import MISSING_BIN, OTHER_BIN, Baseline, Distribution, FeatureProfile
from kiln.core import drift as dr

pytestmark = pytest.mark.unit


def numeric(name: str, shares: list[float], missing: float = 0.0) -> FeatureProfile:
    edges = [float(i) for i in range(1, len(shares))]
    return FeatureProfile(
        name=name,
        kind="numeric",
        missing_rate=missing,
        distribution=Distribution(edges=edges, shares=shares, count=1000),
    )


def categorical(name: str, labels: list[str], shares: list[float]) -> FeatureProfile:
    return FeatureProfile(
        name=name,
        kind="categorical",
        distribution=Distribution(labels=labels, shares=shares, count=1000),
    )


def baseline(*features: FeatureProfile) -> Baseline:
    return Baseline(rows=1000, features=list(features))


def counts_from(shares: list[float], n: int) -> dict[str, float]:
    return {str(i): s * n for i, s in enumerate(shares)}


UNIFORM = [0.25, 0.25, 0.25, 0.25]


def test_psi_of_identical_distributions_is_zero() -> None:
    assert dr.psi(UNIFORM, [100, 100, 100, 100]) == pytest.approx(0.0)


def test_psi_matches_the_textbook_formula_without_empty_bins() -> None:
    e, o = [0.5, 0.5], [0.7, 0.3]
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert dr.psi(e, o) == pytest.approx(expected, rel=1e-3)


def test_psi_is_finite_with_empty_bins_thanks_to_epsilon() -> None:
    value = dr.psi([0.5, 0.5, 0.0], [0, 0, 100])
    assert math.isfinite(value) and value > 5


def test_psi_counts_and_shares_are_the_same() -> None:
    assert dr.psi([1, 3], [10, 30]) == pytest.approx(0.0)
    assert dr.psi([0.25, 0.75], [30, 10]) == pytest.approx(dr.psi([1, 3], [3, 1]))


def test_psi_rejects_different_bins() -> None:
    with pytest.raises(ValueError):
        dr.psi([0.5, 0.5], [1.0])
    with pytest.raises(ValueError):
        dr.jensen_shannon([0.5, 0.5], [1.0])


def test_jensen_shannon_bounds() -> None:
    assert dr.jensen_shannon(UNIFORM, UNIFORM) == pytest.approx(0.0)
    assert dr.jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert 0 < dr.jensen_shannon([0.5, 0.5], [0.9, 0.1]) < 1
    assert dr.jensen_shannon([0, 0], [0, 0]) == 0.0
    assert dr.jensen_shannon([1, 0], [0, 0]) == 1.0


def test_compare_adds_the_missing_bin_from_the_missing_rate() -> None:
    profile = numeric("x", [0.5, 0.5], missing=0.2)
    comparison = dr.compare(profile.distribution, 0.2, {"0": 40, "1": 40, MISSING_BIN: 20})
    assert comparison.bins == ["0", "1", MISSING_BIN]
    assert comparison.expected == pytest.approx([0.4, 0.4, 0.2])
    assert comparison.observed == [40, 40, 20]
    assert comparison.samples == 100
    assert dr.psi(comparison.expected, comparison.observed) == pytest.approx(0.0)


def test_missing_values_the_training_data_never_had_drift() -> None:
    profile = numeric("x", UNIFORM)
    comparison = dr.compare(
        profile.distribution, 0.0, {**counts_from(UNIFORM, 50), MISSING_BIN: 50}
    )
    assert dr.psi(comparison.expected, comparison.observed) > 0.2


def test_compare_keeps_bins_the_baseline_lacks_with_expected_zero() -> None:
    profile = categorical("colour", ["red", "blue"], [0.5, 0.5])
    comparison = dr.compare(profile.distribution, 0.0, {"red": 10, "blue": 10, OTHER_BIN: 5})
    assert comparison.bins == ["red", "blue", MISSING_BIN, OTHER_BIN]
    assert comparison.expected == [0.5, 0.5, 0.0, 0.0]
    assert comparison.observed == [10, 10, 0, 5]


def test_judge_names_the_shifted_feature_only() -> None:
    b = baseline(
        numeric("a", UNIFORM), numeric("b", UNIFORM), categorical("c", ["x", "y"], [0.5, 0.5])
    )
    counts = {
        "a": counts_from(UNIFORM, 1000),
        "b": {"3": 1000},  # everything in the top bin: shifted
        "c": {"x": 510, "y": 490},
    }
    judgement = dr.judge(b, counts, DriftSpec())
    assert judgement.drifting == ["b"]
    assert judgement.features[0].feature == "b"
    assert judgement.judged == 3
    assert judgement.samples == 1000
    assert dr.is_drifting(judgement, DriftSpec())
    by_name = {f.feature: f for f in judgement.features}
    assert by_name["a"].psi == pytest.approx(0.0) and not by_name["a"].drifting
    assert by_name["b"].psi is not None and by_name["b"].psi > 1
    assert set(judgement.js) == {"a", "b", "c"}


def test_too_few_samples_are_not_judged() -> None:
    b = baseline(numeric("a", UNIFORM))
    judgement = dr.judge(b, {"a": {"3": 20}}, DriftSpec(min_samples=100))
    assert judgement.judged == 0
    assert judgement.features[0].samples == 20
    assert judgement.features[0].psi is not None and not judgement.features[0].drifting
    assert not dr.is_drifting(judgement, DriftSpec())


def test_a_feature_without_counts_has_no_psi() -> None:
    judgement = dr.judge(baseline(numeric("a", UNIFORM)), {}, DriftSpec())
    assert judgement.features[0].psi is None and judgement.features[0].samples == 0
    assert judgement.samples == 0


def test_max_drifting_share() -> None:
    b = baseline(*(numeric(n, UNIFORM) for n in "abcd"))
    counts = {n: counts_from(UNIFORM, 500) for n in "abcd"}
    counts["a"] = {"0": 500}
    spec = DriftSpec(max_drifting_share=0.25)
    judgement = dr.judge(b, counts, spec)
    assert judgement.drifting == ["a"] and judgement.drifting_share == 0.25
    assert not dr.is_drifting(judgement, spec)
    counts["b"] = {"0": 500}
    assert dr.is_drifting(dr.judge(b, counts, spec), spec)


def test_threshold_is_strict() -> None:
    b = baseline(numeric("a", [0.5, 0.5]))
    counts = {"a": {"0": 700, "1": 300}}
    value = dr.judge(b, counts, DriftSpec()).features[0].psi
    assert value is not None
    assert not dr.judge(b, counts, DriftSpec(psi_threshold=value)).features[0].drifting
    assert dr.judge(b, counts, DriftSpec(psi_threshold=value - 0.001)).features[0].drifting


def test_only_the_monitored_features_are_judged() -> None:
    from kiln.contract.monitoring import MAX_MONITORED_FEATURES

    b = baseline(*(numeric(f"f{i}", UNIFORM) for i in range(MAX_MONITORED_FEATURES + 3)))
    assert len(dr.monitored_features(b)) == MAX_MONITORED_FEATURES
    assert len(dr.judge(b, {}, DriftSpec()).features) == MAX_MONITORED_FEATURES
