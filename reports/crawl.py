"""The crawl summary: what changed in the family trees, and what it cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reports.emit import Record, Report, Section, emit
from reports.terminal import safe_text

if TYPE_CHECKING:
    from rich.console import Console


def crawl_report(summary: Mapping[str, Any]) -> Report:
    """A crawl's sections, named after the summary's keys: its totals (what it was and cost), the
    changes by family and relation, the tree's size per family, lineage defects, roots not found.

    The summary stays the store's plain dict (`crawlers.CrawlResult.summary`), read here by key.
    """
    totals = summary["totals"]
    strategy = summary.get("strategy") or {}
    scan = summary.get("scan") or {}
    confirmed = summary.get("confirmed") or {}
    about: dict[str, object] = {
        "crawl_id": summary["crawl_id"],
        "mode": summary.get("mode"),
        "strategy": strategy.get("strategy"),
        "resumed": bool(summary.get("resumed")),
        "requests": summary.get("requests"),
        **totals,
        **{f"scan_{k}": v for k, v in scan.items()},
        **{f"confirmed_{k}": v for k, v in confirmed.items()},
        "quota": describe_quota(summary.get("quota")) or None,
        "strategy_reason": strategy.get("reason"),
    }
    rows: dict[tuple[str, str], list[int]] = {}
    for m in summary["models"]:
        rows.setdefault((m["family"], m["relation"]), [0, 0, 0, 0, 0])[0:3] = [m["new"], m["changed"], m["removed"]]
    for e in summary["edges"]:
        rows.setdefault((e["family"], e["relation"]), [0, 0, 0, 0, 0])[3:5] = [e["added"], e["removed"]]
    all_row = [
        totals["models_new"],
        totals["models_changed"],
        totals["models_removed"],
        totals["edges_new"],
        totals["edges_removed"],
    ]
    changes: list[Record] = [
        dict(zip(CHANGE_COLUMNS, (family, relation, *values), strict=True))
        for (family, relation), values in [*sorted(rows.items()), (("all", ""), all_row)]
    ]
    tree: list[Record] = [{"family": family, "models": n} for family, n in summary["tree"].items()]
    defects: list[Record] = [{"defect": kind, "models": n} for kind, n in summary["defects"].items()]
    missing: list[Record] = [{"repo_id": r} for r in summary.get("missing_roots") or []]
    return Report(
        [
            Section("totals", "Crawl", [about], draw=lambda console: _draw_head(summary, console)),
            Section(
                "models",
                "Models and edges by family and relation",
                changes,
                columns=CHANGE_COLUMNS,
                draw=lambda console: _draw_changes(changes, console),
            ),
            Section(
                "tree", "Models in the tree", tree, fields=("family", "models"), draw=lambda c: _draw_tree(tree, c)
            ),
            Section(
                "defects",
                "Lineage defects in the store",
                defects,
                fields=("defect", "models"),
                optional=True,
                draw=lambda console: console.print(
                    "lineage defects in the store: "
                    + ", ".join(f"{safe_text(d['defect'])} {d['models']}" for d in defects)
                ),
            ),
            Section(
                "missing_roots",
                "Roots not found on the Hub",
                missing,
                fields=("repo_id",),
                optional=True,
                draw=lambda console: console.print(
                    "roots not found on the Hub: " + ", ".join(safe_text(r["repo_id"]) for r in missing)
                ),
            ),
        ],
        document=summary,
    )


CHANGE_COLUMNS = ("family", "relation", "models new", "changed", "removed", "edges added", "edges removed")


def render_crawl_summary(summary: Mapping[str, Any], *, fmt: str = "table") -> None:
    """Print a crawl's summary on stdout: tables (`table`), one JSON object (`json`), or every
    section of `crawl_report` as CSV or Markdown."""
    emit(crawl_report(summary), fmt)


def _draw_head(summary: Mapping[str, Any], console: Console) -> None:
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


def _draw_changes(changes: Sequence[Record], console: Console) -> None:
    from rich.table import Table

    table = Table(title="Models and edges by family and relation", title_justify="left")
    for column in CHANGE_COLUMNS[:2]:
        table.add_column(column)
    for column in CHANGE_COLUMNS[2:]:
        table.add_column(column, justify="right")
    for i, row in enumerate(changes):
        if i == len(changes) - 1:  # the totals, under a rule
            table.add_section()
        table.add_row(*(safe_text(row[c]) for c in CHANGE_COLUMNS))
    console.print(table)


def _draw_tree(tree: Sequence[Record], console: Console) -> None:
    from rich.table import Table

    table = Table(title="Models in the tree", title_justify="left")
    table.add_column("family")
    table.add_column("models", justify="right")
    for row in tree:
        table.add_row(safe_text(row["family"]), str(row["models"]))
    console.print(table)


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
