"""PSI: shares, the per-bin terms, smoothing and the bin that contributes most."""

from __future__ import annotations

import math

import pytest

from kiln.core import psi

pytestmark = pytest.mark.unit


def test_shares_normalise_counts_and_ignore_negative_ones() -> None:
    assert psi.shares({"a": 1, "b": 3}) == {"a": 0.25, "b": 0.75}
    assert psi.shares({"a": 2, "b": -1}) == {"a": 1.0, "b": 0.0}


@pytest.mark.parametrize("counts", [{}, {"a": 0}, {"a": -2}, {"a": math.inf}])
def test_shares_of_nothing_is_an_error(counts: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        psi.shares(counts)


def test_identical_distributions_have_zero_psi() -> None:
    assert psi.psi({"a": 0.25, "b": 0.75}, {"a": 10, "b": 30}) == pytest.approx(0.0)


def test_psi_matches_the_textbook_formula() -> None:
    expected = {"a": 0.5, "b": 0.3, "c": 0.2}
    observed = {"a": 30, "b": 30, "c": 40}
    by_hand = sum(
        (o - e) * math.log(o / e)
        for e, o in ((0.5, 0.3), (0.3, 0.3), (0.2, 0.4))  # observed shares 0.3/0.3/0.4
    )
    assert psi.psi(expected, observed) == pytest.approx(by_hand)


def test_psi_is_symmetric() -> None:
    a = {"x": 10.0, "y": 30.0, "z": 60.0}
    b = {"x": 30.0, "y": 30.0, "z": 40.0}
    assert psi.psi(psi.shares(a), b) == pytest.approx(psi.psi(psi.shares(b), a))


def test_a_share_of_zero_is_raised_to_epsilon() -> None:
    # A bin the observed side never saw: (eps - 0.5) * ln(eps / 0.5) + the other bin's term.
    terms = psi.psi_terms({"a": 0.5, "b": 0.5}, {"b": 10})
    eps = psi.DEFAULT_EPSILON
    assert terms["a"] == pytest.approx((eps - 0.5) * math.log(eps / 0.5))
    assert terms["b"] == pytest.approx((1.0 - 0.5) * math.log(1.0 / 0.5))
    assert math.isfinite(sum(terms.values()))


def test_bins_only_the_observed_side_has_are_counted_as_drift() -> None:
    terms = psi.psi_terms({"a": 1.0}, {"a": 95, "new": 5})
    assert set(terms) == {"a", "new"}
    assert terms["new"] == pytest.approx((0.05 - 1e-4) * math.log(0.05 / 1e-4))
    assert psi.worst_bin(terms) == "new"


def test_a_larger_epsilon_smooths_more() -> None:
    expected = {"a": 0.5, "b": 0.5}
    assert psi.psi(expected, {"a": 10}, epsilon=0.01) < psi.psi(expected, {"a": 10})


@pytest.mark.parametrize("epsilon", [0.0, -1.0])
def test_epsilon_must_be_positive(epsilon: float) -> None:
    with pytest.raises(ValueError):
        psi.psi({"a": 1.0}, {"a": 1}, epsilon=epsilon)


def test_empty_sides_are_errors() -> None:
    with pytest.raises(ValueError):
        psi.psi({}, {"a": 1})
    with pytest.raises(ValueError):
        psi.psi({"a": 1.0}, {})


def test_worst_bin() -> None:
    assert psi.worst_bin({}) is None
    assert psi.worst_bin({"a": 0.1, "b": 0.3, "c": 0.3}) == "b"


def test_a_large_shift_crosses_the_usual_threshold() -> None:
    baseline = {str(i): 0.1 for i in range(10)}
    shifted = {"9": 80, **{str(i): 20 / 9 for i in range(9)}}
    assert psi.psi(baseline, shifted) > 0.2
    close = {str(i): 10 + (1 if i % 2 else -1) for i in range(10)}
    assert psi.psi(baseline, close) < 0.1
