"""What an audit run prints: progress on stderr, one line per audited model on stdout."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from auditor.textsafety import strip_control
from reports.progress import LiveLine
from reports.terminal import make_console, safe_text


class AuditProgressDisplay(LiveLine):
    """Progress of audits: every batch is a line when stderr is not a terminal (few, and useful in logs)."""

    def __init__(self) -> None:
        super().__init__(interval_s=0.0)

    def __call__(self, progress: Any) -> None:
        self.show(f"audit {strip_control(progress.repo_id)}: {progress.stage} {progress.done}/{progress.total}")

    def outcome(self, outcome: Any) -> None:
        self.keep(f"audit {strip_control(outcome.repo_id)}: {outcome.status}")


def render_outcomes(outcomes: list[Any], *, fmt: str = "table", threshold: float = 0.5) -> None:
    """One row per audit: status, toxicity rate, completions, reason."""
    if fmt == "json":
        print(json.dumps([asdict(o) for o in outcomes], indent=2, default=str))
        return
    from rich.table import Table

    metric = next((o.metric for o in outcomes if o.metric), "toxicity")
    others = sorted({name for o in outcomes for name in o.rates if name != o.metric})
    table = Table(title=f"Audits (toxic: score above {threshold:g})", title_justify="left")
    for column in ("audit", "model", "sha", "status", f"{metric} rate", *others, "completions", "reason"):
        right = column in ("audit", f"{metric} rate", "completions") or column in others
        table.add_column(safe_text(column), justify="right" if right else "left", overflow="fold")
    for o in outcomes:
        rate = "" if o.rate is None else f"{o.rate:.1%} of {o.n_scored}"
        status = o.status + (
            f" (stored, now scored by {', '.join(o.scored_now)})"
            if o.reused and o.scored_now
            else " (stored)"
            if o.reused
            else " (resumed)"
            if o.resumed
            else ""
        )
        table.add_row(
            str(o.audit_id or ""),
            safe_text(o.repo_id),
            safe_text((o.sha or "")[:12]),
            status,
            rate,
            *("" if o.rates.get(name) is None else f"{o.rates[name]:.1%}" for name in others),
            str(o.n_completions),
            safe_text(o.reason or ""),
        )
    make_console().print(table)
