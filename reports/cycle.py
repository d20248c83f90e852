"""What a nightly cycle prints, and what `auditor status` shows."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from reports.audit import render_outcomes
from reports.tables import json_safe
from reports.terminal import make_console, safe_text


def cycle_summary(result: Any) -> str:
    """One line: what the crawl found, what was audited, what waits and why the cycle stopped."""
    totals = result.crawl.get("totals", {})
    failed = sum(1 for o in result.outcomes if o.status != "done")
    return (
        f"cycle {result.cycle_id} {result.status}: crawl found {totals.get('models_new', 0)} new and"
        f" {totals.get('models_changed', 0)} changed models; {len(result.outcomes)} audited"
        + (f" ({failed} failed or skipped, each a row with its reason)" if failed else "")
        + f", {result.waiting} waiting"
        + (f" (stopped by {result.stopped_by})" if result.stopped_by else "")
        + f"; {result.seconds:.0f} s"
    )


def render_cycle(result: Any, *, fmt: str = "table", threshold: float = 0.5) -> None:
    """The cycle's summary line and its audits (or all of it as JSON)."""
    if fmt == "json":
        print(json.dumps(asdict(result), indent=2, default=str))
        return
    if result.took_over:
        print("the previous cycle did not finish (killed or the machine went down); this one took over")
    print(cycle_summary(result))
    render_outcomes(result.outcomes, threshold=threshold)


def render_status(status: Any, *, fmt: str = "table") -> None:
    """`auditor status`: the last cycle, the one running, the next, and what waits."""
    if fmt == "json":
        print(json.dumps(json_safe(asdict(status)), indent=2, default=str))
        return
    from rich.table import Table

    console = make_console()
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
    if status.interrupted:
        console.print(
            f"interrupted   {len(status.interrupted)} audits left running by a stopped or killed process;"
            " the next cycle finishes them"
        )
    if status.waiting:
        table = Table(title="First in line", title_justify="left")
        for column in ("model", "sha", "reason", "why it waits"):
            table.add_column(column, overflow="fold")
        for item in status.waiting:
            table.add_row(
                safe_text(item["repo_id"]), item["sha"][:12], safe_text(item["reason"]), safe_text(item["why"])
            )
        console.print(table)


def _when(value: Any) -> str:
    if value is None:
        return "-"
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M:%S %Z")).strip()
    return str(value)


def render_demo(result: Any) -> None:
    """The demo's night: the cycle's summary, the drift report, the Llama family's tree, and where to look next."""
    from reports.drift import SHORT_COLUMNS, render_drift
    from reports.views import render_tree

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
