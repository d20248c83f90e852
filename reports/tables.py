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
        print(json.dumps(list(records), indent=2, default=_json_default))
        return
    names = list(columns or (records[0].keys() if records else []))
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=list(records[0].keys()) if records else names, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for record in records:
            writer.writerow({k: _plain(v) for k, v in record.items()})
        print(buffer.getvalue(), end="")
        return
    if fmt == "markdown":
        print("| " + " | ".join(names) + " |")
        print("|" + "|".join("---" for _ in names) + "|")
        for record in records:
            cells = [strip_control(_plain(record.get(n))).replace("|", "\\|").replace("\n", " ") for n in names]
            print("| " + " | ".join(cells) + " |")
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name in names:
        table.add_column(name, overflow="fold")
    for record in records:
        table.add_row(*(safe_text(_plain(record.get(n))) for n in names))
    make_console().print(table)


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
