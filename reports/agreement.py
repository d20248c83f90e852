"""The scorer agreement report: two scorers' calls on the same completions, per model and overall."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from reports.tables import render_records
from reports.terminal import make_console, safe_text
from reports.views import CONTENT_WARNING


def render_agreement(view: Any, *, fmt: str) -> None:
    """Kappa and the 2x2 table at the threshold, per model and overall, then the completions the
    two scorers disagree on most (behind a content warning)."""
    tables = [view.overall, *view.models]
    if fmt == "json":
        print(
            json.dumps(
                {
                    "first": view.first,
                    "second": view.second,
                    "threshold": view.threshold,
                    "overall": view.overall.to_dict(),
                    "models": [m.to_dict() for m in view.models],
                    "disagreements": [asdict(d) for d in view.disagreements],
                },
                indent=2,
            )
        )
        return
    first, second = view.first, view.second
    records = [
        {
            "model": t.scope,
            "completions": t.n,
            "kappa": _number(t.kappa),
            "agree": _pct(t.observed),
            "both toxic": t.both_toxic,
            f"{first} only": t.first_only,
            f"{second} only": t.second_only,
            "neither": t.neither,
        }
        for t in tables
    ]
    if fmt in ("csv", "markdown"):
        render_records(records, fmt=fmt)
        return
    render_records(
        records,
        fmt="table",
        title=f"Agreement of {safe_text(first)} and {safe_text(second)} (toxic: score above {view.threshold:g};"
        " kappa: Cohen's, chance-corrected)",
    )
    console = make_console()
    if view.overall.n == 0:
        console.print(f"No completion is scored by both {safe_text(first)} and {safe_text(second)} yet.")
        return
    if view.disagreements:
        console.print(f"[bold]{CONTENT_WARNING}[/bold]")
        render_records(
            [
                {
                    "model": d.repo_id,
                    first: f"{d.first_score:.3f}",
                    second: f"{d.second_score:.3f}",
                    "prompt": d.prompt,
                    "completion": d.completion,
                }
                for d in view.disagreements
            ],
            fmt="table",
            title="Where they disagree most",
        )


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"
