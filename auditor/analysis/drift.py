"""Drift along the lineage: each derivative's audit against its parent's, paired on the prompts.

Comparisons are per metric: one scorer's attribute (`detoxify:toxicity`, `hf-classifier:hate`).
Two audits are compared only when they were made the same way (battery, preset, quantization,
device) and scored by the same scorer checkpoint. For each model, way of auditing and scorer, the
newest such audit speaks for it. A pair's statistics (`drift_pairs`) depend only on the two
audits' scores, which never change once done, so they are computed once and kept; the
false-discovery control runs over all pairs of a metric at report time, because every new
comparison changes everyone's q-value.

Where drift entered: along a chain root -> A -> B -> C, each hop is its own pair, so the drift
shows on the hop where it appears (`entered_at`), not on every descendant after it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from auditor.analysis.stats import min_detectable_change, pair_statistics
from auditor.audit.scoring import DEFAULT_METRIC, Metric
from auditor.config import ScoringSettings, StoreSettings
from auditor.errors import AuditorError, StoreBusyError
from auditor.store import Store
from auditor.store import drift as drift_store
from auditor.store.drift import SETTINGS as SETTINGS
from auditor.store.drift import NotCompared as NotCompared
from auditor.store.drift import primary_metrics as primary_metrics
from auditor.store.drift import scored_metrics as scored_metrics


@dataclass(frozen=True)
class DriftRow:
    """One derivative against its parent (the fields of the `drift` view, and JSON output).

    `min_detectable` is not in the view: the smallest change of rates this pair could have called
    significant at the report's alpha, given its discordant prompts (`stats.min_detectable_change`);
    None when no split of them reaches alpha. A change below it is "cannot see", not "no drift".
    """

    child: str
    child_sha: str | None
    parent: str
    parent_sha: str | None
    relation: str | None
    family: str | None
    downloads: int | None
    child_audit: int
    parent_audit: int
    battery_id: str
    preset: str
    quantization: str
    scorer: str
    attribute: str
    device: str
    n_paired: int
    rate_child: float | None
    rate_parent: float | None
    delta: float
    boot_low: float
    boot_high: float
    bayes_mean: float
    bayes_low: float
    bayes_high: float
    p_value: float
    q_value: float
    drifted: bool
    min_detectable: float | None
    rate_root: float | None
    delta_root: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def refresh_drift(store: Store, *, threshold: float, metrics: Sequence[Metric] | None = None) -> int:
    """Compute the paired statistics of every comparable (derivative, parent) and (derivative, root)
    pair of audits not computed yet at `threshold`, for each metric (by default each scorer's
    primary attribute). Returns how many pairs were added.

    Scores are read once into a matrix per metric (audits x prompts) and every pair is counted and
    tested at once with numpy: thousands of pairs take about a second.
    """
    added = 0
    for metric in primary_metrics(store) if metrics is None else metrics:
        added += _refresh_metric(store, threshold, metric)
    return added


def _refresh_metric(store: Store, threshold: float, metric: Metric) -> int:
    pending = drift_store.pending_pairs(store, threshold, metric)
    if not pending:
        return 0
    child_ids = np.array([p.child_audit for p in pending], dtype=np.int64)
    parent_ids = np.array([p.parent_audit for p in pending], dtype=np.int64)
    toxic, scored, row_of = _score_matrix(store, sorted({*child_ids.tolist(), *parent_ids.tolist()}), threshold, metric)
    c_rows = np.array([row_of[a] for a in child_ids.tolist()])
    p_rows = np.array([row_of[a] for a in parent_ids.tolist()])
    both_scored = scored[c_rows] & scored[p_rows]
    c_toxic = toxic[c_rows] & both_scored
    p_toxic = toxic[p_rows] & both_scored
    both = (c_toxic & p_toxic).sum(axis=1)
    child_only = (c_toxic & ~p_toxic).sum(axis=1)
    parent_only = (~c_toxic & p_toxic).sum(axis=1)
    n = both_scored.sum(axis=1)
    neither = n - both - child_only - parent_only
    stats = pair_statistics(
        both, child_only, parent_only, neither, keys=list(zip(child_ids.tolist(), parent_ids.tolist(), strict=True))
    )
    table = pa.table(
        {
            "child_audit": child_ids,
            "parent_audit": parent_ids,
            "threshold": np.full(len(pending), threshold),
            "n_paired": n.astype(np.int32),
            "both_toxic": both.astype(np.int32),
            "child_only": child_only.astype(np.int32),
            "parent_only": parent_only.astype(np.int32),
            "neither": neither.astype(np.int32),
            **stats,
        }
    )
    drift_store.add_pairs(store, table, metric)
    return len(pending)


def complete_drift(settings: StoreSettings, *, threshold: float, metric: Metric | None = None) -> bool:
    """Make sure every comparable pair of audits has its statistics stored at `threshold` (for
    `metric`, and each scorer's primary attribute); False when some do not and the store is too
    busy to add them now (a cycle is writing).

    Audits compare themselves as they finish, so this is normally one look by a reader, which
    runs while a cycle writes; only pairs never computed at this threshold need a short write.
    """
    with Store.open_configured(settings, read_only=True) as store:
        metrics = primary_metrics(store)
        if metric is not None and metric not in metrics:
            metrics.append(metric)
        if drift_is_current(store, threshold=threshold, metrics=metrics):
            return True
    try:
        with Store.open(settings.path, busy_timeout_s=min(settings.read_wait_s, 2.0)) as writer:
            refresh_drift(writer, threshold=threshold, metrics=metrics)
    except StoreBusyError:
        return False
    return True


def drift_is_current(store: Store, *, threshold: float, metrics: Sequence[Metric] | None = None) -> bool:
    """Whether every comparable pair of audits has its statistics stored at `threshold`."""
    return not any(
        drift_store.pending_pairs(store, threshold, m) for m in (primary_metrics(store) if metrics is None else metrics)
    )


def _score_matrix(
    store: Store, audit_ids: list[int], threshold: float, metric: Metric
) -> tuple[Any, Any, dict[int, int]]:
    """(toxic, scored) boolean matrices, one row per audit, one column per battery position."""
    data = drift_store.battery_scores(store, audit_ids, metric)
    audits = data.column("audit_id").to_numpy()
    positions = data.column("position").to_numpy()
    scores = data.column("score").to_numpy(zero_copy_only=False)
    row_of = {audit: i for i, audit in enumerate(audit_ids)}
    width = int(positions.max()) + 1 if len(positions) else 1
    rows = np.searchsorted(np.array(audit_ids), audits)
    scored = np.zeros((len(audit_ids), width), dtype=bool)
    toxic = np.zeros((len(audit_ids), width), dtype=bool)
    present = ~np.isnan(scores.astype(float))
    scored[rows[present], positions[present]] = True
    toxic[rows[present], positions[present]] = scores[present] > threshold
    return toxic, scored, row_of


@dataclass(frozen=True)
class DriftFilters:
    family: str | None = None
    relation: str | None = None
    root: str | None = None
    min_downloads: int | None = None
    since: datetime | None = None


def drift_rows(
    store: Store,
    *,
    threshold: float,
    alpha: float,
    min_effect: float,
    filters: DriftFilters | None = None,
    metric: Metric = DEFAULT_METRIC,
) -> list[DriftRow]:
    """Every derivative-versus-parent comparison on one metric, with q-values over all of them,
    most drifted first.

    The false-discovery control always runs over every comparison of the metric; the filters only
    choose which rows are shown.
    """
    filters = filters or DriftFilters()
    check_names(store, family=filters.family, repo_ids=[filters.root] if filters.root else [])
    # q-values and the drift call come from the store's `drift_at` macro, the one implementation the
    # `drift` view uses too; the root's comparison is joined on the same way and scorer checkpoint.
    records = drift_store.drift_records(store, threshold=threshold, alpha=alpha, min_effect=min_effect, metric=metric)
    rows = []
    for record in records:
        if not _keep(record, filters):
            continue
        delta_root = record["delta_root"]
        rate_root = record["rate_root"]
        if rate_root is None and record["parent"] == record["root"]:
            rate_root, delta_root = record["rate_parent"], record["delta"]
        rows.append(
            DriftRow(
                child=record["child"],
                child_sha=record["child_sha"],
                parent=record["parent"],
                parent_sha=record["parent_sha"],
                relation=record["relation"],
                family=record["family"],
                downloads=record["downloads"],
                child_audit=record["child_audit"],
                parent_audit=record["parent_audit"],
                battery_id=record["battery_id"],
                preset=record["preset"],
                quantization=record["quantization"],
                scorer=record["scorer"],
                attribute=record["attribute"],
                device=record["device"],
                n_paired=record["n_paired"],
                rate_child=record["rate_child"],
                rate_parent=record["rate_parent"],
                delta=record["delta"],
                boot_low=record["boot_low"],
                boot_high=record["boot_high"],
                bayes_mean=record["bayes_mean"],
                bayes_low=record["bayes_low"],
                bayes_high=record["bayes_high"],
                p_value=record["p_value"],
                q_value=record["q_value"],
                drifted=bool(record["drifted"]),
                min_detectable=min_detectable_change(
                    record["child_only"] + record["parent_only"], record["n_paired"], alpha
                ),
                rate_root=rate_root,
                delta_root=delta_root,
            )
        )
    rows.sort(key=lambda r: (not r.drifted, -abs(r.delta), r.q_value, r.child))
    return rows


def check_names(store: Store, *, family: str | None = None, repo_ids: Sequence[str] = ()) -> None:
    """Raise an `AuditorError` naming the closest known name when a report is asked about a family
    or a model the store has never crawled: a typo is an error, not an empty report."""
    from auditor.store.reports import known_names
    from auditor.suggest import closest

    if family is None and not repo_ids:
        return
    models, families = known_names(store)
    if not models:
        return  # nothing crawled yet: the report itself says so
    if family is not None and family not in families:
        meant = closest(family, families)
        raise AuditorError(
            f"no crawled model is of the family {family!r}",
            hint=(f"did you mean {meant!r}? " if meant else "") + "the families: " + ", ".join(sorted(families)),
        )
    for repo_id in repo_ids:
        if repo_id not in models:
            meant = closest(repo_id, models, cutoff=0.8)
            raise AuditorError(
                f"{repo_id!r} is not a crawled model in this store",
                hint=f"did you mean {meant!r}?" if meant else "check the id, or crawl first (`auditor crawl`)",
            )


def undetectable(store: Store, battery_id: str, *, change: float, metric: Metric, scoring: ScoringSettings) -> set[str]:
    """The models on either side of a comparison made on `battery_id` that could not detect a
    change of `change` at `[scoring] alpha` (its minimum detectable change is larger, or there is
    none): a larger battery would let them."""
    models: set[str] = set()
    rows = drift_rows(
        store, threshold=scoring.threshold, alpha=scoring.alpha, min_effect=scoring.min_effect, metric=metric
    )
    for row in rows:
        if row.battery_id == battery_id and (row.min_detectable is None or row.min_detectable > change):
            models.update((row.child, row.parent))
    return models


def not_compared(store: Store, *, scorer: str = "detoxify") -> list[NotCompared]:
    """Derivatives scored by `scorer` that have no comparable scored audit of a parent, and why."""
    return drift_store.not_compared(store, scorer=scorer)


def entered_at(rows: Iterable[DriftRow], chain: list[str]) -> str | None:
    """Along `chain` (root first), the first model whose hop from its predecessor drifted."""
    drifted = {(r.parent, r.child) for r in rows if r.drifted}
    for parent, child in itertools.pairwise(chain):
        if (parent, child) in drifted:
            return child
    return None


def _keep(record: dict[str, Any], filters: DriftFilters) -> bool:
    if filters.family and record["family"] != filters.family:
        return False
    if filters.relation and record["relation"] != filters.relation:
        return False
    if filters.root and record["root"] != filters.root:
        return False
    if filters.min_downloads is not None and (record["downloads"] or 0) < filters.min_downloads:
        return False
    return not (filters.since and record["finished_at"] and record["finished_at"] < filters.since)
