"""The statistics, pinned to hand-computed cases, checked against textbook reference computations
(the oracles below) and validated by simulation.

The product has one implementation of each statistic: `auditor.analysis.stats` (vectorised over
pairs) and, for Benjamini-Hochberg q-values and the drift call, the store's SQL macro `drift_at`.
The oracles here are the slow, obvious versions: an exact rational McNemar tail, the multinomial
bootstrap of the 2x2 table, Monte Carlo draws from the exact Beta posteriors, and textbook
Benjamini-Hochberg. They live only in this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from math import comb, exp, pi, sqrt
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from auditor.analysis.drift import drift_rows, refresh_drift
from auditor.analysis.stats import (
    mcnemar_exact,
    min_detectable_change,
    min_significant_split,
    pair_statistics,
    wilson_interval,
)
from auditor.audit.battery import BatterySpec, build_battery
from auditor.audit.key import AuditKey, ScorerRef
from auditor.audit.scoring import Score
from auditor.audit.sink import ScoredCompletion
from auditor.store import Store
from auditor.store.audits import AuditStore

# --- oracles ------------------------------------------------------------------------------------


def oracle_mcnemar(b: int, c: int) -> Fraction:
    """Two-sided exact McNemar p-value in rational arithmetic: 2 P(X <= min(b, c)), X ~ Bin(b + c, 1/2)."""
    d = b + c
    if d == 0:
        return Fraction(1)
    return min(Fraction(1), Fraction(2 * sum(comb(d, i) for i in range(min(b, c) + 1)), 2**d))


def oracle_bootstrap(cells: tuple[int, int, int, int], *, resamples: int, rng: np.random.Generator) -> Any:
    """Differences of rates over resamples of the n paired prompts with replacement. A resample is
    fully described by how many prompts of each cell of the 2x2 table it drew, so drawing the four
    counts multinomially is the prompt bootstrap itself."""
    both, b, c, neither = cells
    n = both + b + c + neither
    draws = rng.multinomial(n, np.array([both, b, c, neither]) / n, size=resamples)
    return (draws[:, 1] - draws[:, 2]) / n


def oracle_bayes(k_child: int, k_parent: int, n: int, *, draws: int, rng: np.random.Generator) -> Any:
    """Draws of (child rate - parent rate) from independent exact Beta(1 + k, 1 + n - k) posteriors."""
    return rng.beta(1 + k_child, 1 + n - k_child, size=draws) - rng.beta(1 + k_parent, 1 + n - k_parent, size=draws)


def oracle_benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Textbook BH q-values, in the order given: q_(i) = min over j >= i of min(1, m p_(j) / j)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    q = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, min(1.0, pvalues[i] * m / rank))
        q[i] = running
    return q


def oracle_drifted(delta: float, q_value: float, *, alpha: float, min_effect: float) -> bool:
    """The paper's call: the difference survives the false-discovery control and is large enough."""
    return q_value <= alpha and abs(delta) >= min_effect


def quantile_se(level: float, sd: float, draws: int) -> float:
    """Standard error of a sample quantile at `level` of a roughly normal statistic with sd `sd`:
    sqrt(level (1 - level) / draws) / density at the quantile, the density being phi(z) / sd."""
    z = 1.959963984540054  # the 2.5% and 97.5% points are the ones tested
    return sqrt(level * (1 - level) / draws) * sd / (exp(-z * z / 2) / sqrt(2 * pi))


# --- hand-computed cases ------------------------------------------------------------------------


def test_wilson_interval_matches_hand_computed_values() -> None:
    # p = 1/2, n = 10, z = 1.96: centre 0.5, half-width 0.2634.
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    # k = 0: the lower bound is 0 and the upper z^2 / (n + z^2) = 3.8415 / 13.8415.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


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
    assert min_detectable_change(0, 100, alpha=0.05) is None and min_detectable_change(10, 0, alpha=0.05) is None


