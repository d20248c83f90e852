"""One nightly cycle: crawl, plan under a budget, audit, summarise.

Safe to call from cron: a lock beside the store keeps a second cycle out while one runs (a killed
cycle's lock is taken over, and the cycle says so). A model that fails is a row, never the end of
the cycle; the cycle itself fails (and the caller gets a non-zero exit) only when it cannot run.

Crash recovery comes from the parts: an interrupted crawl is resumed by the next crawl, and an
audit left `running` is pending again, so the next cycle resumes it, generating only what it lacks.
A cycle that died leaves its `cycles` row `running`; the next cycle marks it `failed`
(`interrupted`). A stop asked for (`should_stop`, polled after every listing and every stored
batch) ends the cycle early and cleanly: its row says `stopped`, and the work in hand is resumed
by the next cycle exactly as after a kill.

The plan, stored in `cycle_plan` with its reasons: roots and parents first (a drift needs the
parent's audit), then models re-pushed at a new sha, then new derivatives by downloads and recency;
quantized copies and adapters per `[cycle] include_quantized` / `include_adapters`. The first
`[cycle] max_models` are chosen; audits stop early when `max_hours` or `max_download_gb` is spent,
and the rest waits for the next night.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from auditor.audit import AuditOutcome, PendingWork, audit_model, pending_work
from auditor.config import ResolvedConfig
from auditor.errors import StopRequested
from auditor.store import Store
from crawlers import CrawlOptions, CrawlResult, crawl_lineage
from schedules.lock import CycleLock, cycle_lock_path


@dataclass(frozen=True)
class PlanItem:
    repo_id: str
    sha: str
    reason: str
    chosen: bool
    #: Audited with `[audit] escalate_battery`: a comparison's battery was too small to see drift.
    escalated: bool = False


@dataclass(frozen=True)
class CycleResult:
    cycle_id: int
    took_over: bool
    crawl: dict[str, Any]
    plan: list[PlanItem]
    outcomes: list[AuditOutcome]
    waiting: int
    stopped_by: str | None
    seconds: float
    #: `done`, or `stopped` when a stop was asked for before the plan was through.
    status: str = "done"


def run_cycle(
    resolved: ResolvedConfig,
    *,
    on_outcome: Callable[[AuditOutcome], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CycleResult:
    """Run one cycle under the lock; see the module's docstring.

    >>> result = run_cycle(load_config())          # doctest: +SKIP
    >>> len(result.outcomes), result.waiting
    (50, 312)
    """
    started = time.monotonic()
    with (
        CycleLock(cycle_lock_path(resolved.config.store.path)) as lock,
        Store.open_configured(resolved.config.store) as store,
    ):
        cycle_id = _start(store, lock.took_over, resolved)
        lock.note(cycle_id=cycle_id)
        crawl = None
        plan: list[PlanItem] = []
        outcomes: list[AuditOutcome] = []
        stage: str | None = None  # where a stop request ended the cycle
        error: str | None = None
        try:
            crawl = crawl_lineage(resolved, store, CrawlOptions(should_stop=should_stop))
            work = pending_work(resolved, store)
            plan = make_plan(store, resolved, work)
            _save_plan(store, cycle_id, plan)
            stopped_by = _audit(store, resolved, cycle_id, plan, work, started, outcomes, on_outcome, should_stop)
        except KeyboardInterrupt as err:  # StopRequested at a safe point, or a second Ctrl-C
            stage = "crawl" if crawl is None else "audits"
            stopped_by, error = "stop requested", f"stopped during the {stage}: {err}"
            if not isinstance(err, StopRequested):
                _record(store, cycle_id, "stopped", stopped_by, error, stage, crawl, plan, outcomes)
                raise
        except BaseException as err:
            _finish(store, cycle_id, "failed", error=f"{type(err).__name__}: {err}")
            raise
        status = "stopped" if stopped_by == "stop requested" else "done"
        _record(store, cycle_id, status, stopped_by, error, stage, crawl, plan, outcomes)
        return CycleResult(
            cycle_id,
            lock.took_over,
            crawl.summary if crawl else {},
            plan,
            outcomes,
            len(plan) - len(outcomes),
            stopped_by,
            time.monotonic() - started,
            status=status,
        )


def _record(
    store: Store,
    cycle_id: int,
    status: str,
    stopped_by: str | None,
    error: str | None,
    stage: str | None,
    crawl: CrawlResult | None,
    plan: list[PlanItem],
    outcomes: list[AuditOutcome],
) -> None:
    """The cycle's row as it ends, done or stopped (a cycle stopped in its crawl has no plan yet)."""
    summary: dict[str, Any] = {"stopped_by": stopped_by}
    if stage is not None:
        summary["stage"] = stage
    if crawl is not None:
        summary["crawl"] = crawl.summary.get("totals")
    _finish(
        store,
        cycle_id,
        status,
        error=error,
        crawl_id=crawl.crawl_id if crawl else None,
        planned=sum(1 for p in plan if p.chosen),
        audited=len(outcomes),
        failed=sum(1 for o in outcomes if o.status != "done"),
        waiting=len(plan) - len(outcomes) if crawl is not None else None,
        summary=summary,
    )


