"""One writer for every report and every format: a report is a list of named sections.

A `Section` is one block of a report: a name (the JSON key and the CSV marker), a title (the table's
title and the Markdown heading), its records (the data: what JSON and CSV carry, every field), and
optionally the rows as a person reads them (`shown`, with `columns`: what the table and Markdown show).
`emit(report, fmt)` prints it on stdout:

- `table`: each section as a rich table under its title, or drawn by the section's own `draw` (a
  tree, a summary line, a table with a content warning); an `optional` section with no records is
  left out, as it always was on the terminal.
- `json`: the report's `document` when it has one (the record's own shape, which scripts rely on:
  its top-level keys include every section's name), else one object keyed by section name, or, for a
  report of one section, that section's list. Datetimes are ISO 8601 (`2025-01-31T02:00:00+00:00`),
  NaN and infinities null, dataclasses objects; one converter does it for every report.
- `csv`: a report of one section is a plain CSV table (header, rows), so spreadsheets and
  `csv.DictReader` read it as they always did. A report of several sections is a stream of tables:
  each starts with a line `# <section name>`, then its header and rows, and a blank line separates
  one from the next (split on the blank lines, or read the `# ` lines as markers). Every section is
  written, an empty one as its header alone (or its marker alone, when nothing says its columns).
  Cells carry no control sequences, never start a spreadsheet formula, and nested values (a dict
  of rates) are JSON.
- `markdown`: a report of one section is a bare table; with several, each section is a `## <title>`
  heading, its note (a content warning) in italics, and a table (or `_none_` when it has no rows and
  no known columns).

Every section appears in every format: `tests/reports/test_emit.py` holds each report to it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from auditor.textsafety import strip_control
from reports.terminal import make_console, safe_text

if TYPE_CHECKING:
    from rich.console import Console

Format = Literal["table", "json", "csv", "markdown"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv", "markdown")

Record = Mapping[str, object]

#: What `document` stands for when the report's JSON is built from its sections.
_FROM_SECTIONS = object()


@dataclass(frozen=True)
class Section:
    """One named block of a report; see the module's docstring."""

    name: str
    title: str
    records: Sequence[Record]
    #: What the table and Markdown show, in order (default: the keys of the first shown row).
    columns: Sequence[str] | None = None
    #: The rows as a person reads them (formatted rates, clipped text); default: `records`.
    shown: Sequence[Record] | None = None
    #: The CSV header when there are no records (default: `columns`).
    fields: Sequence[str] | None = None
    #: The table format's own drawing of this section, instead of a rich table under `title`.
    draw: Callable[[Console], None] | None = None
    #: Left out of the table when it has no records (the other formats always carry it).
    optional: bool = False
    #: A line Markdown prints under the heading (the table's `draw` prints its own).
    note: str | None = None

    @property
    def rows(self) -> Sequence[Record]:
        return self.records if self.shown is None else self.shown

    def shown_columns(self) -> list[str]:
        rows = self.rows
        return list(self.columns or (rows[0].keys() if rows else []))

    def csv_fields(self) -> list[str]:
        return list(self.records[0].keys() if self.records else (self.fields or self.columns or []))


@dataclass(frozen=True)
class Report:
    """A report: its sections in the order a person reads them, and optionally its JSON document."""

    sections: Sequence[Section]
    document: object = _FROM_SECTIONS


def emit(report: Report | Sequence[Section], fmt: str) -> None:
    """Print `report` on stdout in `fmt` (one of `FORMATS`).

    >>> emit([Section("pairs", "Pairs", [{"child": "a/b", "delta": 0.25}])], "csv")
    child,delta
    a/b,0.25
    """
    if not isinstance(report, Report):
        report = Report(list(report))
    sections = list(report.sections)
    if fmt == "json":
        print(json.dumps(to_json(_document(report)), indent=2))
    elif fmt == "csv":
        print(_csv(sections), end="")
    elif fmt == "markdown":
        print(_markdown(sections), end="")
    elif fmt == "table":
        _table(sections)
    else:
        raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")


def _document(report: Report) -> object:
    if report.document is not _FROM_SECTIONS:
        return report.document
    if len(report.sections) == 1:
        return list(report.sections[0].records)
    return {s.name: list(s.records) for s in report.sections}


def to_json(value: object) -> object:
    """`value` as plain JSON data: ISO 8601 datetimes, NaN and infinities null, dataclasses as objects.

    >>> to_json({"at": datetime(2025, 1, 31, 2, 0), "rate": float("nan")})
    {'at': '2025-01-31T02:00:00', 'rate': None}
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return str(value)  # Decimal, UUID, timedelta: their text


def _csv(sections: Sequence[Section]) -> str:
    buffer = io.StringIO()
    several = len(sections) > 1
    for i, section in enumerate(sections):
        if several:
            buffer.write(("\n" if i else "") + f"# {strip_control(section.name)}\n")
        names = section.csv_fields()
        writer = csv.DictWriter(buffer, fieldnames=names, extrasaction="ignore", lineterminator="\n")
        if names:
            writer.writeheader()
        for record in section.records:
            writer.writerow({k: _csv_cell(v) for k, v in record.items()})
    return buffer.getvalue()


def _markdown(sections: Sequence[Section]) -> str:
    lines: list[str] = []
    several = len(sections) > 1
    for i, section in enumerate(sections):
        if several:
            lines += ([""] if i else []) + [f"## {_md_cell(section.title)}", ""]
            if section.note:
                lines += [f"_{_md_cell(section.note)}_", ""]
        names = section.shown_columns()
        if not names:
            lines.append("_none_")
            continue
        lines.append("| " + " | ".join(_md_cell(n) for n in names) + " |")
        lines.append("|" + "|".join("---" for _ in names) + "|")
        for row in section.rows:
            lines.append("| " + " | ".join(_md_cell(plain(row.get(n))) for n in names) + " |")
    return "".join(line + "\n" for line in lines)


def _table(sections: Sequence[Section]) -> None:
    for section in sections:
        if section.optional and not section.records:
            continue
        if section.draw is not None:
            section.draw(make_console())
        else:
            print_table(section, make_console())


def print_table(section: Section, console: Console, *, title: str | None = None) -> None:
    """`section` as a rich table under its title (or `title`): untrusted text inert, numbers short.

    Titles are plain text (a repo id in one is shown as written), like every cell.
    """
    from rich.table import Table

    heading = section.title if title is None else title
    table = Table(title=safe_text(heading) if heading else None, title_justify="left")
    names = section.shown_columns()
    for name in names:
        table.add_column(safe_text(name), overflow="fold")
    for row in section.rows:
        table.add_row(*(safe_text(plain(row.get(n))) for n in names))
    console.print(table)


def _md_cell(text: str) -> str:
    """A Markdown table cell: no control sequences, backslashes and pipes escaped, one line."""
    return strip_control(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _csv_cell(value: object) -> str:
    """A CSV cell without control sequences, and never read as a formula by a spreadsheet."""
    text = strip_control(json.dumps(to_json(value)) if isinstance(value, Mapping | list | tuple) else plain(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def plain(value: object) -> str:
    """A value as a cell's text: nothing for None and NaN, four significant digits, ISO datetimes."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)
