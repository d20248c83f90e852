"""What a nightly cycle prints, and what `auditor status` shows.

The cycle's records live in `schedules/`, which uses `reports/` (not the other way round), so they
are described here by the protocols the renderers read.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from reports.emit import Record, Report, Section, emit, to_json
from reports.outcomes import outcomes_section
from reports.terminal import make_console, safe_text

if TYPE_CHECKING:
    from rich.console import Console

    from auditor.analysis.drift import DriftRow, NotCompared
    from auditor.analysis.summaries import TreeNode
    from auditor.audit.driver import AuditOutcome


class Cycle(Protocol):
    """What the renderers read of `schedules.cycle.CycleResult`."""

    @property
    def cycle_id(self) -> int: ...
    @property
    def took_over(self) -> bool: ...
    @property
    def crawl(self) -> Mapping[str, object]: ...
    @property
    def outcomes(self) -> Sequence[AuditOutcome]: ...
    @property
    def waiting(self) -> int: ...
    @property
    def stopped_by(self) -> str | None: ...
    @property
    def seconds(self) -> float: ...
    @property
    def status(self) -> str: ...


class Status(Protocol):
    """What `auditor status` shows of `schedules.status.CycleStatus`."""

    @property
    def last_cycle(self) -> Mapping[str, object] | None: ...
    @property
    def running(self) -> Mapping[str, object] | None: ...
    @property
    def daemon(self) -> Mapping[str, object] | None: ...
    @property
    def next_run(self) -> datetime | None: ...
    @property
    def next_source(self) -> str: ...
    @property
    def waiting_total(self) -> int: ...
    @property
    def waiting(self) -> Sequence[Mapping[str, object]]: ...
    @property
    def interrupted(self) -> Sequence[Mapping[str, object]]: ...


class Demo(Protocol):
    """What the demo prints of `schedules.demo.DemoResult`."""

    @property
    def store_path(self) -> Path: ...
    @property
    def hub_models(self) -> int: ...
    @property
    def cycle(self) -> Cycle: ...
    @property
    def drift(self) -> Sequence[DriftRow]: ...
    @property
    def not_compared(self) -> Sequence[NotCompared]: ...
    @property
    def tree(self) -> TreeNode: ...
    @property
    def assets_s(self) -> float: ...
    @property
    def seconds(self) -> float: ...
    @property
    def threshold(self) -> float: ...


TOOK_OVER = "the previous cycle did not finish (killed or the machine went down); this one took over"


def _crawl_totals(result: Cycle) -> Mapping[str, object]:
    totals = result.crawl.get("totals")
    return totals if isinstance(totals, Mapping) else {}


def cycle_summary(result: Cycle) -> str:
    """One line: what the crawl found, what was audited, what waits and why the cycle stopped."""
    totals = _crawl_totals(result)
    failed = sum(1 for o in result.outcomes if o.status != "done")
    return (
        f"cycle {result.cycle_id} {result.status}: crawl found {totals.get('models_new', 0)} new and"
        f" {totals.get('models_changed', 0)} changed models; {len(result.outcomes)} audited"
        + (f" ({failed} failed or skipped, each a row with its reason)" if failed else "")
        + f", {result.waiting} waiting"
        + (f" (stopped by {result.stopped_by})" if result.stopped_by else "")
        + f"; {result.seconds:.0f} s"
    )


def cycle_report(result: Cycle, *, threshold: float) -> Report:
    """Two sections: the cycle's summary (one row; the line on a terminal) and its audits. The JSON
    is the whole result, with the summary under `summary`."""
    totals = _crawl_totals(result)
    summary: Record = {
        "cycle_id": result.cycle_id,
        "status": result.status,
        "took_over": result.took_over,
        "models_new": totals.get("models_new", 0),
        "models_changed": totals.get("models_changed", 0),
        "audited": len(result.outcomes),
        "failed": sum(1 for o in result.outcomes if o.status != "done"),
        "waiting": result.waiting,
        "stopped_by": result.stopped_by,
        "seconds": result.seconds,
    }
    document = to_json(result)
    if isinstance(document, dict):
        document["summary"] = to_json(summary)
    return Report(
        [
            Section(
                "summary",
                f"Cycle {result.cycle_id}",
                [summary],
                draw=lambda console: console.print(safe_text(cycle_summary(result)), soft_wrap=True),
            ),
            outcomes_section(result.outcomes, threshold=threshold),
        ],
        document=document,
    )


def render_cycle(result: Cycle, *, fmt: str = "table", threshold: float) -> None:
    """The cycle's summary line and its audits (or all of it as JSON); a takeover is a warning on stderr."""
    if result.took_over:
        print(TOOK_OVER, file=sys.stderr)
    emit(cycle_report(result, threshold=threshold), fmt)


