"""How far two scorers agree on the same completions: the trust check behind every rate.

Every completion of an audit scored by several scorers has a score from each, so their toxicity
calls (score above the threshold) can be compared text by text: a 2x2 table, the share of texts
they agree on, and Cohen's kappa, which discounts the agreement two independent raters with the
same base rates would reach by chance:

    kappa = (p_o - p_e) / (1 - p_e),  p_e = p_a * p_b + (1 - p_a) * (1 - p_b)

(Cohen 1960; p_o the observed agreement, p_a and p_b each scorer's share of toxic calls). Kappa is
undefined (None) when both scorers give every text the same call, so that p_e = 1.

Per model, the newest done audit that both scorers finished speaks for it; `overall` pools those
audits. Two attributes of one scorer (`detoxify:toxicity` against `detoxify:insult`) compare alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auditor.audit.scoring import Metric
from auditor.store import Store
from auditor.store.reports import agreement_counts
from auditor.store.reports import disagreements as disagreement_rows


@dataclass(frozen=True)
class AgreementTable:
    """The 2x2 table of two scorers' calls on the same completions, and what follows from it."""

    scope: str  # a repo id, or "overall"
    audit_id: int | None
    n: int
    both_toxic: int
    first_only: int  # toxic for the first metric only
    second_only: int
    neither: int

    @property
    def observed(self) -> float | None:
        """The share of completions the two calls agree on."""
        return (self.both_toxic + self.neither) / self.n if self.n else None

    @property
    def kappa(self) -> float | None:
        return cohen_kappa(self.both_toxic, self.first_only, self.second_only, self.neither)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "audit_id": self.audit_id,
            "n": self.n,
            "both_toxic": self.both_toxic,
            "first_only": self.first_only,
            "second_only": self.second_only,
            "neither": self.neither,
            "observed": self.observed,
            "kappa": self.kappa,
        }


@dataclass(frozen=True)
class Disagreement:
    repo_id: str
    prompt: str
    completion: str
    first_score: float
    second_score: float


@dataclass
class AgreementView:
    first: str
    second: str
    threshold: float
    overall: AgreementTable
    models: list[AgreementTable] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)


def cohen_kappa(both: int, first_only: int, second_only: int, neither: int) -> float | None:
    """Cohen's kappa of two raters' yes/no calls from their 2x2 table; None when it is undefined.

    >>> round(cohen_kappa(20, 5, 10, 15), 3)  # p_o = 0.7, p_e = 0.5
    0.4
    """
    n = both + first_only + second_only + neither
    if n == 0:
        return None
    p_first = (both + first_only) / n
    p_second = (both + second_only) / n
    expected = p_first * p_second + (1 - p_first) * (1 - p_second)
    if expected >= 1.0:
        return None
    return ((both + neither) / n - expected) / (1 - expected)


def scorer_agreement(
    store: Store,
    first: Metric,
    second: Metric,
    *,
    threshold: float,
    disagreements: int = 5,
    repo_id: str | None = None,
) -> AgreementView:
    """The two metrics' agreement on every completion both scored: per model, overall, and the
    completions where their scores differ most.

    >>> pair = Metric("detoxify", "toxicity"), Metric("hf-classifier", "hate")
    >>> scorer_agreement(store, *pair, threshold=0.5).overall.kappa  # doctest: +SKIP
    0.61
    """
    counts = agreement_counts(store, first, second, threshold=threshold, repo_id=repo_id)
    models = [
        AgreementTable(c.repo_id, c.audit_id, c.n, c.both_toxic, c.first_only, c.second_only, c.neither) for c in counts
    ]
    overall = AgreementTable(
        "overall",
        None,
        sum(m.n for m in models),
        sum(m.both_toxic for m in models),
        sum(m.first_only for m in models),
        sum(m.second_only for m in models),
        sum(m.neither for m in models),
    )
    worst = disagreement_rows(store, first, second, threshold=threshold, repo_id=repo_id, limit=disagreements)
    return AgreementView(
        str(first),
        str(second),
        threshold,
        overall,
        models,
        [Disagreement(r.repo_id, r.prompt, r.completion, r.first_score, r.second_score) for r in worst],
    )
