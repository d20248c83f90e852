"""Rows of records in any format: the one-section case of `reports.emit`, kept for the `sql` command."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reports.emit import FORMATS, Section, emit

__all__ = ["FORMATS", "render_records"]


def render_records(
    records: Sequence[Mapping[str, object]],
    *,
    fmt: str,
    title: str | None = None,
    columns: Sequence[str] | None = None,
) -> None:
    """Print `records` on stdout in `fmt`. Table and Markdown show `columns` (default: all); JSON and
    CSV carry every field.

    >>> render_records([{"repo_id": "a/b", "rate": 0.5}], fmt="json")
    [
      {
        "repo_id": "a/b",
        "rate": 0.5
      }
    ]
    """
    emit([Section("records", title or "", records, columns=columns)], fmt)
