"""Input drift against the training baseline, pure: bin counts of a window -> PSI per feature.

The server counts every input value into the baseline's own bins (`kiln_feature_bin_total`,
see `kiln.contract.monitoring`), so the window's distribution of a feature is the increase
of those counters. It is compared with the training shares of the same bins:

- **Missing values are one more bin.** The baseline's shares exclude missing values (they
  are the feature's `missing_rate`), so the expected distribution is the baseline shares
  scaled by `1 - missing_rate` plus a `__missing__` bin holding `missing_rate`; the
  observed one is the window's counts including `__missing__`. A feature that suddenly
  arrives empty drifts like any other shift.
- **Bins the baseline does not know** (a label the server reports that the profile lacks)
  are kept with an expected share of 0.
- **PSI** = sum over bins of (o - e) * ln(o / e), with o and e the observed and expected
  shares, computed by `kiln.core.psi` (the one implementation; its docstring says how empty
  bins are smoothed): a bin of 10 % that is never seen any more adds about 0.69, well over
  the 0.2 rule of thumb, as it should.
- **Jensen-Shannon** divergence (base 2, in [0, 1]) needs no smoothing; it is given for
  dashboards and checks that prefer a bounded measure.

A feature is judged only with at least `minSamples` values in the window; too few is "not
enough data", never "no drift".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kiln.api.monitoring import MAX_REPORTED_FEATURES, DriftSpec, FeatureDrift
from kiln.contract.monitoring import MAX_MONITORED_FEATURES, MISSING_BIN, Baseline, Distribution
from kiln.core import psi as psi_

DIGITS = 4


def _normalise(values: Sequence[float]) -> list[float]:
    total = sum(values)
    if total <= 0:
        return [0.0 for _ in values]
    return [v / total for v in values]


def psi(expected: Sequence[float], observed: Sequence[float]) -> float:
    """Population stability index of `observed` against `expected` (shares or counts of the
    same bins, in the same order), through `kiln.core.psi` (its epsilon smoothing)."""
    if len(expected) != len(observed):
        raise ValueError("expected and observed must have the same bins")
    if sum(expected) <= 0 or sum(observed) <= 0:
        return 0.0
    bins = [str(i) for i in range(len(expected))]
    expected_shares = dict(zip(bins, _normalise(expected), strict=True))
    return psi_.psi(expected_shares, dict(zip(bins, observed, strict=True)))


def jensen_shannon(expected: Sequence[float], observed: Sequence[float]) -> float:
    """Jensen-Shannon divergence (base 2, 0 = identical, 1 = disjoint) of two distributions
    over the same bins (shares or counts)."""
    if len(expected) != len(observed):
        raise ValueError("expected and observed must have the same bins")
    p, q = _normalise(expected), _normalise(observed)
    if sum(p) == 0 or sum(q) == 0:
        return 0.0 if sum(p) == sum(q) else 1.0
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]

    def kl(x: Sequence[float]) -> float:
        return sum(a * math.log2(a / b) for a, b in zip(x, m, strict=True) if a > 0)

    return max(0.0, min(1.0, (kl(p) + kl(q)) / 2))


@dataclass(frozen=True)
class BinComparison:
    """Expected shares and observed counts of one feature, over the same bins."""

    bins: list[str]
    expected: list[float]
    observed: list[float]

    @property
    def samples(self) -> int:
        return round(sum(self.observed))


def compare(
    distribution: Distribution, missing_rate: float, counts: Mapping[str, float]
) -> BinComparison:
    """Line the window's counts up with the baseline's bins (+ the missing bin, + any bin
    the baseline lacks, with an expected share of 0)."""
    labels = distribution.bin_labels()
    shares = list(distribution.shares) + [0.0] * (len(labels) - len(distribution.shares))
    kept = 1.0 - missing_rate
    bins = [*labels, MISSING_BIN]
    expected = [s * kept for s in shares[: len(labels)]] + [missing_rate]
    known = set(bins)
    extra = sorted(b for b in counts if b not in known)
    bins += extra
    expected += [0.0] * len(extra)
    observed = [max(0.0, float(counts.get(b, 0.0))) for b in bins]
    return BinComparison(bins, expected, observed)


@dataclass(frozen=True)
class DriftJudgement:
    features: list[FeatureDrift]  # every monitored feature, highest PSI first
    judged: int  # features with enough samples
    drifting: list[str]  # names, highest PSI first
    samples: int  # rows in the window (the most values any feature had)
    js: dict[str, float]  # Jensen-Shannon divergence per judged feature

    @property
    def drifting_share(self) -> float:
        return len(self.drifting) / self.judged if self.judged else 0.0


def monitored_features(baseline: Baseline) -> list[str]:
    """The features kiln-serve counts: the baseline's first MAX_MONITORED_FEATURES."""
    return [f.name for f in baseline.features[:MAX_MONITORED_FEATURES]]


def judge(
    baseline: Baseline, counts: Mapping[str, Mapping[str, float]], spec: DriftSpec
) -> DriftJudgement:
    """PSI of every monitored feature over the window's `counts` (feature -> bin -> count)."""
    results: list[FeatureDrift] = []
    js: dict[str, float] = {}
    for profile in baseline.features[:MAX_MONITORED_FEATURES]:
        comparison = compare(
            profile.distribution, profile.missing_rate, counts.get(profile.name) or {}
        )
        samples = comparison.samples
        if samples == 0:
            results.append(FeatureDrift(feature=profile.name, psi=None, samples=0))
            continue
        value = round(psi(comparison.expected, comparison.observed), DIGITS)
        enough = samples >= spec.min_samples
        if enough:
            js[profile.name] = round(
                jensen_shannon(comparison.expected, comparison.observed), DIGITS
            )
        results.append(
            FeatureDrift(
                feature=profile.name,
                psi=value,
                samples=samples,
                drifting=enough and value > spec.psi_threshold,
            )
        )
    results.sort(key=lambda f: (-(f.psi if f.psi is not None else -1.0), f.feature))
    results = results[:MAX_REPORTED_FEATURES]
    judged = sum(1 for f in results if f.samples >= spec.min_samples)
    return DriftJudgement(
        features=results,
        judged=judged,
        drifting=[f.feature for f in results if f.drifting],
        samples=max((f.samples for f in results), default=0),
        js=js,
    )


def is_drifting(judgement: DriftJudgement, spec: DriftSpec) -> bool:
    """More than `maxDriftingShare` of the judged features drift (and at least one does)."""
    return bool(judgement.drifting) and judgement.drifting_share > spec.max_drifting_share
