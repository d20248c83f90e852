"""The nightly cycle: `auditor run` (one cycle), `auditor schedule` (the daemon), `auditor status`."""

from __future__ import annotations

import click

from auditor.cli.invocation import Invocation, configured
from auditor.cli.logs import log_schedule, quiet_model_libraries
from auditor.cli.options import format_option


@click.command("run")
@click.option("--max-models", type=int, default=None, help="At most this many audits tonight (cycle.max_models).")
@click.option("--max-hours", type=float, default=None, help="Start no audit after this many hours (cycle.max_hours).")
@format_option("table", "json")
@configured({"cycle.max_models": "max_models", "cycle.max_hours": "max_hours"})
def run_command(inv: Invocation, fmt: str) -> None:
    """One nightly cycle: crawl, plan under the budget, audit, summarise (safe to call from cron).

    Exits 0 when the cycle completed, even if some models failed (they are rows), and when SIGTERM
    or Ctrl-C stopped it cleanly (within one batch; what is left resumes next cycle; a second signal
    stops at once); 3 when another cycle holds the lock; non-zero when the cycle could not run.

    \b
    Example:
      auditor run --max-models 20
    """
    from reports.cycle import render_cycle
    from reports.outcomes import AuditProgressDisplay
    from schedules.cycle import run_cycle
    from schedules.signals import StopSignals

    resolved = inv.resolved
    log_schedule()
    quiet_model_libraries()
    with inv.store_removed_if_left_empty(), StopSignals() as stop, AuditProgressDisplay() as progress:
        result = run_cycle(resolved, on_outcome=progress.outcome, should_stop=stop.is_set)
    render_cycle(result, fmt=fmt, threshold=resolved.config.scoring.threshold)


@click.command("schedule")
@click.option("--cycles", type=int, default=None, help="Exit after this many cycles (default: run until stopped).")
@click.option("--cron", "cron", default=None, metavar="EXPR", help="Cron expression (cycle.schedule).")
@configured({"cycle.schedule": "cron"})
def schedule_command(inv: Invocation, cycles: int | None) -> None:
    """Run the nightly cycle on a schedule: a daemon (nightly at 02:00 UTC by default).

    Cycles never overlap (a fire during a running cycle is skipped), missed fires coalesce into one
    cycle, and a late start is allowed up to cycle.misfire_grace_s. SIGTERM or Ctrl-C stops the
    cycle in hand within one batch (the rest resumes next cycle) and exits 0; a second signal exits
    at once. Logs go to stderr. One daemon per store; `auditor status` shows it.

    \b
    Example:
      auditor schedule                       # cycle.schedule, default '0 2 * * *' UTC
      auditor schedule --cron '30 1 * * 1-5'
    """
    from schedules.daemon import run_daemon
    from schedules.signals import StopSignals

    resolved = inv.resolved
    log_schedule()
    quiet_model_libraries()
    with StopSignals(work_in_main_thread=False) as stop:
        run = run_daemon(resolved, stop=stop.event, cycles=cycles)
    click.echo(
        f"scheduler stopped after {len(run.cycles)} cycles ({len(run.failures)} failed, {run.skipped} fires skipped)",
        err=True,
    )


@click.command("status")
@format_option("table", "json")
@configured()
def status_command(inv: Invocation, fmt: str) -> None:
    """The last cycle, the one running now, the next one, and what waits (works while a cycle runs).

    \b
    Example:
      auditor status
      auditor status --format json
    """
    from reports.cycle import render_status
    from schedules.status import cycle_status

    render_status(cycle_status(inv.resolved), fmt=fmt)