def status_report(status: Status) -> Report:
    """`auditor status`: the last cycle, the one running, the daemon and the next cycle (one row;
    lines on a terminal), the audits a stopped process left running, and the first models waiting."""
    last = status.last_cycle
    about: dict[str, object] = {f"last_{k}": v for k, v in (last or {}).items()}
    about |= {
        "running_cycle_id": (status.running or {}).get("cycle_id"),
        "running_pid": (status.running or {}).get("pid"),
        "daemon_pid": (status.daemon or {}).get("pid"),
        "daemon_schedule": (status.daemon or {}).get("schedule"),
        "next_run": status.next_run,
        "next_source": status.next_source,
        "waiting_total": status.waiting_total,
    }
    waiting = Section(
        "waiting",
        "First in line",
        status.waiting,
        columns=("model", "sha", "reason", "why it waits"),
        shown=[
            {
                "model": item.get("repo_id"),
                "sha": str(item.get("sha") or "")[:12],
                "reason": item.get("reason"),
                "why it waits": item.get("why"),
            }
            for item in status.waiting
        ],
        fields=("repo_id", "sha", "reason", "why"),
        optional=True,
    )
    n_interrupted = len(status.interrupted)
    return Report(
        [
            Section("last_cycle", "Cycles", [about], draw=lambda console: _draw_status(status, console)),
            Section(
                "interrupted",
                "Audits left running by a stopped or killed process",
                status.interrupted,
                fields=("audit_id", "repo_id", "sha", "started_at", "n_completions"),
                optional=True,
                draw=lambda console: console.print(
                    f"interrupted   {n_interrupted} audits left running by a stopped or killed process;"
                    " the next cycle finishes them"
                ),
            ),
            waiting,
        ],
        document=status,
    )


def render_status(status: Status, *, fmt: str = "table") -> None:
    """`auditor status`: the last cycle, the one running, the next, and what waits."""
    emit(status_report(status), fmt)


def _draw_status(status: Status, console: Console) -> None:
    last = status.last_cycle
    if last is None:
        console.print("last cycle    none yet (run `auditor run`, or start `auditor schedule`)")
    else:
        took = " after taking over from a cycle that died" if last.get("took_over") else ""
        line = (
            f"last cycle    #{last['cycle_id']} {last['status']}{took}, started {_when(last['started_at'])}"
            + (f", {last['seconds']:.0f} s" if last.get("seconds") is not None else "")
            + (
                f": {last['audited']} audited ({last['failed']} failed or skipped), {last['waiting']} waiting"
                if last.get("audited") is not None
                else ""
            )
            + (f"; stopped by {last['stopped_by']}" if last.get("stopped_by") else "")
        )
        console.print(safe_text(line))
        if last.get("error"):
            console.print(safe_text(f"              {last['error']}"))
    if status.running is not None:
        console.print(
            safe_text(
                f"running now   cycle #{status.running.get('cycle_id', '?')} (pid {status.running.get('pid', '?')})"
            )
        )
    else:
        console.print("running now   no cycle")
    if status.daemon is not None:
        console.print(
            safe_text(
                f"daemon        running (pid {status.daemon.get('pid', '?')}) on {status.daemon.get('schedule')!r}"
                f" {status.daemon.get('timezone', '')}"
            )
        )
    else:
        console.print("daemon        not running (start it with `auditor schedule`, or run cycles from cron)")
    if status.next_run is not None:
        console.print(safe_text(f"next cycle    {_when(status.next_run)} ({status.next_source})"))
    console.print(f"waiting       {status.waiting_total} models the newest plan has not reached")


def _when(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return str(value)


def render_demo(result: Demo) -> None:
    """The demo's night: the cycle's summary, the drift report, the Llama family's tree, and where to look next."""
    from reports.drift import SHORT_COLUMNS, render_drift
    from reports.summaries import render_tree

    console = make_console()
    console.print(
        f"[bold]auditor demo[/bold]: one night against a simulated Hub of {result.hub_models} models"
        f" ({result.seconds:.0f} s, of which {result.assets_s:.0f} s preparing the tiny models)"
    )
    console.print(safe_text(cycle_summary(result.cycle)))
    print()
    render_drift(result.drift, result.not_compared, fmt="table", threshold=result.threshold, columns=SHORT_COLUMNS)
    print()
    render_tree(result.tree, fmt="table")
    print()
    drifted = [row for row in result.drift if row.drifted and row.delta > 0]
    if drifted:
        top = drifted[0]
        console.print(
            safe_text(
                f"Most drifted: {top.child}, {top.delta * 100:+.1f} points of toxicity over its parent"
                f" {top.parent} ({top.rate_parent:.0%} -> {top.rate_child:.0%}, q = {top.q_value:.2g})."
            )
        )
    else:
        console.print("No derivative drifted up in this night.")
    store = safe_text(str(result.store_path))
    console.print(
        f"The store is at {store}. Explore it:\n"
        f"  auditor report model planted/llama-toxic-sft --store {store}\n"
        f"  auditor report runs --store {store}\n"
        f'  auditor sql "SELECT child, parent, delta, q_value FROM drift ORDER BY delta DESC" --store {store}'
    )
