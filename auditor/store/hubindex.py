"""The Hub-wide lineage index and the state of a scan: crawler bookkeeping, not a public table.

A scan pages through the whole Hub listing. Each page is written in one transaction together with
the URL of the next page, so a scan killed at any moment resumes at the page it had not stored.
Only models whose tags name a base model are kept (about a quarter of the Hub): the tree is then
computed here, in SQL, from the roots. The change feed keeps the index current between scans, so
a model that joins the tree later brings its whole subtree from here without a request.

The index says nothing about deletions (the Hub announces none): what it holds is what the last
scan and the feed since then saw. The next full crawl confirms every absence with the Hub.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa

from auditor.lineage import ModelSnapshot
from auditor.store.database import Store, staged


@dataclass(frozen=True)
class IndexEntry:
    """One model of the Hub that names a base model, as a listing described it."""

    repo_id: str
    #: The ids P of its `base_model:P` tags: the parents `filter=base_model:P` lists it under.
    parents: tuple[str, ...]
    created_at: datetime | None
    raw: str

    @classmethod
    def of(cls, snapshot: ModelSnapshot) -> IndexEntry:
        return cls(snapshot.repo_id, snapshot.listed_under, snapshot.created_at, snapshot.raw_json)


@dataclass(frozen=True)
class ScanState:
    crawl_id: int
    #: The next page to read; None once the last page is stored.
    next_url: str | None
    pages: int
    listed: int
    indexed: int
    done: bool


class HubIndex:
    """The `crawl_hub_index` and `crawl_scans` tables of one `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- scans ----------------------------------------------------------------------------------

    def scan_state(self, crawl_id: int) -> ScanState | None:
        rows = self.store.query(
            "SELECT crawl_id, next_url, pages, listed, indexed, done FROM crawl_scans WHERE crawl_id = ?", [crawl_id]
        )
        if not rows:
            return None
        row = rows[0]
        return ScanState(row[0], row[1], int(row[2]), int(row[3]), int(row[4]), bool(row[5]))

    def save_page(self, crawl_id: int, entries: Sequence[IndexEntry], *, listed: int, next_url: str | None) -> None:
        """Store one page of a scan and where the next one is, in one transaction."""
        with self.store.transaction() as con, staged(con, {"_entries": _entry_table(entries)}):
            _upsert(con, crawl_id)
            con.execute(
                "INSERT INTO crawl_scans VALUES ($crawl, $next, 1, $listed, $indexed, $done)"
                " ON CONFLICT DO UPDATE SET next_url = excluded.next_url, pages = crawl_scans.pages + 1,"
                " listed = crawl_scans.listed + excluded.listed, indexed = crawl_scans.indexed + excluded.indexed,"
                " done = excluded.done",
                {
                    "crawl": crawl_id,
                    "next": next_url,
                    "listed": listed,
                    "indexed": len(entries),
                    "done": next_url is None,
                },
            )

    def learned_hub_models(self) -> int | None:
        """Models on the Hub, as the newest complete scan counted them."""
        rows = self.store.query(
            "SELECT s.listed FROM crawl_scans s JOIN crawl_runs r USING (crawl_id)"
            " WHERE s.done AND r.status = 'done' ORDER BY s.crawl_id DESC LIMIT 1"
        )
        return int(rows[0][0]) if rows else None

    def complete(self) -> bool:
        """Whether the index covers the Hub: the newest completed full crawl was a scan, and the feed
        kept the index current since (every incremental crawl reads it back to the previous one)."""
        rows = self.store.query(
            "SELECT strategy FROM crawl_runs WHERE status = 'done' AND mode = 'full' ORDER BY crawl_id DESC LIMIT 1"
        )
        return bool(rows) and rows[0][0] == "scan"

    def finish_scan(self, crawl_id: int) -> None:
        """Drop what this completed scan did not see: deleted models, and models that no longer name
        a base model."""
        with self.store.transaction() as con:
            con.execute("DELETE FROM crawl_hub_index WHERE crawl_id < ?", [crawl_id])

    def clear(self) -> None:
        """Forget the index: a full walk does not keep it current, so it would mislead later crawls."""
        with self.store.transaction() as con:
            con.execute("DELETE FROM crawl_hub_index")

    # -- the change feed ------------------------------------------------------------------------

    def update(self, crawl_id: int, entries: Sequence[IndexEntry], without_parents: Iterable[str]) -> None:
        """Keep the index current from the change feed: new and changed entries, and models whose
        tags no longer name a base model."""
        gone = pa.table({"repo_id": pa.array(sorted(set(without_parents)), pa.string())})
        with self.store.transaction() as con, staged(con, {"_entries": _entry_table(entries), "_gone": gone}):
            _upsert(con, crawl_id)
            con.execute("DELETE FROM crawl_hub_index WHERE repo_id IN (SELECT repo_id FROM _gone)")

    # -- the tree -------------------------------------------------------------------------------

    def descendants(self, seeds: Iterable[str], *, known: Iterable[str] = (), since_crawl: int = 0) -> list[str]:
        """Every model that a chain of `base_model` tags leads from one of `seeds` (seeds excepted).

        Models in `known` are neither returned nor walked through: their subtrees are known already.
        Only entries seen by crawl `since_crawl` or later count (a scan counts its own alone).
        Cycles terminate: each model is taken once.
        """
        seed_table = pa.table({"repo_id": pa.array(sorted(set(seeds)), pa.string())})
        known_table = pa.table({"repo_id": pa.array(sorted(set(known)), pa.string())})
        with self.store.session() as con, staged(con, {"_seeds": seed_table, "_known": known_table}):
            rows = con.execute(
                """
                WITH RECURSIVE edges AS (
                    SELECT repo_id AS child, unnest(parents) AS parent FROM crawl_hub_index
                    WHERE crawl_id >= $since AND repo_id NOT IN (SELECT repo_id FROM _known)
                ),
                reached(repo_id) AS (
                    SELECT repo_id FROM _seeds
                    UNION
                    SELECT e.child FROM edges e JOIN reached r ON e.parent = r.repo_id
                )
                SELECT repo_id FROM reached WHERE repo_id NOT IN (SELECT repo_id FROM _seeds) ORDER BY repo_id
                """,
                {"since": since_crawl},
            ).fetchall()
        return [r[0] for r in rows]

    def indexed_among(self, repo_ids: Iterable[str], *, since_crawl: int = 0) -> list[str]:
        """Those of `repo_ids` the index holds (seen by crawl `since_crawl` or later)."""
        table = pa.table({"repo_id": pa.array(sorted(set(repo_ids)), pa.string())})
        with self.store.session() as con, staged(con, {"_ids": table}):
            rows = con.execute(
                "SELECT repo_id FROM crawl_hub_index WHERE crawl_id >= ? AND repo_id IN (SELECT repo_id FROM _ids)"
                " ORDER BY repo_id",
                [since_crawl],
            ).fetchall()
        return [r[0] for r in rows]

    def raws(self, repo_ids: Sequence[str], *, batch: int = 5000) -> Iterator[list[tuple[str, str]]]:
        """(repo_id, the listing's JSON) of these models, in batches."""
        for start in range(0, len(repo_ids), batch):
            table = pa.table({"repo_id": pa.array(list(repo_ids[start : start + batch]), pa.string())})
            with self.store.session() as con, staged(con, {"_ids": table}):
                rows = con.execute(
                    "SELECT repo_id, raw FROM crawl_hub_index WHERE repo_id IN (SELECT repo_id FROM _ids)"
                    " ORDER BY repo_id"
                ).fetchall()
            yield [(r[0], r[1]) for r in rows]


def _entry_table(entries: Sequence[IndexEntry]) -> pa.Table:
    # One row per model (ON CONFLICT cannot update a row twice in one statement): the first seen wins.
    entries = list({e.repo_id: e for e in reversed(entries)}.values())
    return pa.table(
        {
            "repo_id": pa.array([e.repo_id for e in entries], pa.string()),
            "parents": pa.array([list(e.parents) for e in entries], pa.list_(pa.string())),
            "created_at": pa.array([e.created_at for e in entries], pa.timestamp("us", tz="UTC")),
            "raw": pa.array([e.raw for e in entries], pa.string()),
        }
    )


def _upsert(con: duckdb.DuckDBPyConnection, crawl_id: int) -> None:
    con.execute(
        "INSERT INTO crawl_hub_index SELECT repo_id, parents, created_at, raw, ? FROM _entries"
        " ON CONFLICT DO UPDATE SET parents = excluded.parents, created_at = excluded.created_at,"
        " raw = excluded.raw, crawl_id = excluded.crawl_id",
        [crawl_id],
    )