def _exact_split(d: int, alpha: Fraction) -> int | None:
    """The definition in exact rational arithmetic: the smallest k >= d/2 with 2 P(X <= d - k) <= alpha."""
    for k in range((d + 1) // 2, d + 1):
        if d and oracle_mcnemar(k, d - k) <= alpha:
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


def test_the_benjamini_hochberg_oracle_by_hand() -> None:
    # The oracle is itself pinned before it judges the store's macro.
    # Sorted p: 0.01, 0.03, 0.04, 0.2 -> raw m*p/rank: 0.04, 0.06, 0.0533, 0.2 -> made monotone.
    assert oracle_benjamini_hochberg([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert oracle_benjamini_hochberg([0.5, 0.9]) == pytest.approx([0.9, 0.9])  # never above 1, monotone
    assert oracle_benjamini_hochberg([]) == []


# --- pair_statistics against the oracles -------------------------------------------------------

CASES = [(10, 60, 0, 1130), (30, 40, 38, 1092), (0, 0, 0, 1200), (5, 1, 9, 185)]  # both, b, c, neither


def _bulk(cases: Sequence[tuple[int, int, int, int]], **options: Any) -> dict[str, Any]:
    both, child_only, parent_only, neither = (np.array(column) for column in zip(*cases, strict=True))
    return pair_statistics(both, child_only, parent_only, neither, **options)


def test_pair_statistics_rates_difference_and_p_values_are_exact() -> None:
    bulk = _bulk([*CASES, (0, 0, 0, 0)])
    for i, (b0, b, c, n0) in enumerate(CASES):
        n = b0 + b + c + n0
        assert bulk["rate_child"][i] == (b0 + b) / n and bulk["rate_parent"][i] == (b0 + c) / n
        assert bulk["delta"][i] == (b - c) / n
        # The log-space sum loses only rounding: relative 1e-12 is a thousand times its error at these d.
        assert bulk["p_value"][i] == pytest.approx(float(oracle_mcnemar(b, c)), rel=1e-12)
    # A pair with nothing scored in both: no rate (NaN, not 0), no difference, no evidence.
    assert np.isnan(bulk["rate_child"][-1]) and np.isnan(bulk["rate_parent"][-1])
    assert (bulk["delta"][-1], bulk["p_value"][-1], bulk["boot_low"][-1], bulk["boot_high"][-1]) == (0, 1, 0, 0)


def test_the_paired_bootstrap_matches_the_multinomial_bootstrap() -> None:
    """The product draws the discordant count and then the child's share (two binomials); the oracle
    resamples the four cells multinomially. Same distribution, so the percentiles agree up to
    Monte Carlo error and the lattice the difference lives on."""
    resamples, oracle_resamples = 20_000, 200_000
    bulk = _bulk(CASES, resamples=resamples, seed=3)
    rng = np.random.default_rng(11)
    for i, cells in enumerate(CASES):
        n = sum(cells)
        deltas = oracle_bootstrap(cells, resamples=oracle_resamples, rng=rng)
        low, high = np.quantile(deltas, [0.025, 0.975])
        # Tolerance: the difference only takes values k / n, so two correct estimates can land one
        # step apart (1 / n), plus 5 standard errors of the two percentile estimates together.
        sd = float(deltas.std())
        noise = sqrt(quantile_se(0.025, sd, resamples) ** 2 + quantile_se(0.025, sd, oracle_resamples) ** 2)
        tolerance = 1 / n + 5 * noise
        assert bulk["boot_low"][i] == pytest.approx(low, abs=tolerance), cells
        assert bulk["boot_high"][i] == pytest.approx(high, abs=tolerance), cells
    assert bulk["boot_low"][2] == bulk["boot_high"][2] == 0.0  # no discordant prompt, no doubt


def test_the_bayesian_interval_matches_the_exact_beta_posteriors() -> None:
    draws = 400_000
    bulk = _bulk(CASES)
    rng = np.random.default_rng(5)
    for i, (b0, b, c, n0) in enumerate(CASES):
        diff = oracle_bayes(b0 + b, b0 + c, b0 + b + c + n0, draws=draws, rng=rng)
        low, high = np.quantile(diff, [0.025, 0.975])
        # The mean of a difference of Betas is exact in the product: only Monte Carlo error (5 SE).
        assert bulk["bayes_mean"][i] == pytest.approx(float(diff.mean()), abs=5 * float(diff.std()) / sqrt(draws))
        # The interval uses normal approximations of the posteriors. Their error grows with skew;
        # measured with 4 million draws it is at most 0.0015 here (the last case: 6 and 14 toxic of
        # 200), against under 0.0005 for the 1,200-prompt cases. The oracle's percentiles add
        # 5 SE < 0.0005 at 400,000 draws. A wrong z (1.645) or variance moves them by 0.005 or more.
        assert bulk["bayes_low"][i] == pytest.approx(low, abs=0.0025), (b0, b, c, n0)
        assert bulk["bayes_high"][i] == pytest.approx(high, abs=0.0025), (b0, b, c, n0)


def test_bootstrap_and_bayes_intervals_cover_the_difference() -> None:
    # 70 of 1,200 toxic for the child against 10 for the parent; then the same rate on both sides.
    bulk = _bulk([(10, 60, 0, 1130), (30, 0, 0, 1170)], seed=1)
    low, high, delta = bulk["boot_low"][0], bulk["boot_high"][0], bulk["delta"][0]
    assert 0 < low < delta < high
    assert bulk["bayes_low"][0] > 0 and bulk["bayes_low"][0] < 0.05 < bulk["bayes_high"][0]  # credible
    assert bulk["bayes_low"][1] < 0 < bulk["bayes_high"][1]  # not credible
    again = _bulk([(10, 60, 0, 1130), (30, 0, 0, 1170)], seed=1)
    assert (again["boot_low"][0], again["boot_high"][0]) == (low, high)  # seeded, so repeatable
    # Keyed by the pair: its interval does not depend on which other pairs were computed with it.
    alone = _bulk([(10, 60, 0, 1130)], keys=[(7, 3)])
    among = _bulk([(5, 1, 9, 185), (10, 60, 0, 1130)], keys=[(9, 8), (7, 3)])
    assert (alone["boot_low"][0], alone["boot_high"][0]) == (among["boot_low"][1], among["boot_high"][1])


# --- the store's drift_at macro (q-values and the drift call) against the oracle -----------------

N_PROMPTS = 120
ROOT = "org/root"
# Each derivative of the root: (child_only, parent_only) on its 2x2 table. Chosen so that the p-values
# tie (three at 1/32), and so that Benjamini-Hochberg's step-up matters: at ranks 5-7 the raw
# m p / rank is above 0.05, yet their q-value is about 3/64 = 0.046875, taken from rank 8.
DESIGN = {
    "u/same": (0, 0),
    "u/big-rise": (30, 0),
    "u/fall-12": (0, 12),
    "u/rise-10": (10, 0),  # and 4 prompts it could not score, where its parent is toxic
    "u/rise-7": (7, 0),
    "u/rise-6a": (6, 0),
    "u/rise-6b": (6, 0),
    "u/fall-6": (0, 6),
    "u/mixed-1-9": (1, 9),
    "u/mixed-8-3": (8, 3),
    "u/even-5-5": (5, 5),
    "u/mixed-12-4": (12, 4),
}
UNSCORED_CHILD, CHILD_UNSCORED = "u/rise-10", range(56, 60)
ROOT_UNSCORED = range(118, 120)


def _toxic_scores(repo_id: str) -> list[float | None]:
    """Scores by battery position. The root is toxic on prompts 0-59 and cannot score 118-119. A
    derivative drops c of the root's toxic prompts (0..c-1), adds b of its own (60..60+b-1) and is
    toxic where the root could not score. Non-toxic completions score exactly the threshold, 0.5:
    toxic means above it."""
    if repo_id == ROOT:
        return [None if i in ROOT_UNSCORED else 0.9 if i < 60 else 0.5 for i in range(N_PROMPTS)]
    b, c = DESIGN[repo_id]
    scores: list[float | None] = [0.9 if c <= i < 60 + b or i in ROOT_UNSCORED else 0.5 for i in range(N_PROMPTS)]
    if repo_id == UNSCORED_CHILD:
        for i in CHILD_UNSCORED:
            scores[i] = None
    return scores


def _n_paired(repo_id: str) -> int:
    return N_PROMPTS - len(ROOT_UNSCORED) - (len(CHILD_UNSCORED) if repo_id == UNSCORED_CHILD else 0)


def _build_design_store(path: Path) -> Path:
    """The root and its derivatives, one finished audit each with the designed scores, written
    through the store's API (no model runs), and their drift pairs computed at threshold 0.5."""
    rows = [{"challenging": True, "prompt": {"text": f"prompt {i}", "toxicity": 0.9}} for i in range(N_PROMPTS)]
    battery = build_battery(BatterySpec("oracle", per_attribute=N_PROMPTS, benign=0), "org/prompts", "abc", rows)
    assert len(battery.prompts) == N_PROMPTS
    children = list(DESIGN)
    with Store.open(path) as store:
        with store.session() as con:
            con.execute(
                "INSERT INTO crawl_runs (crawl_id, mode, status, started_at, endpoint, roots, auditor_version)"
                " VALUES (1, 'full', 'done', now(), 'test', [?], 'test')",
                [ROOT],
            )
            for index, repo_id in enumerate([ROOT, *children]):
                con.execute(
                    "INSERT INTO models (repo_id, sha, family, root, depth, is_root, downloads, relation,"
                    " first_seen_crawl, last_seen_crawl, changed_crawl) VALUES (?, ?, 'llama', ?, ?, ?, 1, ?, 1, 1, 1)",
                    [repo_id, f"{index:040d}", ROOT, min(index, 1), index == 0, None if index == 0 else "finetune"],
                )
            for child in children:
                con.execute("INSERT INTO lineage VALUES (?, ?, 'finetune', 'baseModels', 0, 1, 1)", [child, ROOT])
                con.execute("INSERT INTO lineage_closure_table VALUES (?, ?, 1)", [ROOT, child])
        audits = AuditStore(store)
        audits.save_battery(battery)
        detoxify = ScorerRef("detoxify", "c", "toxicity")
        for index, repo_id in enumerate([ROOT, *children]):
            key = AuditKey(repo_id, f"{index:040d}", battery.battery_id, "paper", "h", "none", "cpu")
            audit_id = audits.start(
                key, scorers=[detoxify], generation_config={}, versions={}, config={}, n_prompts=N_PROMPTS
            )
            audits.begin_scoring(audit_id, detoxify)
            audits.write_batch(
                audit_id,
                [
                    ScoredCompletion(p.prompt_id, "text", 5, "eos", {"detoxify": Score({"toxicity": score})})
                    for p, score in zip(battery.prompts, _toxic_scores(repo_id), strict=True)
                ],
            )
            audits.finish_scoring(audit_id, "detoxify")
            audits.finish(audit_id, "done", reason=None, timings={})
        assert refresh_drift(store, threshold=0.5) == len(children)
    return path


@pytest.fixture(scope="module")
def design_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_design_store(tmp_path_factory.mktemp("stats") / "design.duckdb")


def test_the_store_counts_rates_and_pairs_only_over_scored_prompts(design_store: Path) -> None:
    with Store.open(design_store, read_only=True) as store:
        summary = {
            r["repo_id"]: r
            for r in store.query_dicts(
                "SELECT repo_id, n_scored, n_unscored, n_toxic, rate, mean_score FROM audit_summary_at(0.5)"
                " WHERE scorer = 'detoxify' AND attribute = 'toxicity'"
            )
        }
        pairs = {
            r["child"]: r
            for r in store.query_dicts(
                "SELECT c.repo_id AS child, d.* FROM drift_pairs d JOIN audits c ON c.audit_id = d.child_audit"
                " WHERE d.threshold = 0.5"
            )
        }
    # A rate is over the scored completions: unscored ones are counted apart, never as non-toxic,
    # and a score at the threshold is not above it.
    root = summary[ROOT]
    assert (root["n_scored"], root["n_unscored"], root["n_toxic"]) == (118, 2, 60)
    assert root["rate"] == pytest.approx(60 / 118) and root["mean_score"] == pytest.approx((60 * 0.9 + 58 * 0.5) / 118)
    unscored = summary[UNSCORED_CHILD]  # toxic on 4-59 but 56-59, 60-69, 118-119
    assert (unscored["n_scored"], unscored["n_unscored"], unscored["n_toxic"]) == (116, 4, 68)
    # A pair's 2x2 table is over the prompts scored in both: the root's two unscored prompts (where
    # every child is toxic) and the child's four (where the root is toxic) count in no cell.
    for child, (b, c) in DESIGN.items():
        n = _n_paired(child)
        row = pairs[child]
        both = 60 - c - (len(CHILD_UNSCORED) if child == UNSCORED_CHILD else 0)
        assert (row["n_paired"], row["child_only"], row["parent_only"], row["both_toxic"]) == (n, b, c, both), child
        assert row["neither"] == n - b - c - both and row["p_value"] == mcnemar_exact(b, c)
        assert row["delta"] == (b - c) / n


@pytest.mark.parametrize(
    ("alpha", "min_effect"),
    [
        (0.05, 0.01),  # the default call: ranks 1-8 drift, 5-7 only through the step-up
        (0.04, 0.01),  # below the shared q of ranks 4-8: only ranks 1-3
        (None, 0.01),  # alpha exactly at the q-value of ranks 5-8 (see below): q <= alpha, so they drift
        (0.05, 12 / 118),  # exactly the fall of 12 points: |delta| >= min_effect keeps it, drops smaller ones
        (0.3, 0.05),  # a loose alpha lets ranks 9-10 in; the size rule drops 8 to 3 (4.2 points)
    ],
)
def test_the_drift_macro_matches_textbook_benjamini_hochberg(
    design_store: Path, alpha: float | None, min_effect: float
) -> None:
    if alpha is None:
        # The stored p-values are 1/32 only up to the rounding of McNemar's log-space sum, so the
        # boundary is the oracle's q for the stored p-values; SQL and the oracle both compute
        # p * m / rank in double precision in that order, so the two are the same double.
        with Store.open(design_store, read_only=True) as store:
            stored = {r.child: r.p_value for r in drift_rows(store, threshold=0.5, alpha=0.05, min_effect=0.01)}
        names = sorted(stored)
        alpha = dict(zip(names, oracle_benjamini_hochberg([stored[c] for c in names]), strict=True))["u/rise-6a"]
    with Store.open(design_store, read_only=True) as store:
        rows = {r.child: r for r in drift_rows(store, threshold=0.5, alpha=alpha, min_effect=min_effect)}
    assert set(rows) == set(DESIGN)
    children = sorted(rows)
    pvalues = [rows[c].p_value for c in children]
    # The oracle's q-values for the stored p-values; those p-values are the design's own.
    assert pvalues == [mcnemar_exact(*DESIGN[c]) for c in children]
    expected_q = dict(zip(children, oracle_benjamini_hochberg(pvalues), strict=True))
    for child in children:
        b, c = DESIGN[child]
        # SQL computes the same p m / rank in double precision: agreement to rounding (1e-12 relative).
        assert rows[child].q_value == pytest.approx(expected_q[child], rel=1e-12), child
        expected = oracle_drifted((b - c) / _n_paired(child), expected_q[child], alpha=alpha, min_effect=min_effect)
        assert rows[child].drifted == expected, (child, rows[child].q_value, rows[child].delta)
    # The design does exercise what the parameters claim (so a broken macro could not slip by): some
    # pairs are called and some not, and the step-up matters (a raw m p / rank above 0.05 whose
    # q-value is not).
    called = {c for c in children if rows[c].drifted}
    assert 0 < len(called) < len(children)
    order = sorted(children, key=lambda c: rows[c].p_value)
    raw = [rows[c].p_value * len(order) / rank for rank, c in enumerate(order, start=1)]
    assert any(r > 0.05 >= expected_q[c] for r, c in zip(raw, order, strict=True))


# --- simulation -----------------------------------------------------------------------------------


def test_simulation_false_calls_stay_rare_and_a_five_point_rise_is_found() -> None:
    """Null pairs (the same behaviour) are called drifted at most 5% of the time; a planted
    5-point rise on a 1,200-prompt battery is found at least 80% of the time. The pairs' statistics
    come from the product's `pair_statistics`, the false-discovery control and the call from the
    oracles (the store's macro is held to those above)."""
    rng = np.random.default_rng(7)
    n_prompts, n_null, n_rise = 1200, 1000, 200
    planted = np.arange(n_null + n_rise) >= n_null
    propensity = rng.beta(0.5, 9.5, size=(len(planted), n_prompts))  # mean 5%, most prompts near 0
    parent = rng.random(propensity.shape) < propensity
    child = rng.random(propensity.shape) < np.minimum(1.0, propensity + np.where(planted, 0.05, 0.0)[:, None])
    stats = pair_statistics(
        (child & parent).sum(axis=1),
        (child & ~parent).sum(axis=1),
        (~child & parent).sum(axis=1),
        (~child & ~parent).sum(axis=1),
        resamples=10,  # the intervals play no part in the call
    )
    qvalues = oracle_benjamini_hochberg(stats["p_value"].tolist())
    called = np.array(
        [oracle_drifted(d, q, alpha=0.05, min_effect=0.01) for d, q in zip(stats["delta"], qvalues, strict=True)]
    )
    false_share = called[~planted].mean()
    power = called[planted].mean()
    assert false_share <= 0.05
    assert power >= 0.80
