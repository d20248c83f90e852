"""The reads behind the reports: one model (metadata, parents, audits, strata, ancestors, worst
completions, findings), recent runs, a family tree's edges and rates, and two scorers' paired
scores. Each returns rows; `auditor.analysis.summaries` and `auditor.analysis.agreement` turn them
into what a report shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auditor.audit.scoring import Metric
from auditor.store.database import Store


@dataclass(frozen=True)
class StratumCount:
    """One stratum of an audit's battery: scored completions, toxic ones, unscored ones."""

    stratum: str
    n_scored: int
    n_toxic: int
    n_unscored: int


@dataclass(frozen=True)
class FindingsRow:
    """The newest audit of a model that looked for findings, with what the repo declared."""

    audit_id: int
    sha: str | None
    findings: list[str]
    repo_generation_config: str | None


@dataclass(frozen=True)
class TreeEdge:
    """A lineage edge of a current model."""

    child: str
    parent: str
    relation: str | None
    downloads: int | None


@dataclass(frozen=True)
class AgreementCounts:
    """One model's 2x2 table of two metrics' calls on the completions both scored."""

    repo_id: str
    audit_id: int
    n: int
    both_toxic: int
    first_only: int
    second_only: int
    neither: int


@dataclass(frozen=True)
class DisagreementRow:
    repo_id: str
    prompt: str
    completion: str
    first_score: float
    second_score: float


def known_names(store: Store) -> tuple[set[str], set[str]]:
    """(the current models' ids, their families): what a report's filters may name."""
    rows = store.query("SELECT repo_id, family FROM models WHERE removed_at IS NULL")
    return {r[0] for r in rows}, {r[1] for r in rows if r[1] is not None}


def model_metadata(store: Store, repo_id: str) -> dict[str, Any] | None:
    rows = store.query_dicts(
        "SELECT repo_id, sha, family, root, depth, relation, downloads, likes, gated, license, removed_at"
        " FROM models WHERE repo_id = ?",
        [repo_id],
    )
    return rows[0] if rows else None


def model_parents(store: Store, repo_id: str) -> list[dict[str, Any]]:
    return store.query_dicts("SELECT parent, relation FROM lineage WHERE child = ? ORDER BY position", [repo_id])


def model_audits(store: Store, repo_id: str, *, threshold: float, metric: Metric) -> list[dict[str, Any]]:
    """Every audit of `repo_id`, oldest first, with its rate on `metric` at `threshold`."""
    return store.query_dicts(
        "SELECT a.audit_id, a.sha, a.finished_at, a.preset, a.quantization,"
        " (SELECT string_agg(x.scorer, ', ' ORDER BY x.scorer) FROM audit_scorers x WHERE x.audit_id = a.audit_id)"
        " AS scorers, a.device, a.status, a.reason, s.rate, s.n_scored, s.n_unscored FROM audits a"
        " LEFT JOIN audit_summary_at($t) s ON s.audit_id = a.audit_id AND s.scorer = $scorer"
        " AND s.attribute = $attribute WHERE a.repo_id = $repo ORDER BY a.audit_id",
        {"t": threshold, "repo": repo_id, "scorer": metric.scorer, "attribute": metric.attribute},
    )


def stratum_counts(store: Store, audit_id: int, *, threshold: float, metric: Metric) -> list[StratumCount]:
    rows = store.query(
        "SELECT b.stratum, count(s.score), count(*) FILTER (WHERE s.score > $t), count(*) - count(s.score)"
        " FROM audits a JOIN battery_prompts b ON b.battery_id = a.battery_id"
        " JOIN scores s ON s.audit_id = a.audit_id AND s.prompt_id = b.prompt_id"
        " AND s.scorer = $scorer AND s.attribute = $attribute WHERE a.audit_id = $audit GROUP BY ALL ORDER BY 1",
        {"t": threshold, "audit": audit_id, "scorer": metric.scorer, "attribute": metric.attribute},
    )
    return [StratumCount(stratum, n, toxic, unscored) for stratum, n, toxic, unscored in rows]


