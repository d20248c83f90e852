"""The nightly cycle's tables: `cycles` (one row a night, with its budget and summary) and
`cycle_plan` (what it chose to audit, in order, with the reasons and the outcome), and the model
facts a plan is ranked on. `schedules` decides; this module only reads and writes the rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa

from auditor.store.database import Store, staged


class PlanEntry(Protocol):
    """What `cycle_plan` stores of a planned model (`schedules.cycle.PlanItem` is one)."""

    @property
    def repo_id(self) -> str: ...
    @property
    def sha(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def chosen(self) -> bool: ...


@dataclass(frozen=True)
class PlanFacts:
    """What the plan ranks a current model on."""

    is_parent: bool  # a root, or a model with children
    repushed: bool  # audited (done) at another sha than its current one
    relation: str | None
    depth: int | None
    downloads: int
    created_at: datetime | None


@dataclass(frozen=True)
class PlannedModel:
    """A model of a stored plan that has no audit yet."""

    repo_id: str
    sha: str
    reason: str
    chosen: bool


def plan_facts(store: Store) -> dict[str, PlanFacts]:
    """The ranking facts of every model not removed from the Hub, by repo id."""
    rows = store.query(
        "SELECT m.repo_id, m.is_root OR (m.children_count IS NOT NULL AND m.children_count <> '{}'),"
        " EXISTS (SELECT 1 FROM audits a WHERE a.repo_id = m.repo_id AND a.sha <> m.sha AND a.status = 'done'),"
        " m.relation, m.depth, coalesce(m.downloads, 0), m.created_at FROM models m WHERE m.removed_at IS NULL"
    )
    return {r[0]: PlanFacts(bool(r[1]), bool(r[2]), r[3], r[4], r[5], r[6]) for r in rows}


def start_cycle(store: Store, *, took_over: bool, budget: dict[str, Any]) -> int:
    """Mark a cycle left `running` by a process that died as failed (`interrupted`), add a running
    cycle with `budget`, and return its id."""
    with store.transaction() as con:
        con.execute(
            "UPDATE cycles SET status = 'failed', finished_at = now(), error = 'interrupted' WHERE status = 'running'"
        )
        row = con.execute("SELECT coalesce(max(cycle_id), 0) + 1 FROM cycles").fetchone()
        cycle_id = int(row[0]) if row else 1
        con.execute(
            "INSERT INTO cycles (cycle_id, status, started_at, took_over, budget) VALUES (?, 'running', now(), ?, ?)",
            [cycle_id, took_over, json.dumps(budget)],
        )
    return cycle_id


def save_plan(store: Store, cycle_id: int, plan: Sequence[PlanEntry]) -> None:
    """Store a cycle's plan, in order; no entry has an audit yet."""
    table = pa.table(
        {
            "position": pa.array(range(len(plan)), pa.int32()),
            "repo_id": [p.repo_id for p in plan],
            "sha": [p.sha for p in plan],
            "reason": [p.reason for p in plan],
            "chosen": [p.chosen for p in plan],
        }
    )
    with store.transaction() as con, staged(con, {"_plan": table}):
        con.execute(
            "INSERT INTO cycle_plan SELECT ?, position, repo_id, sha, reason, chosen, NULL, NULL FROM _plan", [cycle_id]
        )


def record_planned_audit(store: Store, cycle_id: int, position: int, *, audit_id: int | None, status: str) -> None:
    """Note the audit (and how it ended) of the plan's entry at `position`."""
    with store.transaction() as con:
        con.execute(
            "UPDATE cycle_plan SET audit_id = ?, status = ? WHERE cycle_id = ? AND position = ?",
            [audit_id, status, cycle_id, position],
        )


def finish_cycle(
    store: Store,
    cycle_id: int,
    status: str,
    *,
    error: str | None,
    crawl_id: int | None,
    planned: int | None,
    audited: int | None,
    failed: int | None,
    waiting: int | None,
    summary: dict[str, Any] | None,
) -> None:
    """Close a cycle's row with how it ended."""
    with store.transaction() as con:
        con.execute(
            "UPDATE cycles SET status = ?, finished_at = now(), error = ?, crawl_id = ?, planned = ?, audited = ?,"
            " failed = ?, waiting = ?, summary = ? WHERE cycle_id = ?",
            [status, error, crawl_id, planned, audited, failed, waiting, json.dumps(summary, default=str), cycle_id],
        )


def last_cycle(store: Store) -> dict[str, Any] | None:
    """The newest `cycles` row, every column."""
    rows = store.query_dicts("SELECT * FROM cycles ORDER BY cycle_id DESC LIMIT 1")
    return rows[0] if rows else None


def interrupted_audits(store: Store, *, started_before: datetime | None) -> list[dict[str, Any]]:
    """Audits left `running` (started before `started_before`, when given), with how many
    completions they stored."""
    return store.query_dicts(
        "SELECT audit_id, repo_id, sha, started_at,"
        " (SELECT count(*) FROM completions c WHERE c.audit_id = a.audit_id) AS n_completions"
        " FROM audits a WHERE status = 'running' AND ($since IS NULL OR started_at < $since)"
        " ORDER BY audit_id",
        {"since": started_before},
    )


def newest_plan(store: Store) -> int | None:
    """The id of the newest cycle that stored a plan."""
    value: int | None = store.query("SELECT max(cycle_id) FROM cycle_plan")[0][0]
    return value


def unaudited_plan(store: Store, cycle_id: int) -> list[PlannedModel]:
    """The entries of `cycle_id`'s plan with no audit yet, in plan order."""
    rows = store.query(
        "SELECT repo_id, sha, reason, chosen FROM cycle_plan WHERE cycle_id = ? AND audit_id IS NULL ORDER BY position",
        [cycle_id],
    )
    return [PlannedModel(repo_id, sha, reason, bool(chosen)) for repo_id, sha, reason, chosen in rows]
