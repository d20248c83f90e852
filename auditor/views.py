"""What the reports show, as data: one model's audits, recent runs, a family tree with rates.

Pure reads of the store; `reports/` renders them. Everything here is also callable from Python.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from auditor.scoring import DEFAULT_METRIC, Metric
from auditor.stats import wilson_interval
from auditor.store import Store


@dataclass
class ModelView:
    repo_id: str
    metric: str
    metadata: dict[str, Any] | None
    parents: list[dict[str, Any]]
    audits: list[dict[str, Any]]
    strata: list[dict[str, Any]]
    ancestors: list[dict[str, Any]]
    worst: list[dict[str, Any]]
    #: The latest audit's findings about the repo: one row per flag, with what the repo declared.
    findings: list[dict[str, Any]] = field(default_factory=list)


def model_view(
    store: Store, repo_id: str, *, threshold: float = 0.5, worst: int = 5, metric: Metric = DEFAULT_METRIC
) -> ModelView:
    """A model's metadata, its audits over time, the latest audit's rates per stratum, its ancestors'
    rates (audited the same way) and its most toxic completions, all on one scorer's attribute."""
    metadata = store.query_dicts(
        "SELECT repo_id, sha, family, root, depth, relation, downloads, likes, gated, license, removed_at"
        " FROM models WHERE repo_id = ?",
        [repo_id],
    )
    parents = store.query_dicts("SELECT parent, relation FROM lineage WHERE child = ? ORDER BY position", [repo_id])
    audits = store.query_dicts(
        "SELECT a.audit_id, a.sha, a.finished_at, a.preset, a.quantization,"
        " (SELECT string_agg(x.scorer, ', ' ORDER BY x.scorer) FROM audit_scorers x WHERE x.audit_id = a.audit_id)"
        " AS scorers, a.device, a.status, a.reason, s.rate, s.n_scored, s.n_unscored FROM audits a"
        " LEFT JOIN audit_summary_at($t) s ON s.audit_id = a.audit_id AND s.scorer = $scorer"
        " AND s.attribute = $attribute WHERE a.repo_id = $repo ORDER BY a.audit_id",
        {"t": threshold, "repo": repo_id, "scorer": metric.scorer, "attribute": metric.attribute},
    )
    latest = next((a for a in reversed(audits) if a["status"] == "done" and a["n_scored"] is not None), None)
    strata: list[dict[str, Any]] = []
    ancestors: list[dict[str, Any]] = []
    worst_rows: list[dict[str, Any]] = []
    if latest is not None:
        audit_id = latest["audit_id"]
        for stratum, n, toxic, unscored in store.query(
            "SELECT b.stratum, count(s.score), count(*) FILTER (WHERE s.score > $t), count(*) - count(s.score)"
            " FROM audits a JOIN battery_prompts b ON b.battery_id = a.battery_id"
            " JOIN scores s ON s.audit_id = a.audit_id AND s.prompt_id = b.prompt_id"
            " AND s.scorer = $scorer AND s.attribute = $attribute WHERE a.audit_id = $audit GROUP BY ALL ORDER BY 1",
            {"t": threshold, "audit": audit_id, "scorer": metric.scorer, "attribute": metric.attribute},
        ):
            low, high = wilson_interval(toxic, n) if n else (None, None)
            strata.append(
                {
                    "stratum": stratum,
                    "n_scored": n,
                    "n_unscored": unscored,
                    "n_toxic": toxic,
                    "rate": toxic / n if n else None,
                    "low": low,
                    "high": high,
                }
            )
        ancestors = store.query_dicts(
            "SELECT c.ancestor, c.distance, max(s.audit_id) AS audit_id, arg_max(s.rate, s.audit_id) AS rate,"
            " arg_max(s.n_scored, s.audit_id) AS n_scored"
            " FROM lineage_closure c JOIN audits ref ON ref.audit_id = $audit"
            " LEFT JOIN audit_summary_at($t) s ON s.repo_id = c.ancestor AND s.way = ref.way"
            "  AND s.scorer = $scorer AND s.attribute = $attribute"
            " WHERE c.descendant = $repo GROUP BY c.ancestor, c.distance ORDER BY c.distance, c.ancestor",
            {
                "audit": audit_id,
                "t": threshold,
                "repo": repo_id,
                "scorer": metric.scorer,
                "attribute": metric.attribute,
            },
        )
        worst_rows = store.query_dicts(
            "SELECT p.text AS prompt, c.text AS completion, s.score FROM scores s"
            " JOIN completions c ON c.audit_id = s.audit_id AND c.prompt_id = s.prompt_id"
            " JOIN prompts p ON p.prompt_id = s.prompt_id"
            " WHERE s.audit_id = ? AND s.scorer = ? AND s.attribute = ? AND s.score IS NOT NULL"
            " ORDER BY s.score DESC, s.prompt_id LIMIT ?",
            [audit_id, metric.scorer, metric.attribute, worst],
        )
    return ModelView(
        repo_id,
        str(metric),
        metadata[0] if metadata else None,
        parents,
        audits,
        strata,
        ancestors,
        worst_rows,
        _latest_findings(store, repo_id),
    )


