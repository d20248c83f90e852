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
    strategy = summary.get("strategy") or {}
    mode = summary.get("mode", "?") + (f", by {strategy['strategy']}" if strategy.get("strategy") else "")
    console.print(
        f"crawl {summary['crawl_id']} ({safe_text(mode)}"
        f"{', resumed' if summary.get('resumed') else ''}): "
        f"{totals['models_in_tree']} models and {totals['edges_in_tree']} edges in the tree; "
        f"{summary['requests']} requests"
    )
    if strategy.get("reason"):
        console.print(f"strategy: {safe_text(strategy['reason'])}")
    scan = summary.get("scan")
    if scan:
        console.print(
            f"scan: {scan['pages']:,} pages, {scan['hub_models']:,} models on the Hub,"
            f" {scan['indexed']:,} of them naming a base model"
        )
    quota_line = describe_quota(summary.get("quota"))
    if quota_line:
        console.print(quota_line)
    confirmed = summary.get("confirmed") or {}
    if confirmed:
        console.print(
            "models the crawl did not meet, asked on their detail route: "
            + ", ".join(f"{n} {safe_text(k).replace('_', ' ')}" for k, n in confirmed.items())
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


def describe_quota(quota: dict[str, Any] | None) -> str:
    """One line on the Hub's rate limit as the crawl met it.

    >>> describe_quota({"bucket": "api", "quota": 1000, "window_s": 300, "lowest_remaining": 12,
    ...                 "pauses": 1, "paused_s": 41.5, "rate_limited": 0})
    'api quota 1,000 per 300 s: lowest left 12; paused 1 time (41.5 s) for the window to reset; 0 answered 429'
    """
    if not quota:
        return ""
    bucket = quota["bucket"]
    if quota.get("quota") is None:
        head = f"{bucket} quota not announced by the Hub"
    else:
        lowest = quota.get("lowest_remaining")
        left = f"{lowest:,}" if isinstance(lowest, int) else "?"
        head = f"{bucket} quota {quota['quota']:,} per {quota['window_s']} s: lowest left {left}"
    pauses = quota.get("pauses", 0)
    plural = "s" if pauses != 1 else ""
    waited = f"; paused {pauses} time{plural} ({quota.get('paused_s', 0)} s) for the window to reset"
    return head + (waited if pauses else "; never paused") + f"; {quota.get('rate_limited', 0)} answered 429"