def ancestor_rates(
    store: Store, repo_id: str, audit_id: int, *, threshold: float, metric: Metric
) -> list[dict[str, Any]]:
    """Each ancestor of `repo_id` with its newest rate audited the same way as `audit_id`."""
    return store.query_dicts(
        "SELECT c.ancestor, c.distance, max(s.audit_id) AS audit_id, arg_max(s.rate, s.audit_id) AS rate,"
        " arg_max(s.n_scored, s.audit_id) AS n_scored"
        " FROM lineage_closure c JOIN audits ref ON ref.audit_id = $audit"
        " LEFT JOIN audit_summary_at($t) s ON s.repo_id = c.ancestor AND s.way = ref.way"
        "  AND s.scorer = $scorer AND s.attribute = $attribute"
        " WHERE c.descendant = $repo GROUP BY c.ancestor, c.distance ORDER BY c.distance, c.ancestor",
        {"audit": audit_id, "t": threshold, "repo": repo_id, "scorer": metric.scorer, "attribute": metric.attribute},
    )


def worst_completions(store: Store, audit_id: int, *, metric: Metric, limit: int) -> list[dict[str, Any]]:
    return store.query_dicts(
        "SELECT p.text AS prompt, c.text AS completion, s.score FROM scores s"
        " JOIN completions c ON c.audit_id = s.audit_id AND c.prompt_id = s.prompt_id"
        " JOIN prompts p ON p.prompt_id = s.prompt_id"
        " WHERE s.audit_id = ? AND s.scorer = ? AND s.attribute = ? AND s.score IS NOT NULL"
        " ORDER BY s.score DESC, s.prompt_id LIMIT ?",
        [audit_id, metric.scorer, metric.attribute, limit],
    )


def latest_findings(store: Store, repo_id: str) -> FindingsRow | None:
    """The model's newest audit that looked for findings (`audits.findings` is not NULL)."""
    rows = store.query(
        "SELECT audit_id, sha, findings, repo_generation_config FROM audits"
        " WHERE repo_id = ? AND findings IS NOT NULL ORDER BY audit_id DESC LIMIT 1",
        [repo_id],
    )
    if not rows:
        return None
    audit_id, sha, findings, raw = rows[0]
    return FindingsRow(audit_id, sha, list(findings), raw)


def recent_crawls(store: Store, *, limit: int) -> list[dict[str, Any]]:
    return store.query_dicts(
        "SELECT crawl_id, mode, strategy, status, started_at, finished_at, requests, models_new, models_changed,"
        " models_removed, error FROM crawl_runs ORDER BY crawl_id DESC LIMIT ?",
        [limit],
    )


def recent_audits(store: Store, *, limit: int) -> list[dict[str, Any]]:
    return store.query_dicts(
        "SELECT audit_id, repo_id, left(sha, 12) AS sha, preset, quantization, status, finished_at, reason"
        " FROM audits ORDER BY audit_id DESC LIMIT ?",
        [limit],
    )


def audit_problems(store: Store) -> list[dict[str, Any]]:
    """Failed and skipped audits counted by reason code, most frequent first, with an example."""
    return store.query_dicts(
        "SELECT status, coalesce(reason_code, 'unknown') AS reason_code, count(*) AS audits,"
        " any_value(repo_id) AS example, any_value(reason) AS reason FROM audits"
        " WHERE status IN ('failed', 'skipped') GROUP BY ALL ORDER BY audits DESC"
    )


def current_edges(store: Store) -> list[TreeEdge]:
    """Every lineage edge of a model not removed from the Hub (self-edges left out)."""
    rows = store.query(
        "SELECT l.child, l.parent, l.relation, m.downloads FROM lineage l JOIN models m ON m.repo_id = l.child"
        " WHERE m.removed_at IS NULL AND l.child <> l.parent"
    )
    return [TreeEdge(child, parent, relation, downloads) for child, parent, relation, downloads in rows]


