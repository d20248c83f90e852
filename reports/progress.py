"""Progress of long jobs on stderr: a live line on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TypeVar

from reports.terminal import safe_text

if TYPE_CHECKING:
    from rich.live import Live

_L = TypeVar("_L", bound="LiveLine")


class CrawlStatus(Protocol):
    """What the crawl reports as it goes (`crawlers.crawl.CrawlProgress`; reports do not import
    crawlers, so the shape is stated here)."""

    @property
    def mode(self) -> str: ...
    @property
    def listed(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def models_seen(self) -> int: ...
    @property
    def requests(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def stage(self) -> str: ...
    @property
    def pages(self) -> int: ...
    @property
    def pages_expected(self) -> int | None: ...


class LiveLine:
    """One status line on stderr: redrawn in place on a terminal, printed (at most every
    `interval_s`) when stderr is a file or a pipe. Text passed in must already be safe."""

    def __init__(self, *, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._live: Live | None = None
        self._last: float | None = None

    def __enter__(self: _L) -> _L:
        if sys.stderr.isatty():
            from rich.live import Live

            from reports.terminal import make_console

            self._live = Live("", console=make_console(stderr=True), transient=True, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    def show(self, line: str) -> None:
        if self._live is not None:
            self._live.update(safe_text(line))
            return
        now = time.monotonic()
        if self._last is None or now - self._last >= self.interval_s:
            self._last = now
            print(line, file=sys.stderr, flush=True)

    def keep(self, line: str) -> None:
        """A line that stays (above the live line on a terminal)."""
        if self._live is not None:
            self._live.console.print(safe_text(line))
        else:
            print(line, file=sys.stderr, flush=True)


class CrawlProgressDisplay(LiveLine):
    """The crawl's progress callback."""

    def __call__(self, progress: CrawlStatus) -> None:
        if progress.pages:
            expected = f" of about {progress.pages_expected:,}" if progress.pages_expected else ""
            work = f"{progress.pages:,} page{'s' if progress.pages != 1 else ''}{expected} read"
        else:
            work = f"{progress.listed} listings done, {progress.pending} pending"
        self.show(
            f"crawl ({progress.mode}): {progress.stage}; {progress.models_seen} models seen, {work},"
            f" {progress.requests} requests" + (f", {progress.failed} failed" if progress.failed else "")
        )
