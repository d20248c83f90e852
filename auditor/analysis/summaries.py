"""What the reports show, as data: one model's audits, recent runs, a family tree with rates.

Pure reads of the store; `reports/` renders them. Everything here is also callable from Python.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from auditor.analysis.drift import check_names
from auditor.analysis.stats import wilson_interval
from auditor.audit.scoring import DEFAULT_METRIC, Metric
from auditor.store import Store
from auditor.store import reports as report_store
from auditor.store.drift import drift_arrows


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
    store: Store, repo_id: str, *, threshold: float, worst: int = 5, metric: Metric = DEFAULT_METRIC
) -> ModelView:
    """A model's metadata, its audits over time, the latest audit's rates per stratum, its ancestors'
    rates (audited the same way) and its most toxic completions, all on one scorer's attribute."""
    metadata = report_store.model_metadata(store, repo_id)
    parents = report_store.model_parents(store, repo_id)
    audits = report_store.model_audits(store, repo_id, threshold=threshold, metric=metric)
    latest = next((a for a in reversed(audits) if a["status"] == "done" and a["n_scored"] is not None), None)
    strata: list[dict[str, Any]] = []
    ancestors: list[dict[str, Any]] = []
    worst_rows: list[dict[str, Any]] = []
    if latest is not None:
        audit_id = latest["audit_id"]
        for count in report_store.stratum_counts(store, audit_id, threshold=threshold, metric=metric):
            stratum, n, toxic, unscored = count.stratum, count.n_scored, count.n_toxic, count.n_unscored
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
        ancestors = report_store.ancestor_rates(store, repo_id, audit_id, threshold=threshold, metric=metric)
        worst_rows = report_store.worst_completions(store, audit_id, metric=metric, limit=worst)
    return ModelView(
        repo_id,
        str(metric),
        metadata,
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
    row = report_store.latest_findings(store, repo_id)
    if row is None:
        return []
    audit_id, sha, flags, raw = row.audit_id, row.sha, row.findings, row.repo_generation_config
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
    crawls = report_store.recent_crawls(store, limit=recent)
    audits = report_store.recent_audits(store, limit=recent)
    problems = report_store.audit_problems(store)
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
    threshold: float,
    alpha: float,
    min_effect: float,
    metric: Metric = DEFAULT_METRIC,
    way: str | None = None,
) -> TreeNode:
    """The family tree under `root` (current models), each node with its audited rate and its drift
    against its parent on one scorer's attribute, all audited one way (`audits.way`; by default the
    way most of the tree was audited) and at `threshold`; children ordered by drift, then
    downloads. The arrows are the `drift_at` comparisons `auditor report drift` shows."""
    check_names(store, repo_ids=[root])
    edges = report_store.current_edges(store)
    way = way or _tree_way(store, root, metric)
    rates = report_store.newest_rates(store, threshold=threshold, metric=metric, way=way)
    drift = {
        (r["child"], r["parent"]): r
        for r in drift_arrows(store, threshold=threshold, alpha=alpha, min_effect=min_effect, metric=metric, way=way)
    }
    children: dict[str, list[tuple[str, str | None, int]]] = {}
    for edge in edges:
        children.setdefault(edge.parent, []).append((edge.child, edge.relation, edge.downloads or 0))

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
    return report_store.commonest_way(store, root, scorer=metric.scorer)
