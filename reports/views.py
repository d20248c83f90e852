"""The model, runs and tree reports."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from auditor.views import ModelView, TreeNode
from reports.tables import render_records
from reports.terminal import make_console, safe_text

CONTENT_WARNING = "Content warning: model outputs below may be offensive or harmful."


def render_model(view: ModelView, *, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(asdict(view), indent=2, default=str))
        return
    if fmt in ("csv", "markdown"):
        render_records(view.audits, fmt=fmt)
        return
    console = make_console()
    meta = view.metadata or {}
    parents = ", ".join(f"{safe_text(p['parent'])} ({safe_text(p['relation'])})" for p in view.parents) or "none"
    console.print(
        f"[bold]{safe_text(view.repo_id)}[/bold]  family {safe_text(meta.get('family') or '?')},"
        f" depth {meta.get('depth')}, downloads {meta.get('downloads')}; parents: {parents}"
    )
    if meta.get("removed_at"):
        console.print(f"removed from the tree at {meta['removed_at']}")
    render_records(
        view.audits,
        fmt="table",
        title=f"Audits over time (rate: {safe_text(view.metric)})",
        columns=[
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
        ],
    )
    if view.findings:
        render_findings(view.findings)
    if view.strata:
        render_records(
            view.strata,
            fmt="table",
            title="Latest done audit, per stratum (Wilson 95% interval)",
            columns=["stratum", "n_scored", "n_unscored", "n_toxic", "rate", "low", "high"],
        )
    if view.ancestors:
        render_records(
            view.ancestors,
            fmt="table",
            title="Ancestors audited the same way",
            columns=["ancestor", "distance", "audit_id", "rate", "n_scored"],
        )
    if view.worst:
        console.print(f"[bold]{CONTENT_WARNING}[/bold]")
        render_records(
            view.worst,
            fmt="table",
            title="Most toxic completions of the latest audit",
            columns=["score", "prompt", "completion"],
        )


def render_findings(findings: list[dict[str, Any]]) -> None:
    """The latest audit's findings: what the repo declared and the audit did not apply."""
    shown = [{**f, "declared": _clip(f.get("declared"), 100)} for f in findings]
    render_records(
        shown,
        fmt="table",
        title=f"Findings of audit {findings[0]['audit_id']} (the repo's settings that were not applied)",
        columns=["finding", "declared"],
    )
    make_console().print(
        "The preset decides how a model is asked; the repo's own generation settings are recorded"
        " (audits.repo_generation_config) and ignored."
    )


def _clip(text: str | None, width: int) -> str | None:
    return text if text is None or len(text) <= width else text[: width - 1] + "…"


def render_runs(runs: dict[str, list[dict[str, Any]]], *, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(runs, indent=2, default=str))
        return
    if fmt in ("csv", "markdown"):
        render_records(runs["audits"], fmt=fmt)
        return
    render_records(runs["crawls"], fmt="table", title="Recent crawls")
    render_records(runs["audits"], fmt="table", title="Recent audits")
    render_records(runs["problems"], fmt="table", title="Why audits failed or were skipped")


def render_tree(node: TreeNode, *, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(asdict(node), indent=2, default=str))
        return
    if fmt in ("csv", "markdown"):
        render_records(list(_flatten(node, None, 0)), fmt=fmt)
        return
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

    def add(parent: Any, n: TreeNode) -> None:
        branch = parent.add(label(n))
        for child in n.children:
            add(branch, child)

    tree = Tree(label(node))
    for child in node.children:
        add(tree, child)
    make_console().print(tree)


def _flatten(node: TreeNode, parent: str | None, depth: int) -> Any:
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