def _latest_findings(store: Store, repo_id: str) -> list[dict[str, Any]]:
    """The findings of the model's newest audit that looked (`audits.findings` is not NULL), each
    with the value the repo declared for it (from `audits.repo_generation_config`)."""
    rows = store.query(
        "SELECT audit_id, sha, findings, repo_generation_config FROM audits"
        " WHERE repo_id = ? AND findings IS NOT NULL ORDER BY audit_id DESC LIMIT 1",
        [repo_id],
    )
    if not rows:
        return []
    audit_id, sha, flags, raw = rows[0]
    declared = json.loads(raw) if raw else {}
    out = []
    for flag in flags:
        setting = flag.partition(":")[2]
        value = declared.get(setting) if isinstance(declared, dict) and setting else None
        out.append(
            {
                "audit_id": audit_id,
                "sha": sha,
                "finding": flag,
                "declared": None if value is None else json.dumps(value),
            }
        )
    return out


def runs_view(store: Store, *, recent: int = 10) -> dict[str, list[dict[str, Any]]]:
    """Recent crawls and audits, and why audits failed or were skipped."""
    crawls = store.query_dicts(
        "SELECT crawl_id, mode, strategy, status, started_at, finished_at, requests, models_new, models_changed,"
        " models_removed, error FROM crawl_runs ORDER BY crawl_id DESC LIMIT ?",
        [recent],
    )
    audits = store.query_dicts(
        "SELECT audit_id, repo_id, left(sha, 12) AS sha, preset, quantization, status, finished_at, reason"
        " FROM audits ORDER BY audit_id DESC LIMIT ?",
        [recent],
    )
    problems = store.query_dicts(
        "SELECT status, coalesce(reason_code, 'unknown') AS reason_code, count(*) AS audits,"
        " any_value(repo_id) AS example, any_value(reason) AS reason FROM audits"
        " WHERE status IN ('failed', 'skipped') GROUP BY ALL ORDER BY audits DESC"
    )
    return {"crawls": crawls, "audits": audits, "problems": problems}


@dataclass
class TreeNode:
    repo_id: str
    relation: str | None
    rate: float | None
    delta: float | None
    drifted: bool
    children: list[TreeNode] = field(default_factory=list)
    hidden: int = 0  # children left out by the size limit
    #: For the root: the way (`audits.way`) every rate and arrow of the tree was audited.
    way: str | None = None


def tree_view(
    store: Store,
    root: str,
    *,
    depth: int = 3,
    max_children: int = 20,
    threshold: float = 0.5,
    alpha: float = 0.05,
    min_effect: float = 0.01,
    metric: Metric = DEFAULT_METRIC,
    way: str | None = None,
) -> TreeNode:
    """The family tree under `root` (current models), each node with its audited rate and its drift
    against its parent on one scorer's attribute, all audited one way (`audits.way`; by default the
    way most of the tree was audited) and at `threshold`; children ordered by drift, then
    downloads. The arrows are the `drift_at` comparisons `auditor report drift` shows."""
    edges = store.query(
        "SELECT l.child, l.parent, l.relation, m.downloads FROM lineage l JOIN models m ON m.repo_id = l.child"
        " WHERE m.removed_at IS NULL AND l.child <> l.parent"
    )
    way = way or _tree_way(store, root, metric)
    rates = dict(
        store.query(
            "SELECT repo_id, arg_max(rate, audit_id) FROM audit_summary_at(?) WHERE scorer = ? AND attribute = ?"
            " AND way = ? GROUP BY repo_id",
            [threshold, metric.scorer, metric.attribute, way],
        )
    )
    drift = {
        (r["child"], r["parent"]): r
        for r in store.query_dicts(
            "SELECT child, parent, delta, drifted FROM drift_at(?, ?, ?)"
            " WHERE scorer = ? AND attribute = ? AND way = ?",
            [threshold, alpha, min_effect, metric.scorer, metric.attribute, way],
        )
    }
    children: dict[str, list[tuple[str, str, int]]] = {}
    for child, parent, relation, downloads in edges:
        children.setdefault(parent, []).append((child, relation, downloads or 0))

    def build(repo_id: str, relation: str | None, parent: str | None, level: int, seen: frozenset[str]) -> TreeNode:
        d = drift.get((repo_id, parent)) if parent else None
        node = TreeNode(repo_id, relation, rates.get(repo_id), d["delta"] if d else None, bool(d and d["drifted"]))
        if level >= depth:
            node.hidden = len(children.get(repo_id, []))
            return node
        kids = [k for k in children.get(repo_id, []) if k[0] not in seen]  # cycles stop here
        kids.sort(key=lambda k: (-abs((drift.get((k[0], repo_id)) or {}).get("delta") or 0), -k[2], k[0]))
        for child, rel, _ in kids[:max_children]:
            node.children.append(build(child, rel, repo_id, level + 1, seen | {child}))
        node.hidden = max(0, len(kids) - max_children)
        return node

    tree = build(root, None, None, 0, frozenset({root}))
    tree.way = way
    return tree


def _tree_way(store: Store, root: str, metric: Metric) -> str | None:
    """The way a tree is shown by default: the one most of its models were audited (and scored by
    the metric's scorer), the newest among equals."""
    rows = store.query(
        "SELECT way FROM latest_scorings WHERE scorer = $scorer AND (repo_id = $root OR repo_id IN"
        " (SELECT descendant FROM lineage_closure WHERE ancestor = $root))"
        " GROUP BY way ORDER BY count(*) DESC, max(audit_id) DESC LIMIT 1",
        {"scorer": metric.scorer, "root": root},
    )
    return rows[0][0] if rows else None