def newest_rates(store: Store, *, threshold: float, metric: Metric, way: str | None) -> dict[str, float | None]:
    """Each model's rate on `metric` at `threshold` in its newest audit made `way`."""
    rows = store.query(
        "SELECT repo_id, arg_max(rate, audit_id) FROM audit_summary_at(?) WHERE scorer = ? AND attribute = ?"
        " AND way = ? GROUP BY repo_id",
        [threshold, metric.scorer, metric.attribute, way],
    )
    return {repo_id: rate for repo_id, rate in rows}


def commonest_way(store: Store, root: str, *, scorer: str) -> str | None:
    """The way most of the tree under `root` was audited (and scored by `scorer`), the newest
    among equals."""
    rows = store.query(
        "SELECT way FROM latest_scorings WHERE scorer = $scorer AND (repo_id = $root OR repo_id IN"
        " (SELECT descendant FROM lineage_closure WHERE ancestor = $root))"
        " GROUP BY way ORDER BY count(*) DESC, max(audit_id) DESC LIMIT 1",
        {"scorer": scorer, "root": root},
    )
    return rows[0][0] if rows else None


#: Per model, the newest done audit both scorers finished, and the completions both scored.
_PAIRED = """
    WITH chosen AS (
        SELECT x.repo_id, max(x.audit_id) AS audit_id
        FROM audit_scorings x JOIN audit_scorings y ON y.audit_id = x.audit_id
        WHERE x.scorer = $fs AND y.scorer = $ss AND ($repo IS NULL OR x.repo_id = $repo)
        GROUP BY x.repo_id
    )
    SELECT c.repo_id, c.audit_id, f.prompt_id, f.score AS first_score, s.score AS second_score
    FROM chosen c
    JOIN scores f ON f.audit_id = c.audit_id AND f.scorer = $fs AND f.attribute = $fa
    JOIN scores s ON s.audit_id = c.audit_id AND s.prompt_id = f.prompt_id AND s.scorer = $ss AND s.attribute = $sa
    WHERE f.score IS NOT NULL AND s.score IS NOT NULL
"""


def _paired_params(first: Metric, second: Metric, threshold: float, repo_id: str | None) -> dict[str, Any]:
    return {
        "fs": first.scorer,
        "fa": first.attribute,
        "ss": second.scorer,
        "sa": second.attribute,
        "t": threshold,
        "repo": repo_id,
    }


def agreement_counts(
    store: Store, first: Metric, second: Metric, *, threshold: float, repo_id: str | None
) -> list[AgreementCounts]:
    """Per model (or only `repo_id`), the 2x2 table of the two metrics' calls at `threshold`."""
    rows = store.query(
        f"""
        WITH paired AS ({_PAIRED})
        SELECT repo_id, any_value(audit_id), count(*),
               count(*) FILTER (WHERE first_score > $t AND second_score > $t),
               count(*) FILTER (WHERE first_score > $t AND second_score <= $t),
               count(*) FILTER (WHERE first_score <= $t AND second_score > $t),
               count(*) FILTER (WHERE first_score <= $t AND second_score <= $t)
        FROM paired GROUP BY repo_id ORDER BY repo_id
        """,
        _paired_params(first, second, threshold, repo_id),
    )
    return [AgreementCounts(*r) for r in rows]


def disagreements(
    store: Store, first: Metric, second: Metric, *, threshold: float, repo_id: str | None, limit: int
) -> list[DisagreementRow]:
    """The completions the two metrics call differently at `threshold`, largest gap first."""
    rows = store.query(
        f"""
        WITH paired AS ({_PAIRED})
        SELECT p.repo_id, pr.text, c.text, p.first_score, p.second_score
        FROM paired p
        JOIN completions c ON c.audit_id = p.audit_id AND c.prompt_id = p.prompt_id
        JOIN prompts pr ON pr.prompt_id = p.prompt_id
        WHERE (p.first_score > $t) <> (p.second_score > $t)
        ORDER BY abs(p.first_score - p.second_score) DESC, p.repo_id, p.prompt_id
        LIMIT $limit
        """,
        {**_paired_params(first, second, threshold, repo_id), "limit": limit},
    )
    return [DisagreementRow(*r) for r in rows]
