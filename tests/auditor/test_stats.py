"""The statistics, pinned to hand-computed cases and validated by simulation."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np
import pytest

from auditor.analysis.stats import (
    PairedCounts,
    bayes_difference,
    benjamini_hochberg,
    is_drifted,
    mcnemar_exact,
    min_detectable_change,
    min_significant_split,
    paired_bootstrap_interval,
    paired_counts,
    summarise_rate,
    wilson_interval,
)


def test_wilson_interval_matches_hand_computed_values() -> None:
    # p = 1/2, n = 10, z = 1.96: centre 0.5, half-width 0.2634.
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    # k = 0: the lower bound is 0 and the upper z^2 / (n + z^2) = 3.8415 / 13.8415.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_unscored_completions_never_count_as_non_toxic() -> None:
    summary = summarise_rate([0.9, 0.1, None, None, 0.7, 0.2], threshold=0.5)
    assert (summary.n_scored, summary.n_unscored, summary.n_toxic) == (4, 2, 2)
    assert summary.rate == 0.5 and summary.mean_score == pytest.approx(0.475)
    assert summarise_rate([None, None]).rate is None
    assert summarise_rate([0.5]).n_toxic == 0  # "above" the threshold, not at it


def test_paired_counts_use_only_prompts_scored_in_both() -> None:
    child = {"a": True, "b": True, "c": False, "d": False, "e": True}
    parent = {"a": True, "b": False, "c": True, "d": False}
    counts = paired_counts(child, parent)
    assert counts == PairedCounts(both=1, child_only=1, parent_only=1, neither=1)
    assert counts.n == 4 and counts.delta == 0.0


def test_exact_mcnemar_matches_the_binomial_tail() -> None:
    # b = 1, c = 9: 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024.
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(4, 4) == 1.0
    # b = 0, c = 5: 2 * (1/2)^5.
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)


def test_the_smallest_detectable_change_by_hand() -> None:
    # d = 10 discordant of n = 100: P(X >= 9 | Bin(10, 1/2)) = 11/1024, two-sided 22/1024 = 0.0215 <= 0.05,
    # while 8 of 10 gives 2 * 56/1024 = 0.109: the threshold split is 9 to 1, a change of 8 points.
    assert min_significant_split(10, 0.05) == 9
    assert min_detectable_change(10, 100, 0.05) == pytest.approx(0.08, abs=1e-15)
    # d = 15 (the report test's pair): 12 to 3 gives 2 * 576/32768 = 0.035, 11 to 4 gives 0.118.
    assert min_significant_split(15, 0.05) == 12 and min_significant_split(15, 0.01) == 13
    # 5 discordant prompts cannot reach 0.05 however they split: 5 to 0 gives 2/32 = 0.0625; 6 to 0 can.
    assert min_detectable_change(5, 100, 0.05) is None
    assert min_detectable_change(6, 100, 0.05) == pytest.approx(0.06, abs=1e-15)
    assert min_detectable_change(0, 100) is None and min_detectable_change(10, 0) is None


def _exact_split(d: int, alpha: Fraction) -> int | None:
    """The definition in exact rational arithmetic: the smallest k >= d/2 with 2 P(X <= d - k) <= alpha."""
    for k in range((d + 1) // 2, d + 1):
        if d and min(Fraction(1), Fraction(2 * sum(comb(d, i) for i in range(d - k + 1)), 2**d)) <= alpha:
            return k
    return None


@pytest.mark.parametrize("alpha", ["0.05", "0.01", "0.1"])
def test_the_smallest_detectable_change_matches_exact_arithmetic(alpha: str) -> None:
    for d in range(0, 161):
        assert min_significant_split(d, float(alpha)) == _exact_split(d, Fraction(alpha)), d
    for d in (400, 1200, 3000):  # a battery's size: the fast guess must still land on the definition
        k = min_significant_split(d, float(alpha))
        assert k is not None and mcnemar_exact(k, d - k) <= float(alpha) < mcnemar_exact(k - 1, d - k + 1)


def test_a_change_reaches_alpha_exactly_when_it_is_at_least_the_detectable_one() -> None:
    for d in range(0, 41):
        k = min_significant_split(d, 0.05)
        for b in range(d + 1):
            significant = mcnemar_exact(b, d - b) <= 0.05
            assert significant == (k is not None and abs(2 * b - d) >= 2 * k - d), (b, d - b)


def test_benjamini_hochberg_by_hand() -> None:
    # Sorted p: 0.01, 0.03, 0.04, 0.2 -> raw m*p/rank: 0.04, 0.06, 0.0533, 0.2 -> made monotone.
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert benjamini_hochberg([]) == []


def test_bootstrap_and_bayes_intervals_cover_the_difference() -> None:
    counts = PairedCounts(both=10, child_only=60, parent_only=0, neither=1130)
    low, high = paired_bootstrap_interval(counts, seed=1)
    assert low < counts.delta < high and low > 0
    assert paired_bootstrap_interval(counts, seed=1) == (low, high)  # seeded, so repeatable
    bayes = bayes_difference(70, 1200, 10, 1200)
    assert bayes.low < 0.05 < bayes.high and bayes.credible and bayes.prob_positive > 0.99
    assert not bayes_difference(30, 1200, 30, 1200).credible


def test_drift_needs_both_significance_and_size() -> None:
    assert is_drifted(0.05, 0.001)
    assert not is_drifted(0.005, 0.0001)  # below the minimum effect of one point
    assert not is_drifted(0.2, 0.2)
    assert is_drifted(-0.03, 0.01)  # drift down counts too


def test_simulation_false_calls_stay_rare_and_a_five_point_rise_is_found() -> None:
    """Null pairs (the same behaviour) are called drifted at most 5% of the time; a planted
    5-point rise on a 1,200-prompt battery is found at least 80% of the time."""
    rng = np.random.default_rng(7)
    n_prompts, n_null, n_rise = 1200, 1000, 200
    pvalues, deltas, planted = [], [], []
    for pair in range(n_null + n_rise):
        propensity = rng.beta(0.5, 9.5, size=n_prompts)  # mean 5%, most prompts near 0
        parent = rng.random(n_prompts) < propensity
        rise = 0.05 if pair >= n_null else 0.0
        child = rng.random(n_prompts) < np.minimum(1.0, propensity + rise)
        b = int(np.sum(child & ~parent))
        c = int(np.sum(~child & parent))
        pvalues.append(mcnemar_exact(b, c))
        deltas.append((b - c) / n_prompts)
        planted.append(rise > 0)
    qvalues = benjamini_hochberg(pvalues)
    called = [is_drifted(d, q) for d, q in zip(deltas, qvalues, strict=True)]
    false_share = sum(c for c, p in zip(called, planted, strict=True) if not p) / n_null
    power = sum(c for c, p in zip(called, planted, strict=True) if p) / n_rise
    assert false_share <= 0.05
    assert power >= 0.80


def test_the_bulk_pair_statistics_agree_with_the_single_pair_ones() -> None:
    from auditor.analysis.drift import pair_statistics

    cases = [(10, 60, 0, 1130), (30, 40, 38, 1092), (0, 0, 0, 1200), (5, 1, 9, 185)]
    both, child_only, parent_only, neither = (np.array(column) for column in zip(*cases, strict=True))
    bulk = pair_statistics(both, child_only, parent_only, neither, resamples=4000)
    for i, (b0, b, c, n0) in enumerate(cases):
        counts = PairedCounts(b0, b, c, n0)
        assert bulk["delta"][i] == pytest.approx(counts.delta)
        assert bulk["p_value"][i] == pytest.approx(mcnemar_exact(b, c))
        low, high = paired_bootstrap_interval(counts, resamples=4000, seed=3)
        assert bulk["boot_low"][i] == pytest.approx(low, abs=0.004)
        assert bulk["boot_high"][i] == pytest.approx(high, abs=0.004)
        exact = bayes_difference(b0 + b, counts.n, b0 + c, counts.n, draws=40000)
        assert bulk["bayes_low"][i] == pytest.approx(exact.low, abs=0.003)  # normal approximation
        assert bulk["bayes_high"][i] == pytest.approx(exact.high, abs=0.003)
    assert bulk["boot_low"][2] == bulk["boot_high"][2] == 0.0  # no discordant prompt, no doubt
