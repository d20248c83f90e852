"""Rows of records as a terminal table, JSON, CSV or Markdown: one renderer for every report."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from auditor.textsafety import strip_control
from reports.terminal import make_console, safe_text

FORMATS = ("table", "json", "csv", "markdown")


def render_records(
    records: Sequence[dict[str, Any]], *, fmt: str, title: str | None = None, columns: Sequence[str] | None = None
) -> None:
    """Print `records` on stdout in `fmt`. Table and Markdown show `columns` (default: all)."""
    if fmt == "json":
        print(json.dumps(json_safe(list(records)), indent=2, default=_json_default))
        return
    names = list(columns or (records[0].keys() if records else []))
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=list(records[0].keys()) if records else names, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for record in records:
            writer.writerow({k: _csv_cell(v) for k, v in record.items()})
        print(buffer.getvalue(), end="")
        return
    if fmt == "markdown":
        print("| " + " | ".join(_md_cell(n) for n in names) + " |")
        print("|" + "|".join("---" for _ in names) + "|")
        for record in records:
            print("| " + " | ".join(_md_cell(_plain(record.get(n))) for n in names) + " |")
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name in names:
        table.add_column(safe_text(name), overflow="fold")
    for record in records:
        table.add_row(*(safe_text(_plain(record.get(n))) for n in names))
    make_console().print(table)


def _md_cell(text: str) -> str:
    """A Markdown table cell: no control sequences, backslashes and pipes escaped, one line."""
    return strip_control(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _csv_cell(value: Any) -> str:
    """A CSV cell without control sequences, and never read as a formula by a spreadsheet."""
    text = strip_control(_plain(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def json_safe(value: Any) -> Any:
    """NaN and infinities become null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
