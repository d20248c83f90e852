"""The drift report: derivatives against their parents, most drifted first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reports.tables import render_records
from reports.terminal import make_console, safe_text

COLUMNS = (
    "child",
    "parent",
    "relation",
    "family",
    "downloads",
    "parent rate",
    "child rate",
    "change",
    "95% interval",
    "q",
    "drifted",
    "vs root",
)


def render_drift(rows: Sequence[Any], not_compared: Sequence[Any], *, fmt: str, threshold: float) -> None:
    """Print the drift rows; on a terminal, say which derivatives could not be compared and why."""
    if fmt in ("json", "csv"):
        render_records([r.to_dict() for r in rows], fmt=fmt)
        return
    display = [
        {
            "child": r.child,
            "parent": r.parent,
            "relation": r.relation or "",
            "family": r.family or "",
            "downloads": r.downloads,
            "parent rate": _pct(r.rate_parent),
            "child rate": _pct(r.rate_child),
            "change": _pp(r.delta),
            "95% interval": f"[{_pp(r.boot_low)}, {_pp(r.boot_high)}]",
            "q": f"{r.q_value:.3g}",
            "drifted": ("up" if r.delta > 0 else "down") if r.drifted else "",
            "vs root": _pp(r.delta_root) if r.delta_root is not None else "",
        }
        for r in rows
    ]
    title = f"Drift against the parent (toxic: score above {threshold:g}; intervals: paired bootstrap)"
    render_records(display, fmt=fmt, title=title, columns=COLUMNS)
    if fmt == "table" and not_compared:
        console = make_console()
        console.print(f"{len(not_compared)} audited derivatives could not be compared with a parent:")
        for item in not_compared[:10]:
            console.print(f"  {safe_text(item.child)} <- {safe_text(item.parent)}: {safe_text(item.reason)}")
        if len(not_compared) > 10:
            console.print(f"  ... and {len(not_compared) - 10} more")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _pp(value: float | None) -> str:
    return "" if value is None else f"{value * 100:+.1f} pp"
