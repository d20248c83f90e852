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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from auditor.audit.driver import AuditOutcome, audit_model
from auditor.audit.pending import PendingWork, pending_work
from auditor.config import ResolvedConfig
from auditor.errors import StopRequested
from auditor.store import Store
from auditor.store import cycles as cycle_store
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
    info = cycle_store.plan_facts(store)
    cycle = config.cycle
    ranked = []
    for repo_id, sha in pending:
        facts = info.get(repo_id) or cycle_store.PlanFacts(False, False, None, None, 0, None)
        parent, repushed, relation, depth = facts.is_parent, facts.repushed, facts.relation, facts.depth
        downloads, created = facts.downloads, facts.created_at
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
            preset_name=work.preset_name,
            quantization=work.quantization,
            should_stop=should_stop,
        )
        downloaded += outcome.download_bytes
        outcomes.append(outcome)
        cycle_store.record_planned_audit(store, cycle_id, position, audit_id=outcome.audit_id, status=outcome.status)
        if on_outcome is not None:
            on_outcome(outcome)
    return None


def _start(store: Store, took_over: bool, resolved: ResolvedConfig) -> int:
    # A cycle that died left its row running: starting marks it over.
    return cycle_store.start_cycle(store, took_over=took_over, budget=resolved.config.cycle.model_dump())


def _save_plan(store: Store, cycle_id: int, plan: list[PlanItem]) -> None:
    cycle_store.save_plan(store, cycle_id, plan)


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
    cycle_store.finish_cycle(
        store,
        cycle_id,
        status,
        error=error,
        crawl_id=crawl_id,
        planned=planned,
        audited=audited,
        failed=failed,
        waiting=waiting,
        summary=summary,
    )
