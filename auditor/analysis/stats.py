"""Statistics of the drift comparisons: one implementation of each, vectorised over pairs.

Pure functions (numpy only). Tests compare them with textbook reference computations (exact Beta
Monte Carlo, the multinomial bootstrap, Benjamini-Hochberg), kept in tests/auditor/test_stats.py.

- A rate's interval is Wilson's score interval (`wilson_interval`). The rate itself (the share of
  *scored* completions above the threshold; unscored ones are counted apart, never as non-toxic)
  is counted in SQL: the store's `audit_summary_at` macro.
- A derivative and its parent answer the same prompts, so their comparison is paired: only the
  discordant prompts (toxic for one, not the other) carry information. `pair_statistics` gives
  every pair of a metric at once its rates, difference, exact McNemar p-value (`mcnemar_exact`),
  paired bootstrap interval and Bayesian credible interval.
- Thousands of comparisons are made at once: the Benjamini-Hochberg q-values and the drift call
  (q <= `alpha` and |difference| >= `min_effect`) are computed in SQL over every pair of a metric,
  by the store's `drift_at(threshold, alpha, min_effect)` macro (auditor/store/migrations), which
  the `drift` view, `auditor report drift` and the tree all read. That macro is the one
  implementation; there is no Python copy.
- What a pair could have seen: given its number of discordant prompts, the smallest difference
  of rates whose exact McNemar p-value reaches `alpha` (`min_detectable_change`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion.

    >>> tuple(round(x, 4) for x in wilson_interval(5, 10))
    (0.2366, 0.7634)
    """
    if n <= 0:
        raise ValueError("no trials")
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c.

    >>> round(mcnemar_exact(1, 9), 6)
    0.021484
    """
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # P(X <= k) for X ~ Binomial(n, 1/2), summed in log space so that n in the thousands is exact enough.
    log_terms = [_log_comb(n, i) - n * math.log(2) for i in range(k + 1)]
    top = max(log_terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return min(1.0, 2 * tail)


def pair_statistics(
    both: npt.ArrayLike,
    child_only: npt.ArrayLike,
    parent_only: npt.ArrayLike,
    neither: npt.ArrayLike,
    *,
    resamples: int = 1000,
    seed: int = 0,
    keys: Sequence[tuple[int, int]] | None = None,
) -> dict[str, npt.NDArray[np.float64]]:
    """Rates, difference, exact McNemar p, paired bootstrap and Bayesian intervals for many pairs,
    from the four cells of each pair's 2x2 table over the prompts scored in both audits (arrays of
    equal length, one entry per pair). Returns one array per column of `drift_pairs`.

    The bootstrap resamples prompts: the number of discordant prompts is Binomial(n, (b + c) / n)
    and, given it, the child's share is Binomial(d, b / (b + c)); the difference is (2 b* - d) / n.
    That is the multinomial resampling of the 2x2 table's cells, drawn in two binomial steps.
    The Bayesian view takes independent Beta(1 + k, 1 + n - k) posteriors for the two rates (a
    uniform prior) and a 95% credible interval for their difference from normal approximations of
    them: at hundreds of prompts it is within a fraction of a point of the exact (Monte Carlo) one.

    >>> s = pair_statistics([10], [60], [0], [1130], keys=[(2, 1)])
    >>> round(float(s["delta"][0]), 4), bool(s["p_value"][0] < 1e-15), bool(s["boot_low"][0] > 0)
    (0.05, True, True)
    """
    both, b, c, neither = (np.asarray(x, dtype=np.int64) for x in (both, child_only, parent_only, neither))
    n = both + b + c + neither
    safe_n = np.maximum(n, 1)
    k_child, k_parent = both + b, both + c
    boot_low = np.zeros(len(n))
    boot_high = np.zeros(len(n))
    # A loop over pairs, each with its own generator keyed by the pair, so that a pair's interval
    # never depends on which other pairs were computed with it (pairs are added as audits finish).
    for i in range(len(n)):
        if b[i] + c[i] == 0:
            continue  # no discordant prompt: every resample gives a difference of 0
        rng = np.random.default_rng([seed, *keys[i]] if keys is not None else [seed, i])
        d = rng.binomial(n[i], (b[i] + c[i]) / n[i], size=resamples)
        b_star = rng.binomial(d, b[i] / (b[i] + c[i]))
        boot_low[i], boot_high[i] = np.quantile((2 * b_star - d) / n[i], [0.025, 0.975])
    a1, b1 = 1 + k_child, 1 + n - k_child
    a2, b2 = 1 + k_parent, 1 + n - k_parent
    mean = a1 / (a1 + b1) - a2 / (a2 + b2)
    var = a1 * b1 / ((a1 + b1) ** 2 * (a1 + b1 + 1)) + a2 * b2 / ((a2 + b2) ** 2 * (a2 + b2 + 1))
    half = Z95 * np.sqrt(var)
    return {
        "rate_child": np.where(n > 0, k_child / safe_n, np.nan),
        "rate_parent": np.where(n > 0, k_parent / safe_n, np.nan),
        "delta": (b - c) / safe_n,
        # Pair by pair through `mcnemar_exact`, the definition that `min_significant_split` defers
        # to near alpha: a stored p-value and the pair's minimum detectable change always agree.
        "p_value": np.array([mcnemar_exact(int(x), int(y)) for x, y in zip(b, c, strict=True)], dtype=np.float64),
        "boot_low": boot_low,
        "boot_high": boot_high,
        "bayes_mean": mean,
        "bayes_low": mean - half,
        "bayes_high": mean + half,
    }


def min_detectable_change(discordant: int, n: int, alpha: float) -> float | None:
    """The smallest |b - c| / n that the exact McNemar test calls significant at `alpha` when `n`
    paired prompts have `discordant` = b + c discordant ones; None when no split of them does (or n is 0).

    This is a significance threshold given the discordance seen, not a power-based minimum
    detectable effect (the smallest true effect found with, say, 80% power: Bloom 1995, Evaluation
    Review 19(5):547-556, doi:10.1177/0193841X9501900504, whose multiplier z(1 - alpha/2) + z(power)
    is 1.96 + 0.84 standard errors against this threshold's 1.96, about 1.4 times larger). A true
    change of exactly this size is found about half the time (z(0.5) = 0); a pair whose observed
    change is smaller cannot have p <= alpha.

    >>> min_detectable_change(10, 100, 0.05)  # P(X >= 9 | Binomial(10, 1/2)) = 11/1024; two-sided 0.0215
    0.08
    >>> min_detectable_change(5, 100, 0.05) is None  # even 5 against 0 gives p = 2 / 32 = 0.0625
    True
    """
    split = min_significant_split(discordant, alpha)
    if split is None or n <= 0:
        return None
    return (2 * split - int(discordant)) / n


def min_significant_split(discordant: int, alpha: float) -> int | None:
    """The smallest k >= d / 2 with `mcnemar_exact(k, d - k) <= alpha`, d = `discordant`; None if none.

    >>> min_significant_split(10, 0.05)
    9
    """
    return _min_significant_split(int(discordant), float(alpha))


@functools.lru_cache(maxsize=65536)
def _min_significant_split(d: int, alpha: float) -> int | None:
    # Given d discordant prompts, the exact McNemar test is the binomial test of b ~ Binomial(d, 1/2)
    # (Fagerland, Lydersen & Laake 2013, "The McNemar test for binary matched-pairs data", BMC Med.
    # Res. Methodol. 13:91, doi:10.1186/1471-2288-13-91; statsmodels' contingency_tables.mcnemar with
    # exact=True). For k >= d / 2 its two-sided p is 2 P(X <= d - k), which falls as k rises, so the
    # threshold is the first k where it reaches alpha. The smallest p any split of d can give is
    # 2 / 2**d (all d one way): below 6 discordant prompts nothing reaches 0.05.
    if d <= 0 or mcnemar_exact(d, 0) > alpha:
        return None
    # The whole lower tail at once with numpy (relative error ~1e-13); only where a p-value lies
    # within 1e-9 of alpha does mcnemar_exact itself decide, so the threshold always agrees with the
    # stored p-values. Cached per (d, alpha): a report's pairs share a few hundred values of d.
    steps = np.arange(1, d + 1)
    log_pmf = np.concatenate(([0.0], np.cumsum(np.log(d - steps + 1) - np.log(steps)))) - d * math.log(2)
    tail = np.minimum(1.0, 2 * np.cumsum(np.exp(log_pmf[: d // 2 + 1])))  # p-value of split (d - j, j)
    below = np.flatnonzero(tail <= alpha)
    k = d - int(below[-1]) if len(below) else d
    lowest = (d + 1) // 2

    def significant(split: int) -> bool:
        p = float(tail[d - split])
        return p <= alpha if abs(p - alpha) > 1e-9 * alpha else mcnemar_exact(split, d - split) <= alpha

    while k > lowest and significant(k - 1):
        k -= 1
    while k < d and not significant(k):  # d itself is significant: checked above
        k += 1
    return k


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
