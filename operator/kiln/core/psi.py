"""Population stability index (PSI), pure: how far an observed distribution is from an
expected one, over the same named bins.

    PSI = sum over bins b of (o_b - e_b) * ln(o_b / e_b)

with `e_b` the expected share of bin b and `o_b` the observed share. PSI is symmetric in
`e` and `o` (it is the Jeffreys divergence), 0 for identical shares; the usual reading is
< 0.1 stable, 0.1-0.2 a slight shift, > 0.2 a significant one.

Smoothing: a share of 0 (a bin the expected side never had, or one the window never saw)
would make the logarithm infinite, so every share is raised to at least `epsilon`
(`DEFAULT_EPSILON` = 1e-4) before the sum; the shares are not renormalised afterwards. A bin
present on one side only therefore contributes about `share * ln(share / epsilon)`, e.g.
0.05 * ln(0.05 / 1e-4) ~ 0.31 for a 5 % bin, which is what makes a new category or a class
a version never predicted show as drift.

Sampling noise: for k bins and n observed values PSI of a sample drawn from the expected
distribution itself is about (k - 1) / n (two samples of n1 and n2: (k - 1)(1/n1 + 1/n2)),
which is why callers require a minimum number of values before they judge.

Used by the canary's built-in drift check (`kiln.core.analysis`); one implementation for
every PSI Kiln computes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

DEFAULT_EPSILON = 1e-4


def shares(counts: Mapping[str, float]) -> dict[str, float]:
    """Counts per bin -> shares per bin (negative counts count as 0).

    Raises ValueError when there is nothing to share (no bins, or a total of 0)."""
    clean = {label: max(0.0, float(count)) for label, count in counts.items()}
    total = sum(clean.values())
    if not clean or total <= 0 or not math.isfinite(total):
        raise ValueError("no counts to compute shares from")
    return {label: count / total for label, count in clean.items()}


def psi_terms(
    expected_shares: Mapping[str, float],
    observed_counts: Mapping[str, float],
    epsilon: float = DEFAULT_EPSILON,
) -> dict[str, float]:
    """Each bin's contribution to the PSI, over the union of both sides' bins.

    `expected_shares` are shares (they should sum to 1; a baseline's rounding is tolerated);
    `observed_counts` are counts and are turned into shares here."""
    if epsilon <= 0:
        raise ValueError("epsilon must be > 0")
    if not expected_shares:
        raise ValueError("no expected shares")
    observed = shares(observed_counts)
    terms: dict[str, float] = {}
    for label in [*expected_shares, *(b for b in observed if b not in expected_shares)]:
        e = max(float(expected_shares.get(label, 0.0)), epsilon)
        o = max(observed.get(label, 0.0), epsilon)
        terms[label] = (o - e) * math.log(o / e)
    return terms


def psi(
    expected_shares: Mapping[str, float],
    observed_counts: Mapping[str, float],
    epsilon: float = DEFAULT_EPSILON,
) -> float:
    """The PSI of `observed_counts` against `expected_shares` (see the module's docstring)."""
    return sum(psi_terms(expected_shares, observed_counts, epsilon).values())


def worst_bin(terms: Mapping[str, float]) -> str | None:
    """The bin contributing most to a PSI (ties: the first), None when there are none."""
    if not terms:
        return None
    return max(terms, key=lambda label: terms[label])
