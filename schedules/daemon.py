"""The scheduler daemon behind `auditor schedule`: the nightly cycle on a cron schedule.

APScheduler (in-process, in memory) fires the cycle on `[cycle] schedule`, read in
`[cycle] timezone`. The job is configured so that cycles never overlap (`max_instances=1`: a fire
that comes while a cycle still runs is skipped and logged), misfires coalesce (a daemon that slept
through several fire times runs one cycle, not one per miss) and a late start is allowed up to
`[cycle] misfire_grace_s`. The cycle lock still guards the store, so a cron-started `auditor run`
and the daemon never run two cycles at once either: the loser is skipped and logged.

The daemon holds `<store>.daemon` for its life (one daemon a store) and writes there its schedule,
the next run and the last cycle, for `auditor status`. A cycle that fails is logged and recorded in
`cycles`; the daemon goes on to the next fire time. SIGTERM or Ctrl-C (see `schedules.signals`)
stops the current cycle within one batch and exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from auditor.config import ResolvedConfig
from auditor.errors import AuditorError, ConfigError, CycleBusyError
from schedules.cycle import CycleResult, run_cycle
from schedules.lock import CycleLock, daemon_lock_path
from schedules.timing import parse_schedule

log = logging.getLogger("auditor.schedule")


@dataclass
class DaemonRun:
    """What a daemon did before it exited."""

    cycles: list[CycleResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped: int = 0  # fires that found a cycle still running (here or from cron)


def run_daemon(
    resolved: ResolvedConfig,
    *,
    stop: threading.Event | None = None,
    cycles: int | None = None,
    after_cycle: Callable[[CycleResult], None] | None = None,
) -> DaemonRun:
    """Run cycles on the configured schedule until `stop` is set (or `cycles` have run).

    >>> with StopSignals(work_in_main_thread=False) as signals:     # doctest: +SKIP
    ...     run_daemon(load_config(), stop=signals.event)
    """
    from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
    from apscheduler.schedulers.background import BackgroundScheduler

    settings = resolved.config.cycle
    try:
        trigger = parse_schedule(settings.schedule, settings.timezone)
    except ValueError as err:
        raise ConfigError(f"cycle.schedule: {err}", hint="fix [cycle] schedule; `auditor config` shows it") from None
    stop = stop or threading.Event()
    outcome = DaemonRun()

    def cycle_job() -> None:
        if stop.is_set():
            return
        log.info("cycle starting (schedule %r, %s)", settings.schedule, settings.timezone)
        try:
            result = run_cycle(resolved, should_stop=stop.is_set)
        except CycleBusyError as err:
            outcome.skipped += 1
            log.warning("cycle skipped: %s", err)
            return
        except AuditorError as err:
            outcome.failures.append(str(err))
            log.error("cycle failed: %s%s", err, f" ({err.hint})" if err.hint else "")
        except Exception as err:  # a bug must not end the daemon: the next fire tries again
            outcome.failures.append(f"{type(err).__name__}: {err}")
            log.exception("cycle failed unexpectedly")
        else:
            outcome.cycles.append(result)
            from reports.cycle import cycle_summary

            log.info("%s", cycle_summary(result))
            if after_cycle is not None:
                after_cycle(result)
        finally:
            attempts = len(outcome.cycles) + len(outcome.failures)
            if cycles is not None and attempts >= cycles:
                stop.set()
            lock.note(last_cycle_at=time.time(), next_run=_iso(job.next_run_time) if not stop.is_set() else None)

    def missed(event: JobEvent) -> None:
        outcome.skipped += 1
        if event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("a fire came while the last cycle still ran: skipped (cycles never overlap)")
        else:
            log.warning("a cycle due at %s started too late (over misfire_grace_s): skipped", event.scheduled_run_time)

    store_path = resolved.config.store.path
    store_path.parent.mkdir(parents=True, exist_ok=True)
    with CycleLock(daemon_lock_path(store_path), what="scheduler daemon") as lock:
        scheduler = BackgroundScheduler(
            timezone=settings.timezone,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": round(settings.misfire_grace_s)},
        )
        job = scheduler.add_job(cycle_job, trigger, id="cycle", name="nightly cycle")
        scheduler.add_listener(missed, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        scheduler.start()
        lock.note(schedule=settings.schedule, timezone=settings.timezone, next_run=_iso(job.next_run_time))
        log.info(
            "scheduler started: cycles on %r (%s); next at %s", settings.schedule, settings.timezone, job.next_run_time
        )
        try:
            while not stop.wait(0.2):
                pass
        finally:
            log.info("scheduler stopping (a cycle in hand stops within one batch)")
            scheduler.shutdown(wait=True)
    return outcome


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
