"""The scorer agreement report: two scorers' calls on the same completions, per model and overall."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from auditor.analysis.agreement import AgreementView
from reports.emit import Record, Report, Section, emit, print_table
from reports.summaries import CONTENT_WARNING
from reports.terminal import safe_text

if TYPE_CHECKING:
    from rich.console import Console


def agreement_report(view: AgreementView) -> Report:
    """Two sections: kappa and the 2x2 table at the threshold, overall then per model; and the
    completions the two scorers disagree on most (behind a content warning)."""
    first, second = view.first, view.second
    tables = [view.overall, *view.models]
    shown: list[Record] = [
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
    models = Section(
        "models",
        f"Agreement of {first} and {second} (toxic: score above {view.threshold:g}; kappa: Cohen's, chance-corrected)",
        [t.to_dict() for t in tables],
        shown=shown,
    )
    disagreements = Section(
        "disagreements",
        "Where they disagree most",
        [
            {
                "model": d.repo_id,
                "first_score": d.first_score,
                "second_score": d.second_score,
                "prompt": d.prompt,
                "completion": d.completion,
            }
            for d in view.disagreements
        ],
        columns=("model", first, second, "prompt", "completion"),
        shown=[
            {
                "model": d.repo_id,
                first: f"{d.first_score:.3f}",
                second: f"{d.second_score:.3f}",
                "prompt": d.prompt,
                "completion": d.completion,
            }
            for d in view.disagreements
        ],
        fields=("model", "first_score", "second_score", "prompt", "completion"),
        note=CONTENT_WARNING,
    )

    def draw_disagreements(console: Console) -> None:
        if view.overall.n == 0:
            console.print(f"No completion is scored by both {safe_text(first)} and {safe_text(second)} yet.")
        elif view.disagreements:
            console.print(f"[bold]{CONTENT_WARNING}[/bold]")
            print_table(disagreements, console)

    document = {
        "first": first,
        "second": second,
        "threshold": view.threshold,
        "overall": view.overall.to_dict(),
        "models": [m.to_dict() for m in view.models],
        "disagreements": view.disagreements,
    }
    return Report([models, replace(disagreements, draw=draw_disagreements)], document=document)


def render_agreement(view: AgreementView, *, fmt: str) -> None:
    """`auditor report scorers`: every section of `agreement_report` in `fmt`."""
    emit(agreement_report(view), fmt)


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"
