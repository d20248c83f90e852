"""The drift tables' reads and writes: which pairs of audits still need statistics, the scores
they are computed from, the computed pairs (`drift_pairs`), and the comparisons with q-values
that the `drift_at(threshold, alpha, min_effect)` macro gives.

The statistics themselves are computed in `auditor.analysis.drift`; this module only moves rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from auditor.audit.scoring import Metric
from auditor.store.database import Store, staged

#: What two scored audits must share to be compared: the way they were audited (`audits.way`:
#: battery, preset and its settings, quantization, device) and the scorer checkpoint.
SETTINGS = ("way", "scorer", "scorer_hash")


@dataclass(frozen=True)
class PendingPair:
    """A comparable (derivative, parent or root) pair of audits without statistics yet."""

    child_audit: int
    parent_audit: int
    battery_id: str


@dataclass(frozen=True)
class NotCompared:
    child: str
    parent: str
    reason: str


def primary_metrics(store: Store) -> list[Metric]:
    """Each scorer's primary attribute, for the scorers that finished scoring some audit."""
    rows = store.query(
        "SELECT DISTINCT scorer, primary_attribute FROM audit_scorers WHERE status = 'done' ORDER BY 1, 2"
    )
    return [Metric(scorer, attribute) for scorer, attribute in rows]


def scored_metrics(store: Store) -> list[Metric]:
    """Every (scorer, attribute) the store has scores of."""
    return [Metric(s, a) for s, a in store.query("SELECT DISTINCT scorer, attribute FROM scores ORDER BY 1, 2")]


def pending_pairs(store: Store, threshold: float, metric: Metric) -> list[PendingPair]:
    """Every comparable (derivative, parent) and (derivative, root) pair of the newest audits with
    no statistics stored at `threshold` for `metric`, in audit order."""
    settings = " AND ".join(f"c.{s} = p.{s}" for s in SETTINGS)
    rows = store.query(
        f"""
        WITH latest AS (SELECT * FROM latest_scorings WHERE scorer = $scorer),
        related AS (
            SELECT child, parent FROM lineage WHERE child <> parent
            UNION
            SELECT c.descendant, c.ancestor FROM lineage_closure c JOIN models m ON m.repo_id = c.ancestor
            WHERE m.is_root AND c.distance > 1
        )
        SELECT c.audit_id, p.audit_id, c.battery_id
        FROM related r
        JOIN latest c ON c.repo_id = r.child
        JOIN latest p ON p.repo_id = r.parent AND {settings}
        WHERE NOT EXISTS (SELECT 1 FROM drift_pairs d WHERE d.child_audit = c.audit_id
                          AND d.parent_audit = p.audit_id AND d.scorer = $scorer AND d.attribute = $attribute
                          AND d.threshold = $threshold)
        ORDER BY 1, 2
        """,
        {"scorer": metric.scorer, "attribute": metric.attribute, "threshold": threshold},
    )
    return [PendingPair(child, parent, battery) for child, parent, battery in rows]


def battery_scores(store: Store, audit_ids: Sequence[int], metric: Metric) -> pa.Table:
    """The scores of `audit_ids` on `metric`, each at its battery position: columns `audit_id`,
    `position` and `score` (NULL where the scorer could not score)."""
    wanted = pa.table({"audit_id": pa.array(list(audit_ids), pa.int32())})
    with store.session() as con, staged(con, {"_wanted": wanted}):
        table: pa.Table = con.sql(
            """
            SELECT s.audit_id, b.position, s.score
            FROM scores s
            JOIN audits a ON a.audit_id = s.audit_id
            JOIN battery_prompts b ON b.battery_id = a.battery_id AND b.prompt_id = s.prompt_id
            WHERE s.audit_id IN (SELECT audit_id FROM _wanted) AND s.scorer = $scorer AND s.attribute = $attribute
            """,
            params={"scorer": metric.scorer, "attribute": metric.attribute},
        ).to_arrow_table()
    return table


