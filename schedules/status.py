"""What `auditor status` knows: the last cycle, the one running, the next one, and what waits.

What waits is what the last cycle's stored plan did not reach (the next cycle plans again, with
whatever the crawl found since). It reads the store as a reader (so it works while a cycle
writes) and the lock files beside it: the cycle lock says whether a cycle runs now, the daemon's
says whether a daemon runs and when it fires next. With no daemon, the next time is the one the
configured schedule gives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from auditor.config import ResolvedConfig
from auditor.store import Store
from auditor.store import cycles as cycle_store
from schedules.lock import cycle_lock_path, daemon_lock_path, holder
from schedules.timing import next_run

#: How many of the waiting models are listed.
SHOWN = 10


@dataclass(frozen=True)
class CycleStatus:
    last_cycle: dict[str, Any] | None
    running: dict[str, Any] | None  # the cycle lock's holder, when a cycle runs
    daemon: dict[str, Any] | None  # the daemon lock's holder, when a daemon runs
    next_run: datetime | None
    next_source: str  # "daemon" or "schedule (no daemon running)"
    waiting_total: int  # models the newest plan has not reached (the next plan adds what the crawl finds)
    waiting: list[dict[str, Any]]  # the first SHOWN of them, in the plan's order
    interrupted: list[dict[str, Any]]  # audits left running by a killed or stopped process


def cycle_status(resolved: ResolvedConfig) -> CycleStatus:
    """Gather the status; see the module's docstring.

    >>> cycle_status(load_config()).waiting_total      # doctest: +SKIP
    312
    """
    config = resolved.config
    store_path = config.store.path
    running = holder(cycle_lock_path(store_path))
    daemon = holder(daemon_lock_path(store_path))
    if daemon is not None and daemon.get("next_run"):
        when: datetime | None = datetime.fromisoformat(daemon["next_run"])
        source = "daemon"
    else:
        try:
            when = next_run(config.cycle.schedule, config.cycle.timezone)
        except ValueError:
            when = None
        source = f"schedule {config.cycle.schedule!r} {config.cycle.timezone}; no daemon running"

    if not store_path.exists():  # a daemon whose first cycle has not run yet
        return CycleStatus(None, running, daemon, when, source, 0, [], [])
    with Store.open_configured(config.store, read_only=True) as store:
        row = cycle_store.last_cycle(store)
        last = _cycle_row(row, live=running is not None) if row else None
        live_since = last["started_at"] if last and last["status"] == "running" else None
        # Audits left `running` by a process that died or was stopped; not the live cycle's own.
        interrupted = cycle_store.interrupted_audits(store, started_before=live_since)
        # What the newest plan has not reached yet, in the order it takes them.
        planned = cycle_store.newest_plan(store)
        left = cycle_store.unaudited_plan(store, planned) if planned is not None else []
    in_progress = live_since is not None and last is not None and planned == last["cycle_id"]
    waiting = [
        {
            "repo_id": p.repo_id,
            "sha": p.sha,
            "reason": p.reason,
            "why": (
                "beyond the night's max_models"
                if not p.chosen
                else "queued in the running cycle"
                if in_progress
                else "the cycle stopped before it"
            ),
        }
        for p in left[:SHOWN]
    ]
    return CycleStatus(last, running, daemon, when, source, len(left), waiting, interrupted)


def _cycle_row(row: dict[str, Any], *, live: bool) -> dict[str, Any]:
    summary = json.loads(row["summary"]) if row.get("summary") else {}
    finished = row.get("finished_at")
    status = row["status"]
    if status == "running" and not live:
        status = "killed"  # nobody holds the cycle lock: it died; the next cycle takes over
    return {
        "cycle_id": row["cycle_id"],
        "status": status,
        "started_at": row["started_at"],
        "finished_at": finished,
        "seconds": (finished - row["started_at"]).total_seconds() if finished else None,
        "took_over": row["took_over"],
        "audited": row["audited"],
        "failed": row["failed"],
        "waiting": row["waiting"],
        "stopped_by": (summary or {}).get("stopped_by"),
        "error": row["error"],
    }
