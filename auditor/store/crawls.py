"""The crawl's tables: runs, model snapshots, declared edges, defects and change logs.

Writes are batched: the crawler hands over a few thousand snapshots at a time, they are staged as
one Arrow table and merged with set-based SQL in a single transaction, together with the listings
they came from. A crawl killed between two batches therefore loses only the unwritten batch, and
the listings it would have marked done are simply listed again on resume.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa

from auditor import __version__
from auditor.lineage import LineageDefect, LineageGraph, ModelSnapshot, TreePlacement
from auditor.store.database import Store, staged

_SNAPSHOT_SCHEMA = pa.schema(
    [
        ("repo_id", pa.string()),
        ("sha", pa.string()),
        ("author", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("last_modified", pa.timestamp("us", tz="UTC")),
        ("downloads", pa.int64()),
        ("likes", pa.int64()),
        ("gated", pa.string()),
        ("private", pa.bool_()),
        ("library_name", pa.string()),
        ("pipeline_tag", pa.string()),
        ("license", pa.string()),
        ("num_parameters", pa.int64()),
        ("tags", pa.list_(pa.string())),
        ("children_count", pa.string()),
        ("relation", pa.string()),
        ("raw", pa.string()),
        ("parents_sig", pa.string()),
    ]
)


@dataclass(frozen=True)
class CrawlRun:
    crawl_id: int
    mode: str
    status: str
    started_at: datetime
    roots: tuple[str, ...]
    feed_watermark: datetime | None
    feed_since: datetime | None
    requests: int
    endpoint: str
    #: `walk` or `scan` for a full crawl; None for an incremental one.
    strategy: str | None
    #: Why: the strategy's choice and its estimates, as `crawlers.plan.StrategyChoice.as_json()`.
    strategy_plan: dict[str, Any] | None
    finished_at: datetime | None


_RUN_COLUMNS = (
    "crawl_id, mode, status, started_at, roots, feed_watermark, feed_since, requests, endpoint, strategy,"
    " strategy_plan, finished_at"
)


@dataclass(frozen=True)
class KnownModel:
    """What the store knows of a model in the tree, for change detection."""

    parents: tuple[tuple[str, str], ...]  # (parent, relation), in declaration order


@dataclass(frozen=True)
class Listing:
    """The children of `repo_id`, of every relation, were listed completely."""

    repo_id: str
    listed_at: datetime
    n_children: int


@dataclass(frozen=True)
class Removal:
    """A model that left the Hub, as its detail route said: `deleted` (not found) or `renamed`."""

    repo_id: str
    reason: str
    #: For the change log: what the Hub answered (`renamed to <id>`, `not found (HTTP 401)`).
    detail: str


def parents_signature(parents: Iterable[tuple[str, str]]) -> str:
    """A canonical string for a set of declared parents, to compare declarations cheaply."""
    return "\n".join(sorted(f"{parent}\t{relation}" for parent, relation in parents))


class LineageStore:
    """The lineage tables of one `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- runs -----------------------------------------------------------------------------------

    def start_run(
        self,
        *,
        mode: str,
        endpoint: str,
        roots: Sequence[str],
        config: dict[str, Any],
        feed_watermark: datetime | None,
        feed_since: datetime | None,
        strategy: str | None = None,
        strategy_plan: dict[str, Any] | None = None,
    ) -> CrawlRun:
        with self.store.transaction() as con:
            row = con.execute("SELECT coalesce(max(crawl_id), 0) + 1 FROM crawl_runs").fetchone()
            crawl_id = int(row[0]) if row else 1
            con.execute(
                "INSERT INTO crawl_runs (crawl_id, mode, status, started_at, endpoint, roots, feed_watermark,"
                " feed_since, config, auditor_version, strategy, strategy_plan)"
                " VALUES (?, ?, 'running', now(), ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    crawl_id,
                    mode,
                    endpoint,
                    list(roots),
                    feed_watermark,
                    feed_since,
                    json.dumps(config),
                    __version__,
                    strategy,
                    json.dumps(strategy_plan) if strategy_plan is not None else None,
                ],
            )
        run = self.run(crawl_id)
        assert run is not None
        return run

    def run(self, crawl_id: int) -> CrawlRun | None:
        rows = self.store.query(
            f"SELECT {_RUN_COLUMNS} FROM crawl_runs WHERE crawl_id = ?",
            [crawl_id],
        )
        return _run_from_row(rows[0]) if rows else None

    def last_done_run(self) -> CrawlRun | None:
        rows = self.store.query(
            f"SELECT {_RUN_COLUMNS} FROM crawl_runs WHERE status = 'done' ORDER BY crawl_id DESC LIMIT 1"
        )
        return _run_from_row(rows[0]) if rows else None

    def last_done_full_run(self) -> CrawlRun | None:
        """The newest completed full crawl: the refresh is due when it is `crawl.refresh_days` old."""
        rows = self.store.query(
            f"SELECT {_RUN_COLUMNS} FROM crawl_runs WHERE status = 'done' AND mode = 'full'"
            " ORDER BY crawl_id DESC LIMIT 1"
        )
        return _run_from_row(rows[0]) if rows else None

    def latest_run(self) -> CrawlRun | None:
        rows = self.store.query(f"SELECT {_RUN_COLUMNS} FROM crawl_runs ORDER BY crawl_id DESC LIMIT 1")
        return _run_from_row(rows[0]) if rows else None

    def set_watermark(self, crawl_id: int, watermark: datetime) -> None:
        with self.store.transaction() as con:
            con.execute("UPDATE crawl_runs SET feed_watermark = ? WHERE crawl_id = ?", [watermark, crawl_id])

    def unlisted_in_run(self, crawl_id: int, roots: Sequence[str]) -> list[str]:
        """The models a walk met (the roots, and the children of the models it listed) whose children it
        has not listed yet: a resumed walk owes each a listing. Models met otherwise (asked for on their
        detail route because no listing showed them) owe none."""
        rows = self.store.query(
            """
            SELECT m.repo_id FROM models m
            WHERE m.last_seen_crawl = $crawl
              AND m.repo_id NOT IN (SELECT repo_id FROM crawl_listings WHERE crawl_id = $crawl)
              AND (list_contains($roots, m.repo_id) OR EXISTS (
                  SELECT 1 FROM lineage l JOIN crawl_listings c ON c.repo_id = l.parent AND c.crawl_id = $crawl
                  WHERE l.child = m.repo_id))
            ORDER BY m.repo_id
            """,
            {"crawl": crawl_id, "roots": list(roots)},
        )
        return [r[0] for r in rows]

    def brought_in(self, crawls: Sequence[int], *, created_before: datetime | None = None) -> list[str]:
        """The models these runs brought into the tree (and that are still in it), created before
        `created_before`: an incremental crawl that walks owes each of them a listing."""
        rows = self.store.query(
            "SELECT repo_id FROM models WHERE removed_at IS NULL AND repo_id IN (SELECT repo_id FROM model_changes"
            " WHERE list_contains($crawls, crawl_id) AND change IN ('new', 'restored'))"
            " AND ($before IS NULL OR created_at IS NULL OR created_at < $before) ORDER BY repo_id",
            {"crawls": list(crawls), "before": created_before},
        )
        return [r[0] for r in rows]

    def vanished(self, crawl_id: int) -> list[str]:
        """Models of the tree this run has not seen (yet): a full run asks the Hub about each."""
        rows = self.store.query(
            "SELECT repo_id FROM models WHERE removed_at IS NULL AND last_seen_crawl < ? ORDER BY repo_id",
            [crawl_id],
        )
        return [r[0] for r in rows]

    def tree_size(self) -> int:
        """Models in the tree now (0 before the first crawl)."""
        rows = self.store.query("SELECT count(*) FROM models WHERE removed_at IS NULL")
        return int(rows[0][0]) if rows else 0

    def mark_resumed(self, crawl_id: int) -> None:
        with self.store.transaction() as con:
            con.execute("UPDATE crawl_runs SET resumed = resumed + 1 WHERE crawl_id = ?", [crawl_id])

    def fail_run(self, crawl_id: int, error: str, requests: int) -> None:
        """Record why a run stopped; it stays resumable (status 'running' is for killed runs only)."""
        with self.store.transaction() as con:
            con.execute(
                "UPDATE crawl_runs SET status = 'failed', finished_at = now(), error = ?,"
                " requests = requests + ? WHERE crawl_id = ?",
                [error, requests, crawl_id],
            )

    def abandon_unfinished(self, keep: int | None = None) -> None:
        """Close runs left 'running' by a killed process, except `keep` (the one being resumed)."""
        with self.store.transaction() as con:
            con.execute(
                "UPDATE crawl_runs SET status = 'failed', finished_at = now(),"
                " error = 'interrupted; superseded by a later crawl'"
                " WHERE status = 'running' AND crawl_id IS DISTINCT FROM ?",
                [keep],
            )

    # -- reads for the crawler ------------------------------------------------------------------

    def current_models(self, *, before_crawls: Sequence[int] = ()) -> dict[str, KnownModel]:
        """Every model currently in the tree with its declared parents.

        With `before_crawls`, the tree as it stood before those (unfinished) crawls: the models they
        added or restored are left out, so that the crawl that takes over still treats them as new.
        """
        exclude = (
            " AND repo_id NOT IN (SELECT repo_id FROM model_changes WHERE list_contains($crawls, crawl_id)"
            " AND change IN ('new', 'restored'))"
            if before_crawls
            else ""
        )
        params = {"crawls": list(before_crawls)} if before_crawls else {}
        with self.store.session() as con:
            parents: dict[str, list[tuple[str, str]]] = {}
            for child, parent, relation in con.execute(
                "SELECT l.child, l.parent, l.relation FROM lineage l JOIN models m ON m.repo_id = l.child"
                " WHERE m.removed_at IS NULL ORDER BY l.child, l.position"
            ).fetchall():
                parents.setdefault(child, []).append((parent, relation))
            return {
                repo_id: KnownModel(parents=tuple(parents.get(repo_id, ())))
                for (repo_id,) in con.execute(
                    "SELECT repo_id FROM models WHERE removed_at IS NULL" + exclude, params
                ).fetchall()
            }

    def listed_in_run(self, crawl_id: int) -> set[str]:
        return {r[0] for r in self.store.query("SELECT repo_id FROM crawl_listings WHERE crawl_id = ?", [crawl_id])}

    def seen_in_run(self, crawl_id: int) -> set[str]:
        return {r[0] for r in self.store.query("SELECT repo_id FROM models WHERE last_seen_crawl = ?", [crawl_id])}

    def unfinished_runs_since_last_done(self) -> list[int]:
        """Runs that never completed after the last completed one (killed, failed or abandoned)."""
        rows = self.store.query(
            "SELECT crawl_id FROM crawl_runs WHERE status <> 'done'"
            " AND crawl_id > coalesce((SELECT max(crawl_id) FROM crawl_runs WHERE status = 'done'), 0)"
            " ORDER BY crawl_id"
        )
        return [int(r[0]) for r in rows]

    # -- batched writes -------------------------------------------------------------------------

    def write_batch(
        self,
        crawl_id: int,
        snapshots: Sequence[ModelSnapshot],
        listings: Sequence[Listing] = (),
        *,
        removals: Sequence[Removal] = (),
        requests: int = 0,
    ) -> None:
        """Merge one batch of snapshots, the listings they came from and confirmed removals."""
        latest: dict[str, ModelSnapshot] = {s.repo_id: s for s in snapshots}
        snaps = list(latest.values())
        snap_table = _snapshot_table(snaps)
        edge_table = pa.table(
            {
                "child": [e.child for s in snaps for e in s.parents],
                "parent": [e.parent for s in snaps for e in s.parents],
                "relation": [e.relation for s in snaps for e in s.parents],
                "source": [e.source for s in snaps for e in s.parents],
                "position": pa.array([e.position for s in snaps for e in s.parents], pa.int32()),
            }
        )
        defect_table = _defect_table([d for s in snaps for d in s.defects])
        listing_table = pa.table(
            {
                "repo_id": pa.array([item.repo_id for item in listings], pa.string()),
                "listed_at": pa.array([item.listed_at for item in listings], pa.timestamp("us", tz="UTC")),
                "n_children": pa.array([item.n_children for item in listings], pa.int32()),
            }
        )
        tables = {"_snap": snap_table, "_edges": edge_table, "_defects": defect_table, "_listings": listing_table}
        with self.store.transaction() as con, staged(con, tables):
            self._merge_snapshots(con, crawl_id)
            for removal in removals:
                self._remove(con, crawl_id, [removal.repo_id], removal.reason, detail=removal.detail)
            con.execute(
                "INSERT INTO crawl_listings SELECT repo_id, ?, listed_at, n_children FROM _listings"
                " ON CONFLICT DO UPDATE SET crawl_id = excluded.crawl_id, listed_at = excluded.listed_at,"
                " n_children = excluded.n_children",
                [crawl_id],
            )
            con.execute("UPDATE crawl_runs SET requests = requests + ? WHERE crawl_id = ?", [requests, crawl_id])

    def _merge_snapshots(self, con: duckdb.DuckDBPyConnection, crawl_id: int) -> None:
        # Change log first, while the old state is still there to compare with.
        con.execute(
            """
            INSERT INTO model_changes
            SELECT ?, s.repo_id,
                   CASE WHEN m.repo_id IS NULL THEN 'new'
                        WHEN m.removed_at IS NOT NULL THEN 'restored'
                        ELSE 'changed' END,
                   m.sha, s.sha,
                   CASE WHEN m.repo_id IS NULL OR m.removed_at IS NOT NULL THEN NULL
                        WHEN m.sha IS DISTINCT FROM s.sha AND coalesce(o.sig, '') <> s.parents_sig
                             THEN 'new sha and parents'
                        WHEN m.sha IS DISTINCT FROM s.sha THEN 'new sha'
                        ELSE 'new parents' END
            FROM _snap s
            LEFT JOIN models m ON m.repo_id = s.repo_id
            LEFT JOIN (
                SELECT child, string_agg(parent || chr(9) || relation, chr(10) ORDER BY parent || chr(9) || relation)
                       AS sig
                FROM lineage WHERE child IN (SELECT repo_id FROM _snap) GROUP BY child
            ) o ON o.child = s.repo_id
            WHERE m.repo_id IS NULL OR m.removed_at IS NOT NULL
               OR m.sha IS DISTINCT FROM s.sha OR coalesce(o.sig, '') <> s.parents_sig
            """,
            [crawl_id],
        )
        con.execute(
            """
            INSERT INTO lineage_changes
            SELECT ?, e.child, e.parent, e.relation, 'added' FROM _edges e
            WHERE NOT EXISTS (SELECT 1 FROM lineage l JOIN models m ON m.repo_id = l.child
                              WHERE l.child = e.child AND l.parent = e.parent AND l.relation = e.relation
                                AND m.removed_at IS NULL)
            UNION ALL
            SELECT ?, l.child, l.parent, l.relation, 'removed' FROM lineage l
            JOIN models m ON m.repo_id = l.child AND m.removed_at IS NULL
            WHERE l.child IN (SELECT repo_id FROM _snap)
              AND NOT EXISTS (SELECT 1 FROM _edges e
                              WHERE e.child = l.child AND e.parent = l.parent AND e.relation = l.relation)
            """,
            [crawl_id, crawl_id],
        )
        con.execute(
            """
            INSERT INTO models (repo_id, sha, author, created_at, last_modified, downloads, likes, gated, private,
                                library_name, pipeline_tag, license, num_parameters, tags, children_count,
                                relation, raw, first_seen_crawl, last_seen_crawl, changed_crawl, stats_at)
            SELECT repo_id, sha, author, created_at, last_modified, downloads, likes, gated, private,
                   library_name, pipeline_tag, license, num_parameters, tags, children_count, relation, raw,
                   $crawl, $crawl, $crawl, now()
            FROM _snap
            ON CONFLICT DO UPDATE SET
                sha = excluded.sha, author = excluded.author, created_at = excluded.created_at,
                last_modified = excluded.last_modified, downloads = excluded.downloads, likes = excluded.likes,
                gated = excluded.gated, private = excluded.private, library_name = excluded.library_name,
                pipeline_tag = excluded.pipeline_tag, license = excluded.license,
                num_parameters = excluded.num_parameters, tags = excluded.tags,
                children_count = excluded.children_count, relation = excluded.relation, raw = excluded.raw,
                last_seen_crawl = excluded.last_seen_crawl, stats_at = excluded.stats_at,
                removed_at = NULL, removed_crawl = NULL, removed_reason = NULL
            """,
            {"crawl": crawl_id},
        )
        con.execute(
            "UPDATE models SET changed_crawl = $crawl WHERE repo_id IN (SELECT repo_id FROM _snap)"
            " AND repo_id IN (SELECT repo_id FROM model_changes WHERE crawl_id = $crawl)",
            {"crawl": crawl_id},
        )
        con.execute(
            "DELETE FROM lineage l WHERE l.child IN (SELECT repo_id FROM _snap)"
            " AND NOT EXISTS (SELECT 1 FROM _edges e WHERE e.child = l.child AND e.parent = l.parent)"
        )
        con.execute(
            "INSERT INTO lineage SELECT child, parent, relation, source, position, $crawl, $crawl FROM _edges"
            " ON CONFLICT DO UPDATE SET relation = excluded.relation, source = excluded.source,"
            " position = excluded.position, last_seen_crawl = excluded.last_seen_crawl",
            {"crawl": crawl_id},
        )
        con.execute(
            "DELETE FROM lineage_defects WHERE repo_id IN (SELECT repo_id FROM _snap)"
            " AND kind IN ('self_reference', 'multiple_parents', 'unknown_relation', 'invalid_parent_id')"
        )
        con.execute(
            "INSERT INTO lineage_defects SELECT DISTINCT repo_id, kind, detail, ? FROM _defects ON CONFLICT DO NOTHING",
            [crawl_id],
        )

    def _remove(
        self, con: duckdb.DuckDBPyConnection, crawl_id: int, repo_ids: list[str], reason: str, *, detail: str = ""
    ) -> None:
        with staged(con, {"_gone": pa.table({"repo_id": pa.array(repo_ids, pa.string())})}):
            con.execute(
                "INSERT INTO model_changes SELECT ?, m.repo_id, 'removed', m.sha, NULL, ? FROM models m"
                " WHERE m.repo_id IN (SELECT repo_id FROM _gone) AND m.removed_at IS NULL",
                [crawl_id, detail or reason],
            )
            con.execute(
                "INSERT INTO lineage_changes SELECT ?, l.child, l.parent, l.relation, 'removed' FROM lineage l"
                " JOIN models m ON m.repo_id = l.child"
                " WHERE l.child IN (SELECT repo_id FROM _gone) AND m.removed_at IS NULL",
                [crawl_id],
            )
            con.execute(
                "UPDATE models SET removed_at = now(), removed_crawl = ?, removed_reason = ?"
                " WHERE repo_id IN (SELECT repo_id FROM _gone) AND removed_at IS NULL",
                [crawl_id, reason],
            )

    # -- the end of a run -----------------------------------------------------------------------

    def finish_run(
        self, crawl_id: int, *, roots: Sequence[str], requests: int, extra_summary: dict[str, Any]
    ) -> dict[str, Any]:
        """Close a run: tree placement (models no root reaches leave the tree), children counts,
        whole-graph defects, counts. Returns the summary. Models the Hub no longer has were removed
        by the batches (`Removal`), each confirmed by its detail route."""
        with self.store.transaction() as con:
            members = {r[0] for r in con.execute("SELECT repo_id FROM models WHERE removed_at IS NULL").fetchall()}
            edges = con.execute(
                "SELECT l.child, l.parent, l.relation FROM lineage l JOIN models m ON m.repo_id = l.child"
                " WHERE m.removed_at IS NULL"
            ).fetchall()
            graph = LineageGraph.from_edges(edges)
            placement = graph.place(roots, members=members)
            left = sorted(members - placement.keys())
            if left:
                self._remove(con, crawl_id, left, "left_tree")
            self._write_placement(con, placement, set(roots), _children_counts(edges, set(placement)))
            self._write_closure(con, graph, set(placement))

            in_tree = set(placement)
            defects: list[LineageDefect] = [
                LineageDefect(child, "parent_outside_tree", parent)
                for child, parent, _ in edges
                if child in in_tree and parent not in in_tree and parent != child
            ]
            for component in graph.cycles():
                members_in_tree = [m for m in component if m in in_tree]
                detail = " -> ".join(component[:8]) + (" ..." if len(component) > 8 else "")
                defects.extend(LineageDefect(m, "cycle", detail) for m in members_in_tree)
            con.execute("DELETE FROM lineage_defects WHERE kind IN ('parent_outside_tree', 'cycle')")
            with staged(con, {"_defects": _defect_table(defects)}):
                con.execute(
                    "INSERT INTO lineage_defects SELECT DISTINCT repo_id, kind, detail, ? FROM _defects"
                    " ON CONFLICT DO NOTHING",
                    [crawl_id],
                )

            summary = self._summarise(con, crawl_id)
            summary.update(extra_summary)
            totals = summary["totals"]
            con.execute(
                "UPDATE crawl_runs SET status = 'done', finished_at = now(), requests = requests + ?,"
                " models_seen = ?, models_new = ?, models_changed = ?, models_removed = ?, edges_new = ?,"
                " edges_removed = ?, defects = ?, failed_listings = ?, summary = ?, error = NULL"
                " WHERE crawl_id = ?",
                [
                    requests,
                    totals["models_seen"],
                    totals["models_new"],
                    totals["models_changed"],
                    totals["models_removed"],
                    totals["edges_new"],
                    totals["edges_removed"],
                    totals["defects"],
                    extra_summary.get("failed_listings", 0),
                    json.dumps(summary, default=str),
                    crawl_id,
                ],
            )
            row = con.execute("SELECT requests FROM crawl_runs WHERE crawl_id = ?", [crawl_id]).fetchone()
            summary["requests"] = int(row[0]) if row else requests
        return summary

    def _write_closure(self, con: duckdb.DuckDBPyConnection, graph: LineageGraph, members: set[str]) -> None:
        """Recompute `lineage_closure` for the current tree (cheap: about depth rows per model)."""
        pairs = graph.closure(members)
        table = pa.table(
            {
                "ancestor": pa.array([a for a, _, _ in pairs], pa.string()),
                "descendant": pa.array([d for _, d, _ in pairs], pa.string()),
                "distance": pa.array([n for _, _, n in pairs], pa.int32()),
            }
        )
        with staged(con, {"_closure": table}):
            con.execute("DELETE FROM lineage_closure_table")
            con.execute("INSERT INTO lineage_closure_table SELECT * FROM _closure")

    def _write_placement(
        self,
        con: duckdb.DuckDBPyConnection,
        placement: dict[str, TreePlacement],
        roots: set[str],
        children: dict[str, str],
    ) -> None:
        table = pa.table(
            {
                "repo_id": pa.array(list(placement), pa.string()),
                "family": pa.array([p.family for p in placement.values()], pa.string()),
                "root": pa.array([p.root for p in placement.values()], pa.string()),
                "depth": pa.array([p.depth for p in placement.values()], pa.int32()),
                "is_root": pa.array([r in roots for r in placement], pa.bool_()),
                "children_count": pa.array([children.get(r, "{}") for r in placement], pa.string()),
            }
        )
        with staged(con, {"_placement": table}):
            con.execute(
                "UPDATE models SET family = p.family, root = p.root, depth = p.depth, is_root = p.is_root,"
                " children_count = p.children_count"
                " FROM _placement p WHERE models.repo_id = p.repo_id"
                " AND (models.family IS DISTINCT FROM p.family OR models.root IS DISTINCT FROM p.root"
                "      OR models.depth IS DISTINCT FROM p.depth OR models.is_root IS DISTINCT FROM p.is_root"
                "      OR models.children_count::VARCHAR IS DISTINCT FROM p.children_count)"
            )

    def _summarise(self, con: duckdb.DuckDBPyConnection, crawl_id: int) -> dict[str, Any]:
        model_rows = con.execute(
            """
            SELECT coalesce(m.family, '?') AS family, coalesce(m.relation, 'root') AS relation,
                   count(*) FILTER (WHERE c.change IN ('new', 'restored')) AS new,
                   count(*) FILTER (WHERE c.change = 'changed') AS changed,
                   count(*) FILTER (WHERE c.change = 'removed') AS removed
            FROM model_changes c JOIN models m USING (repo_id)
            WHERE c.crawl_id = ? GROUP BY ALL ORDER BY ALL
            """,
            [crawl_id],
        ).fetchall()
        edge_rows = con.execute(
            """
            SELECT coalesce(m.family, '?') AS family, c.relation,
                   count(*) FILTER (WHERE c.change = 'added') AS added,
                   count(*) FILTER (WHERE c.change = 'removed') AS removed
            FROM lineage_changes c JOIN models m ON m.repo_id = c.child
            WHERE c.crawl_id = ? GROUP BY ALL ORDER BY ALL
            """,
            [crawl_id],
        ).fetchall()
        defect_rows = con.execute("SELECT kind, count(*) FROM lineage_defects GROUP BY kind ORDER BY kind").fetchall()
        seen = con.execute("SELECT count(*) FROM models WHERE last_seen_crawl = ?", [crawl_id]).fetchone()
        tree = con.execute(
            "SELECT coalesce(family, '?'), count(*) FROM models WHERE removed_at IS NULL GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        edges_total = con.execute(
            "SELECT count(*) FROM lineage l JOIN models m ON m.repo_id = l.child WHERE m.removed_at IS NULL"
        ).fetchone()
        models = [{"family": f, "relation": r, "new": n, "changed": c, "removed": x} for f, r, n, c, x in model_rows]
        edges = [{"family": f, "relation": r, "added": a, "removed": x} for f, r, a, x in edge_rows]
        return {
            "crawl_id": crawl_id,
            "models": models,
            "edges": edges,
            "defects": {kind: n for kind, n in defect_rows},
            "tree": {family: n for family, n in tree},
            "totals": {
                "models_seen": int(seen[0]) if seen else 0,
                "models_in_tree": sum(n for _, n in tree),
                "edges_in_tree": int(edges_total[0]) if edges_total else 0,
                "models_new": sum(m["new"] for m in models),
                "models_changed": sum(m["changed"] for m in models),
                "models_removed": sum(m["removed"] for m in models),
                "edges_new": sum(e["added"] for e in edges),
                "edges_removed": sum(e["removed"] for e in edges),
                "defects": sum(n for _, n in defect_rows),
            },
        }


#: What the `models` table says of a model: its snapshot and its place in the tree. Which crawl saw
#: it when (`*_crawl`, `stats_at`, `removed_at`) is left out, so two stores of one Hub compare equal.
DIGEST_MODEL_COLUMNS: tuple[str, ...] = (
    "repo_id",
    "sha",
    "author",
    "created_at",
    "last_modified",
    "downloads",
    "likes",
    "gated",
    "private",
    "library_name",
    "pipeline_tag",
    "license",
    "num_parameters",
    "tags",
    "children_count",
    "relation",
    "family",
    "root",
    "depth",
    "is_root",
    "raw",
    "removed_reason",
)
DIGEST_LINEAGE_COLUMNS: tuple[str, ...] = ("child", "parent", "relation", "source", "position")


def tree_digest(store: Store) -> str:
    """A hash of the `models` and `lineage` tables' content (`DIGEST_*_COLUMNS`), to compare stores.

    Two crawls of the same Hub, by walk or by scan, interrupted or not, must give the same digest.

    >>> with Store.open("auditor.duckdb", read_only=True) as store:   # doctest: +SKIP
    ...     print(tree_digest(store))
    """
    digest = hashlib.sha256()
    for table, columns, key in (
        ("models", DIGEST_MODEL_COLUMNS, "repo_id"),
        ("lineage", DIGEST_LINEAGE_COLUMNS, "child, parent"),
    ):
        digest.update(table.encode() + b"\0")
        for row in store.query(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}"):
            digest.update(repr(row).encode() + b"\n")
    return digest.hexdigest()[:16]


def _run_from_row(row: tuple[Any, ...]) -> CrawlRun:
    return CrawlRun(
        crawl_id=row[0],
        mode=row[1],
        status=row[2],
        started_at=row[3],
        roots=tuple(row[4]),
        feed_watermark=row[5],
        feed_since=row[6],
        requests=int(row[7]),
        endpoint=row[8],
        strategy=row[9],
        strategy_plan=json.loads(row[10]) if row[10] else None,
        finished_at=row[11],
    )


def _children_counts(edges: Iterable[tuple[str, str, str]], members: set[str]) -> dict[str, str]:
    """Direct children in the tree per relation, as JSON, for every model with children.

    Counted from the stored edges rather than taken from the Hub: the listing route cannot give
    `childrenModelCount` (huggingface_hub PR #3182), and both crawl strategies must store the same.
    """
    counts: dict[str, dict[str, int]] = {}
    for child, parent, relation in edges:
        if child in members and parent in members and child != parent:
            per = counts.setdefault(parent, {})
            per[relation] = per.get(relation, 0) + 1
    return {parent: json.dumps(per, sort_keys=True) for parent, per in counts.items()}


def _snapshot_table(snaps: Sequence[ModelSnapshot]) -> pa.Table:
    return pa.table(
        {
            "repo_id": [s.repo_id for s in snaps],
            "sha": [s.sha for s in snaps],
            "author": [s.author for s in snaps],
            "created_at": [_utc(s.created_at) for s in snaps],
            "last_modified": [_utc(s.last_modified) for s in snaps],
            "downloads": [s.downloads for s in snaps],
            "likes": [s.likes for s in snaps],
            "gated": [s.gated for s in snaps],
            "private": [s.private for s in snaps],
            "library_name": [s.library_name for s in snaps],
            "pipeline_tag": [s.pipeline_tag for s in snaps],
            "license": [s.license for s in snaps],
            "num_parameters": [s.num_parameters for s in snaps],
            "tags": [list(s.tags) for s in snaps],
            "children_count": [
                json.dumps(dict(s.children_count), sort_keys=True) if s.children_count is not None else None
                for s in snaps
            ],
            "relation": [s.relation for s in snaps],
            "raw": [s.raw_json for s in snaps],
            "parents_sig": [parents_signature((e.parent, e.relation) for e in s.parents) for s in snaps],
        },
        schema=_SNAPSHOT_SCHEMA,
    )


def _defect_table(defects: Sequence[LineageDefect]) -> pa.Table:
    return pa.table(
        {
            "repo_id": pa.array([d.repo_id for d in defects], pa.string()),
            "kind": pa.array([d.kind for d in defects], pa.string()),
            "detail": pa.array([d.detail for d in defects], pa.string()),
        }
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
