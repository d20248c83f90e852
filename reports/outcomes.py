"""What an audit run prints: progress on stderr, one line per audited model on stdout."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING

from auditor.textsafety import strip_control
from reports.emit import Record, Report, Section, emit
from reports.progress import LiveLine
from reports.terminal import safe_text

if TYPE_CHECKING:
    from rich.console import Console

    from auditor.audit.driver import AuditOutcome, AuditProgress


class AuditProgressDisplay(LiveLine):
    """Progress of audits: every batch is a line when stderr is not a terminal (few, and useful in logs)."""

    def __init__(self) -> None:
        super().__init__(interval_s=0.0)

    def __call__(self, progress: AuditProgress) -> None:
        self.show(f"audit {strip_control(progress.repo_id)}: {progress.stage} {progress.done}/{progress.total}")

    def outcome(self, outcome: AuditOutcome) -> None:
        self.keep(f"audit {strip_control(outcome.repo_id)}: {outcome.status}")


def outcomes_section(outcomes: Sequence[AuditOutcome], *, threshold: float) -> Section:
    """One row per audit: status, toxicity rate (and the other attributes'), completions, reason."""
    metric = next((o.metric for o in outcomes if o.metric), "toxicity")
    others = sorted({name for o in outcomes for name in o.rates if name != o.metric})
    columns = ("audit", "model", "sha", "status", f"{metric} rate", *others, "completions", "reason")
    right = {"audit", f"{metric} rate", "completions", *others}
    shown: list[Record] = [
        {
            "audit": str(o.audit_id or ""),
            "model": o.repo_id,
            "sha": (o.sha or "")[:12],
            "status": o.status + _how(o),
            f"{metric} rate": "" if o.rate is None else f"{o.rate:.1%} of {o.n_scored}",
            **{name: "" if o.rates.get(name) is None else f"{o.rates[name]:.1%}" for name in others},
            "completions": str(o.n_completions),
            "reason": o.reason or "",
        }
        for o in outcomes
    ]
    title = f"Audits (toxic: score above {threshold:g})"

    def draw(console: Console) -> None:
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(safe_text(column), justify="right" if column in right else "left", overflow="fold")
        for row in shown:
            table.add_row(*(safe_text(row[c]) for c in columns))
        console.print(table)

    from auditor.audit.driver import AuditOutcome

    return Section(
        "outcomes",
        title,
        [{f.name: getattr(o, f.name) for f in fields(o)} for o in outcomes],
        columns=columns,
        shown=shown,
        fields=[f.name for f in fields(AuditOutcome)],
        draw=draw,
    )


def _how(o: AuditOutcome) -> str:
    if o.reused and o.scored_now:
        return f" (stored, now scored by {', '.join(o.scored_now)})"
    if o.reused:
        return " (stored)"
    return " (resumed)" if o.resumed else ""


def render_outcomes(outcomes: Sequence[AuditOutcome], *, fmt: str = "table", threshold: float) -> None:
    """One row per audit: status, toxicity rate, completions, reason (JSON: a list of outcomes)."""
    emit(Report([outcomes_section(outcomes, threshold=threshold)], document=list(outcomes)), fmt)