def add_pairs(store: Store, computed: pa.Table, metric: Metric) -> None:
    """Store computed pair statistics for `metric`; a pair already stored is kept as it is.

    `computed` has the columns of `drift_pairs` but the metric and the time of computation."""
    with store.transaction() as con, staged(con, {"_computed": computed}):
        con.execute(
            "INSERT INTO drift_pairs SELECT child_audit, parent_audit, $scorer, $attribute, threshold, n_paired,"
            " both_toxic, child_only, parent_only, neither, rate_child, rate_parent, delta, p_value, boot_low,"
            " boot_high, bayes_mean, bayes_low, bayes_high, now() FROM _computed ON CONFLICT DO NOTHING",
            {"scorer": metric.scorer, "attribute": metric.attribute},
        )


def drift_records(
    store: Store, *, threshold: float, alpha: float, min_effect: float, metric: Metric
) -> list[dict[str, Any]]:
    """Every comparison of `metric` from `drift_at(threshold, alpha, min_effect)`, with the child's
    root and its comparison against the root (joined on the same way and scorer checkpoint)."""
    return store.query_dicts(
        """
        SELECT d.*, m.root, r.rate_parent AS rate_root, r.delta AS delta_root
        FROM drift_at($threshold, $alpha, $min_effect) d
        LEFT JOIN models m ON m.repo_id = d.child
        LEFT JOIN latest_scorings ra ON ra.repo_id = m.root AND m.root <> d.parent AND ra.way = d.way
             AND ra.scorer = d.scorer AND ra.scorer_hash = d.scorer_hash
        LEFT JOIN drift_pairs r ON r.child_audit = d.child_audit AND r.parent_audit = ra.audit_id
             AND r.threshold = d.threshold AND r.scorer = d.scorer AND r.attribute = d.attribute
        WHERE d.scorer = $scorer AND d.attribute = $attribute
        """,
        {
            "threshold": threshold,
            "alpha": alpha,
            "min_effect": min_effect,
            "scorer": metric.scorer,
            "attribute": metric.attribute,
        },
    )


def drift_arrows(
    store: Store, *, threshold: float, alpha: float, min_effect: float, metric: Metric, way: str | None
) -> list[dict[str, Any]]:
    """(child, parent, delta, drifted) of every `drift_at` comparison of `metric` audited `way`."""
    return store.query_dicts(
        "SELECT child, parent, delta, drifted FROM drift_at(?, ?, ?) WHERE scorer = ? AND attribute = ? AND way = ?",
        [threshold, alpha, min_effect, metric.scorer, metric.attribute, way],
    )


def not_compared(store: Store, *, scorer: str) -> list[NotCompared]:
    """Derivatives scored by `scorer` that have no comparable scored audit of a parent, and why."""
    rows = store.query(
        """
        WITH audited AS (SELECT DISTINCT repo_id, way, scorer_hash FROM audit_scorings WHERE scorer = $scorer)
        SELECT c.repo_id, l.parent,
               CASE WHEN NOT EXISTS (SELECT 1 FROM audits p WHERE p.repo_id = l.parent AND p.status = 'done')
                    THEN 'the parent has no done audit'
                    WHEN NOT EXISTS (SELECT 1 FROM audit_scorings p WHERE p.repo_id = l.parent AND p.scorer = $scorer)
                    THEN 'the parent was not scored by ' || $scorer
                    ELSE 'the parent was audited only with other settings (battery, preset, quantization, device'
                         ' or scorer checkpoint)' END
        FROM audited c JOIN lineage l ON l.child = c.repo_id
        WHERE l.child <> l.parent AND NOT EXISTS (
            SELECT 1 FROM audited p WHERE p.repo_id = l.parent AND p.way = c.way AND p.scorer_hash = c.scorer_hash)
        ORDER BY 1, 2
        """,
        {"scorer": scorer},
    )
    return [NotCompared(child, parent, reason) for child, parent, reason in rows]
