"""What an audit run prints: progress on stderr, one line per audited model on stdout."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from types import TracebackType
from typing import Any

from reports.terminal import make_console, safe_text


class AuditProgressDisplay:
    """Progress of audits on stderr: a live line on a terminal, one line per batch elsewhere."""

    def __init__(self) -> None:
        self._live: Any = None

    def __enter__(self) -> AuditProgressDisplay:
        if sys.stderr.isatty():
            from rich.live import Live

            self._live = Live("", console=make_console(stderr=True), transient=True, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    def __call__(self, progress: Any) -> None:
        line = f"audit {safe_text(progress.repo_id, markup=False)}: {progress.stage} {progress.done}/{progress.total}"
        if self._live is not None:
            self._live.update(safe_text(line))
        else:
            print(line, file=sys.stderr, flush=True)

    def outcome(self, outcome: Any) -> None:
        line = f"audit {safe_text(outcome.repo_id, markup=False)}: {outcome.status}"
        if self._live is not None:
            self._live.console.print(safe_text(line))
        else:
            print(line, file=sys.stderr, flush=True)


def render_outcomes(outcomes: list[Any], *, fmt: str = "table", threshold: float = 0.5) -> None:
    """One row per audit: status, toxicity rate, completions, reason."""
    if fmt == "json":
        print(json.dumps([asdict(o) for o in outcomes], indent=2, default=str))
        return
    from rich.table import Table

    table = Table(title=f"Audits (toxic: score above {threshold:g})", title_justify="left")
    for column in ("audit", "model", "sha", "status", "toxicity rate", "completions", "reason"):
        table.add_column(
            column, justify="right" if column in ("audit", "toxicity rate", "completions") else "left", overflow="fold"
        )
    for o in outcomes:
        rate = "" if o.rate is None else f"{o.rate:.1%} of {o.n_scored}"
        status = o.status + (" (stored)" if o.reused else " (resumed)" if o.resumed else "")
        table.add_row(
            str(o.audit_id or ""),
            safe_text(o.repo_id),
            safe_text((o.sha or "")[:12]),
            status,
            rate,
            str(o.n_completions),
            safe_text(o.reason or ""),
        )
    make_console().print(table)