def make_plan(store: Store, resolved: ResolvedConfig, work: PendingWork | None = None) -> list[PlanItem]:
    """Every pending model, in the order the cycle audits them, the first `max_models` chosen."""
    work = work or pending_work(resolved, store)
    pending = work.models
    if not pending and not work.escalations:
        return []
    config = resolved.config
    info = {
        r[0]: r[1:]
        for r in store.query(
            "SELECT m.repo_id, m.is_root OR (m.children_count IS NOT NULL AND m.children_count <> '{}'),"
            " EXISTS (SELECT 1 FROM audits a WHERE a.repo_id = m.repo_id AND a.sha <> m.sha AND a.status = 'done'),"
            " m.relation, m.depth, coalesce(m.downloads, 0), m.created_at FROM models m WHERE m.removed_at IS NULL"
        )
    }
    cycle = config.cycle
    ranked = []
    for repo_id, sha in pending:
        parent, repushed, relation, depth, downloads, created = info.get(repo_id, (False, False, None, None, 0, None))
        if relation == "quantized" and not cycle.include_quantized:
            continue
        if relation == "adapter" and not cycle.include_adapters:
            continue
        if parent:
            rank, reason = (0, depth if depth is not None else 99, -downloads), "root or parent"
        elif repushed:
            rank, reason = (1, 0, -downloads), "re-pushed"
        else:
            rank, reason = (2, 0, -downloads), "new derivative"
        ranked.append((rank, -(created.timestamp() if created else 0), repo_id, sha, reason))
    ranked.sort()
    plan = [PlanItem(repo_id, sha, reason, False) for _, _, repo_id, sha, reason in ranked]
    # Then the larger battery for comparisons too small to see drift: new models come first.
    plan += [PlanItem(r, sha, "battery too small to see drift", False, True) for r, sha in work.escalations]
    return [dataclasses.replace(item, chosen=i < cycle.max_models) for i, item in enumerate(plan)]


def _audit(
    store: Store,
    resolved: ResolvedConfig,
    cycle_id: int,
    plan: list[PlanItem],
    work: PendingWork,
    started: float,
    outcomes: list[AuditOutcome],
    on_outcome: Callable[[AuditOutcome], None] | None,
    should_stop: Callable[[], bool] | None,
) -> str | None:
    """Audit the plan in order into `outcomes`; return what stopped it early, if anything."""
    cycle = resolved.config.cycle
    downloaded = 0
    for position, item in enumerate(plan):
        if not item.chosen:
            return "max_models"
        if time.monotonic() - started > cycle.max_hours * 3600:
            return "max_hours"
        if downloaded > cycle.max_download_gb * 1e9:
            return "max_download_gb"
        if should_stop is not None and should_stop():
            return "stop requested"
        outcome = audit_model(
            resolved,
            store,
            item.repo_id,
            revision=item.sha,
            battery=work.escalation_battery if item.escalated and work.escalation_battery else work.battery,
            scorers=work.scorers,
            preset_name=work.preset_name,
            quantization=work.quantization,
            should_stop=should_stop,
        )
        downloaded += outcome.download_bytes
        outcomes.append(outcome)
        with store.transaction() as con:
            con.execute(
                "UPDATE cycle_plan SET audit_id = ?, status = ? WHERE cycle_id = ? AND position = ?",
                [outcome.audit_id, outcome.status, cycle_id, position],
            )
        if on_outcome is not None:
            on_outcome(outcome)
    return None


def _start(store: Store, took_over: bool, resolved: ResolvedConfig) -> int:
    with store.transaction() as con:
        # A cycle that died left its row running: it is over.
        con.execute(
            "UPDATE cycles SET status = 'failed', finished_at = now(), error = 'interrupted' WHERE status = 'running'"
        )
        row = con.execute("SELECT coalesce(max(cycle_id), 0) + 1 FROM cycles").fetchone()
        cycle_id = int(row[0]) if row else 1
        con.execute(
            "INSERT INTO cycles (cycle_id, status, started_at, took_over, budget) VALUES (?, 'running', now(), ?, ?)",
            [cycle_id, took_over, json.dumps(resolved.config.cycle.model_dump())],
        )
    return cycle_id


def _save_plan(store: Store, cycle_id: int, plan: list[PlanItem]) -> None:
    import pyarrow as pa

    from auditor.store.database import staged

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


def _finish(
    store: Store,
    cycle_id: int,
    status: str,
    *,
    error: str | None = None,
    crawl_id: int | None = None,
    planned: int | None = None,
    audited: int | None = None,
    failed: int | None = None,
    waiting: int | None = None,
    summary: dict[str, Any] | None = None,
) -> None:
    with store.transaction() as con:
        con.execute(
            "UPDATE cycles SET status = ?, finished_at = now(), error = ?, crawl_id = ?, planned = ?, audited = ?,"
            " failed = ?, waiting = ?, summary = ? WHERE cycle_id = ?",
            [status, error, crawl_id, planned, audited, failed, waiting, json.dumps(summary, default=str), cycle_id],
        )
