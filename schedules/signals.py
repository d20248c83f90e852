"""Stopping on SIGTERM and Ctrl-C: the first asks for a stop, a second one insists.

The first SIGTERM or SIGINT sets a flag that the crawl and the audits poll at their safe points
(after a listing, after a stored batch), so the cycle ends within one batch and everything it
stored stays resumable. A second signal does not wait: in the main thread it raises
`KeyboardInterrupt`; where the work runs in another thread (the daemon), the process exits at once
with 128 + the signal's number, which is as safe as a kill -9 and no worse.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger("auditor.schedule")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """`with StopSignals() as stop:` ... `stop.is_set()` once SIGTERM or Ctrl-C came.

    >>> with StopSignals() as stop:                      # doctest: +SKIP
    ...     run_cycle(resolved, should_stop=stop.is_set)
    """

    def __init__(self, *, work_in_main_thread: bool = True, event: threading.Event | None = None) -> None:
        self.event = event or threading.Event()
        self.work_in_main_thread = work_in_main_thread
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def is_set(self) -> bool:
        return self.event.is_set()

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.event.is_set():
            self.received = name
            self.event.set()
            log.warning(
                "%s: stopping after the current batch (what is left resumes next cycle); send it again to stop now",
                name,
            )
            return
        log.warning("%s again: stopping now; the audit in hand resumes next cycle", name)
        if self.work_in_main_thread:
            raise KeyboardInterrupt
        os._exit(128 + signum)
