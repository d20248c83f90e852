"""The model, runs and tree reports: the sections each shows, in every format (see `reports.emit`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from auditor.analysis.summaries import ModelView, TreeNode
from reports.emit import Record, Report, Section, emit, print_table
from reports.terminal import make_console, safe_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.tree import Tree

CONTENT_WARNING = "Content warning: model outputs below may be offensive or harmful."

AUDIT_COLUMNS = (
    "audit_id",
    "sha",
    "finished_at",
    "preset",
    "quantization",
    "scorers",
    "status",
    "rate",
    "n_scored",
    "n_unscored",
    "reason",
)
STRATA_COLUMNS = ("stratum", "n_scored", "n_unscored", "n_toxic", "rate", "low", "high")
ANCESTOR_COLUMNS = ("ancestor", "distance", "audit_id", "rate", "n_scored")
WORST_COLUMNS = ("score", "prompt", "completion")
FINDING_COLUMNS = ("finding", "declared")
TREE_COLUMNS = ("model", "parent", "relation", "depth", "rate", "delta", "drifted", "hidden_children")
FINDINGS_NOTE = (
    "The preset decides how a model is asked; the repo's own generation settings are recorded"
    " (audits.repo_generation_config) and ignored."
)


def model_report(view: ModelView) -> Report:
    """One model's sections: metadata and parents, audits over time, the latest audit's findings,
    its rates per stratum, its ancestors' rates, and its most toxic completions."""
    parents = ", ".join(f"{p['parent']} ({p['relation']})" for p in view.parents)
    about: dict[str, object] = {**(view.metadata or {"repo_id": view.repo_id}), "parents": parents or None}
    return Report(
        [
            Section("metadata", view.repo_id, [about], draw=lambda console: _draw_header(view, console)),
            Section(
                "audits",
                f"Audits over time (rate: {view.metric})",
                view.audits,
                columns=AUDIT_COLUMNS,
            ),
            findings_section(view.findings),
            Section(
                "strata",
                "Latest done audit, per stratum (Wilson 95% interval)",
                view.strata,
                columns=STRATA_COLUMNS,
                optional=True,
            ),
            Section(
                "ancestors", "Ancestors audited the same way", view.ancestors, columns=ANCESTOR_COLUMNS, optional=True
            ),
            warned(
                Section(
                    "worst",
                    "Most toxic completions of the latest audit",
                    view.worst,
                    columns=WORST_COLUMNS,
                    optional=True,
                    note=CONTENT_WARNING,
                )
            ),
        ],
        document=view,
    )


def render_model(view: ModelView, *, fmt: str) -> None:
    """`auditor report model`: every section of `model_report` in `fmt`."""
    emit(model_report(view), fmt)


def _draw_header(view: ModelView, console: Console) -> None:
    meta = view.metadata or {}
    parents = ", ".join(f"{safe_text(p['parent'])} ({safe_text(p['relation'])})" for p in view.parents) or "none"
    console.print(
        f"[bold]{safe_text(view.repo_id)}[/bold]  family {safe_text(meta.get('family') or '?')},"
        f" depth {meta.get('depth')}, downloads {meta.get('downloads')}; parents: {parents}"
    )
    if meta.get("removed_at"):
        console.print(f"removed from the tree at {meta['removed_at']}")


def warned(section: Section) -> Section:
    """`section` drawn on the terminal after its note in bold: the content warning before model outputs."""

    def draw(console: Console) -> None:
        console.print(f"[bold]{safe_text(section.note or CONTENT_WARNING)}[/bold]")
        print_table(section, console)

    return replace(section, draw=draw)


def findings_section(findings: Sequence[Mapping[str, object]]) -> Section:
    """The latest audit's findings: what the repo declared and the audit did not apply."""
    title = (
        f"Findings of audit {findings[0]['audit_id']}" if findings else "Findings of the latest audit"
    ) + " (the repo's settings that were not applied)"
    section = Section(
        "findings",
        title,
        findings,
        columns=FINDING_COLUMNS,
        shown=[{**f, "declared": _clip(f.get("declared"), 100)} for f in findings],
        optional=True,
        note=FINDINGS_NOTE,
    )

    def draw(console: Console) -> None:
        print_table(section, console)
        console.print(FINDINGS_NOTE)

    return replace(section, draw=draw)


def render_findings(findings: Sequence[Mapping[str, object]]) -> None:
    """The latest audit's findings as a table, and why they were not applied."""
    section = findings_section(findings)
    if section.draw is not None:
        section.draw(make_console())


def _clip(text: object, width: int) -> str | None:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def runs_report(runs: Mapping[str, Sequence[Record]]) -> Report:
    """Recent crawls, recent audits, and why audits failed or were skipped."""
    return Report(
        [
            Section("crawls", "Recent crawls", runs["crawls"]),
            Section("audits", "Recent audits", runs["audits"]),
            Section("problems", "Why audits failed or were skipped", runs["problems"]),
        ]
    )


def render_runs(runs: Mapping[str, Sequence[Record]], *, fmt: str) -> None:
    """`auditor report runs`: every section of `runs_report` in `fmt`."""
    emit(runs_report(runs), fmt)


def tree_report(node: TreeNode) -> Report:
    """The family tree: drawn on the terminal, one row per model in CSV and Markdown, nested in JSON."""
    return Report(
        [
            Section(
                "tree",
                f"Family tree under {node.repo_id}",
                list(_flatten(node, None, 0)),
                columns=TREE_COLUMNS,
                draw=lambda console: _draw_tree(node, console),
            )
        ],
        document=node,
    )


def render_tree(node: TreeNode, *, fmt: str) -> None:
    """`auditor report tree`: the tree in `fmt`."""
    emit(tree_report(node), fmt)


def _draw_tree(node: TreeNode, console: Console) -> None:
    from rich.tree import Tree

    def label(n: TreeNode) -> str:
        rate = "not audited" if n.rate is None else f"{n.rate:.1%}"
        arrow = ""
        if n.delta is not None:
            arrow = (" [bold red]↑[/bold red]" if n.delta > 0 else " [bold green]↓[/bold green]") if n.drifted else " ="
            arrow += f" {n.delta * 100:+.1f} pp"
        relation = f" ({safe_text(n.relation)})" if n.relation else ""
        more = f" [dim]+{n.hidden} more[/dim]" if n.hidden else ""
        return f"{safe_text(n.repo_id)}{relation}: {rate}{arrow}{more}"

    def add(parent: Tree, n: TreeNode) -> None:
        branch = parent.add(label(n))
        for child in n.children:
            add(branch, child)

    tree = Tree(label(node))
    for child in node.children:
        add(tree, child)
    console.print(tree)


def _flatten(node: TreeNode, parent: str | None, depth: int) -> Iterator[Record]:
    yield {
        "model": node.repo_id,
        "parent": parent,
        "relation": node.relation,
        "depth": depth,
        "rate": node.rate,
        "delta": node.delta,
        "drifted": node.drifted,
        "hidden_children": node.hidden,
    }
    for child in node.children:
        yield from _flatten(child, node.repo_id, depth + 1)
