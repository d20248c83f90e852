"""The crawl summary: what changed in the family trees, and what it cost."""

from __future__ import annotations

import json
from typing import Any

from reports.terminal import make_console, safe_text


def render_crawl_summary(summary: dict[str, Any], *, fmt: str = "table") -> None:
    """Print a crawl's summary on stdout as tables (`table`) or one JSON object (`json`)."""
    if fmt == "json":
        print(json.dumps(summary, indent=2, default=str, sort_keys=True))
        return
    from rich.table import Table

    console = make_console()
    totals = summary["totals"]
    console.print(
        f"crawl {summary['crawl_id']} ({summary.get('mode', '?')}"
        f"{', resumed' if summary.get('resumed') else ''}): "
        f"{totals['models_in_tree']} models and {totals['edges_in_tree']} edges in the tree; "
        f"{summary['requests']} requests"
    )

    table = Table(title="Models and edges by family and relation", title_justify="left")
    for column in ("family", "relation"):
        table.add_column(column)
    for column in ("models new", "changed", "removed", "edges added", "edges removed"):
        table.add_column(column, justify="right")
    rows: dict[tuple[str, str], list[int]] = {}
    for m in summary["models"]:
        rows.setdefault((m["family"], m["relation"]), [0, 0, 0, 0, 0])[0:3] = [
            m["new"],
            m["changed"],
            m["removed"],
        ]
    for e in summary["edges"]:
        rows.setdefault((e["family"], e["relation"]), [0, 0, 0, 0, 0])[3:5] = [e["added"], e["removed"]]
    for (family, relation), values in sorted(rows.items()):
        table.add_row(safe_text(family), safe_text(relation), *(str(v) for v in values))
    table.add_section()
    table.add_row(
        "all",
        "",
        str(totals["models_new"]),
        str(totals["models_changed"]),
        str(totals["models_removed"]),
        str(totals["edges_new"]),
        str(totals["edges_removed"]),
    )
    console.print(table)

    tree = Table(title="Models in the tree", title_justify="left")
    tree.add_column("family")
    tree.add_column("models", justify="right")
    for family, n in summary["tree"].items():
        tree.add_row(safe_text(family), str(n))
    console.print(tree)

    if summary["defects"]:
        defects = ", ".join(f"{safe_text(k)} {v}" for k, v in summary["defects"].items())
        console.print(f"lineage defects in the store: {defects}")
    if summary.get("missing_roots"):
        console.print("roots not found on the Hub: " + ", ".join(safe_text(r) for r in summary["missing_roots"]))
