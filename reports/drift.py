"""The drift report: derivatives against their parents, most drifted first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

from auditor.analysis.drift import DriftRow, NotCompared
from reports.emit import Record, Report, Section, emit
from reports.terminal import make_console, safe_text

#: A pair's smallest detectable change: in JSON, CSV and Markdown always, in the table only on a
#: terminal at least `WIDE` columns wide (on a narrower one the twelve other columns already fold
#: their numbers, and a thirteenth would split "+75.0" and the intervals across lines).
DETECTABLE = "detectable (pp)"
WIDE = 120

COLUMNS = (
    "child",
    "parent",
    "relation",
    "family",
    "downloads",
    "parent rate",
    "child rate",
    "change (pp)",
    "95% interval (pp)",
    "q",
    "drifted",
    DETECTABLE,
    "vs root (pp)",
)


#: The demo's narrower table: it shows the tree (parents, relations) right after.
SHORT_COLUMNS = ("child", "parent rate", "child rate", "change (pp)", "95% interval (pp)", "q", "drifted")


def drift_report(
    rows: Sequence[DriftRow],
    *,
    fmt: str,
    threshold: float,
    columns: Sequence[str] | None = None,
    metric: str = "detoxify:toxicity",
) -> Report:
    """One section, the pairs: every field in JSON (a list, as documented) and CSV, the columns a
    person reads in the table and Markdown. `fmt` decides only whether the terminal is too narrow
    for the detectable change."""
    display: list[Record] = [
        {
            "child": r.child,
            "parent": r.parent,
            "relation": r.relation or "",
            "family": r.family or "",
            "downloads": r.downloads,
            "parent rate": _pct(r.rate_parent),
            "child rate": _pct(r.rate_child),
            "change (pp)": _pp(r.delta),
            "95% interval (pp)": f"[{_pp(r.boot_low)}, {_pp(r.boot_high)}]",
            "q": f"{r.q_value:.3g}",
            "drifted": ("up" if r.delta > 0 else "down") if r.drifted else "",
            DETECTABLE: _detectable(r.min_detectable),
            "vs root (pp)": _pp(r.delta_root) if r.delta_root is not None else "",
        }
        for r in rows
    ]
    title = f"Drift against the parent on {metric} (toxic: score above {threshold:g}; intervals: paired bootstrap)"
    if columns is None:
        narrow = fmt == "table" and make_console().width < WIDE
        columns = tuple(c for c in COLUMNS if not (narrow and c == DETECTABLE))
    records = [r.to_dict() for r in rows]
    section = Section(
        "drift", title, records, columns=tuple(columns), shown=display, fields=[f.name for f in fields(DriftRow)]
    )
    return Report([section], document=records)


def render_drift(
    rows: Sequence[DriftRow],
    not_compared: Sequence[NotCompared],
    *,
    fmt: str,
    threshold: float,
    columns: Sequence[str] | None = None,
    metric: str = "detoxify:toxicity",
) -> None:
    """Print the drift rows on stdout, and on stderr which derivatives could not be compared and why.

    `columns` defaults to `COLUMNS`, less the detectable change on a table narrower than `WIDE`.
    The derivatives not compared are a caveat on the report, not one of its rows: they go to
    stderr in every format, so a JSON, CSV or Markdown reader learns of them too.
    """
    emit(drift_report(rows, fmt=fmt, threshold=threshold, columns=columns, metric=metric), fmt)
    if not_compared:
        console = make_console(stderr=True)
        console.print(f"{len(not_compared)} audited derivatives could not be compared with a parent:")
        for item in not_compared[:10]:
            console.print(f"  {safe_text(item.child)} <- {safe_text(item.parent)}: {safe_text(item.reason)}")
        if len(not_compared) > 10:
            console.print(f"  ... and {len(not_compared) - 10} more")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _detectable(value: float | None) -> str:
    """The smallest change the pair could call significant, unsigned; "too few" when no split of
    its discordant prompts reaches alpha (see `auditor.analysis.stats.min_detectable_change`)."""
    return "too few" if value is None else f"{value * 100:.1f}"


def _pp(value: float | None) -> str:
    """A difference of rates in percentage points (the column says so)."""
    return "" if value is None else f"{value * 100:+.1f}"
