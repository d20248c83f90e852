"""The DuckDB storage format of store files: one the DuckDB CLI 1.5 and MotherDuck can read.

DuckDB 2.0 creates database files in a new storage format (storage version 69) that no DuckDB
before 2.0 can read ("Migrating to DuckDB 2.0", https://duckdb.org/docs/2.0/operations_manual/
migration.html: "By default, every new database file created by v2.0.0 uses this format"). Users
read the store with the duckdb CLI they have, and the newest before 2.0 is 1.5.x, which refuses
such a file ("Trying to read a database file with version number 69, but we can only read
versions between 64 and 68"); MotherDuck takes DuckDB clients 1.4.0 to 1.5.6
(https://motherduck.com/docs/troubleshooting/version-lifecycle-schedules/, "MotherDuck supports
DuckDB 1.5.6"). So new stores are created in the v1.5.0 format: the
`storage_compatibility_version` setting decides the format a database file is *created* in, and
an existing file keeps the format stored in it ("we never automatically upgrade the file"; duckdb
PR #15794, https://github.com/duckdb/duckdb/pull/15794, which also added `STORAGE_VERSION` to
`ATTACH`). Every feature the store uses (zstd column compression, table macros, views, sequences,
`ON CONFLICT`, JSON and list columns) works there: every test writes its stores in this format,
and tests/test_docs_sql.py reads one that a crawl and real audits wrote with the DuckDB CLI 1.5.

A store an earlier auditor created in the v2 format stays usable here, in that format (DuckDB never
lowers a file's format in place: attaching one with `STORAGE_VERSION 'v1.5.0'` fails with "The
storage version of an existing database cannot be lowered"). Opening it logs how to make it
readable by DuckDB 1.5 again: `auditor store rewrite` (`rewrite_store`), which copies it with
`COPY FROM DATABASE` (tables, views, macros and sequences with their current values) into a file
attached with `STORAGE_VERSION 'v1.5.0'`, and keeps the original beside it.

A file in a format the installed duckdb cannot read at all (written by a newer DuckDB) is refused
with a `StoreFormatError` that says which format and what to do.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from auditor.errors import StoreError, StoreFormatError
from auditor.store.sidecars import sidecars

log = logging.getLogger("auditor.store")

#: The format new store files are created in: the newest that DuckDB 1.5 reads.
STORAGE_VERSION = "v1.5.0"

# duckdb 2.0.1: "Trying to read a database file with storage version number 70, but we can only read
# storage versions between 64 and 69."; duckdb 1.x: "... with version number 69, but we can only read
# versions between 64 and 68." (duckdb src/storage/single_file_block_manager.cpp, MainHeader::Read).
_UNREADABLE = re.compile(
    r"database file with (?:storage )?version number (\d+), but we can only read (?:storage )?versions between"
    r" (\d+) and (\d+)"
)

_warned: set[Path] = set()


def _duckdb_version() -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", duckdb.__version__)[:3])


def connect_config() -> dict[str, Any]:
    """The duckdb config every store connection gets: new files in the `STORAGE_VERSION` format.

    duckdb before 1.5 does not know the name "v1.5.0" (the setting takes only versions it knows)
    and creates files in a format older than 1.5's anyway, which 1.5 reads: it gets no setting.
    """
    if _duckdb_version() < (1, 5):
        return {}
    return {"storage_compatibility_version": STORAGE_VERSION}


def unreadable_format(path: Path, err: duckdb.Error) -> StoreFormatError | None:
    """`err`, raised opening `path`, as a StoreFormatError when it says the file's storage format is
    newer than this duckdb reads; None for any other error."""
    found = _UNREADABLE.search(str(err))
    if found is None:
        return None
    number, lowest, highest = found.groups()
    what = (
        f"store {path} is in DuckDB storage format {number}, which the installed duckdb {duckdb.__version__}"
        f" cannot read (it reads formats {lowest} to {highest})"
    )
    if int(number) < int(lowest):
        # Before 0.10 every DuckDB release had its own format (duckdb.org/docs/internals/storage).
        return StoreFormatError(
            f"{what}: a DuckDB older than 0.10 wrote it",
            hint="this is not a store of this auditor; export it with the DuckDB that wrote it (EXPORT DATABASE)",
        )
    return StoreFormatError(
        f"{what}: a newer DuckDB wrote it",
        hint="upgrade duckdb to open it (pip install -U duckdb); once open with duckdb 2.0 or later,"
        " `auditor store rewrite` rewrites it in the v1.5.0 format that DuckDB 1.5 reads",
    )


def storage_format(con: duckdb.DuckDBPyConnection, database: str | None = None) -> str | None:
    """The storage format of an attached database (default: the connection's own) as DuckDB tags it
    ('v1.5.0', 'v2.0.0'), or None when this duckdb does not say (the `storage_version` tag came with
    duckdb PR #15702)."""
    try:
        rows = con.execute(
            "SELECT tags['storage_version'] FROM duckdb_databases()"
            " WHERE database_name = coalesce(?, current_database())",
            [database],
        ).fetchall()
    except duckdb.Error:
        return None
    tag = rows[0][0] if rows else None
    if isinstance(tag, list):  # `map[key]` gave a one-element list before duckdb 1.2 (duckdb PR #14175)
        tag = tag[0] if tag else None
    return str(tag).rstrip("+") if tag else None


def readable_by_duckdb_1_5(fmt: str | None) -> bool:
    """Whether DuckDB 1.5 reads a file of this format (unknown formats count as readable)."""
    numbers = tuple(int(part) for part in re.findall(r"\d+", fmt or ""))
    return not numbers or numbers < (2,)


def warn_if_unreadable_by_duckdb_1_5(path: Path, con: duckdb.DuckDBPyConnection) -> None:
    """Say once per process and file when the store is in a format the DuckDB CLI 1.5 cannot read."""
    if path in _warned:
        return
    _warned.add(path)
    fmt = storage_format(con)
    if not readable_by_duckdb_1_5(fmt):
        log.warning(
            "store %s is in DuckDB's %s storage format, which the DuckDB CLI 1.5 and MotherDuck cannot read;"
            " `auditor store rewrite --store %s` rewrites it in the %s format (the original is kept)",
            path,
            fmt,
            path,
            STORAGE_VERSION,
        )


@dataclass(frozen=True)
class Rewrite:
    """What `rewrite_store` did."""

    path: Path
    #: The format the file was in, and is in now.
    before: str | None
    after: str | None
    #: Where the original file was kept; None when the file was already readable and was left alone.
    kept: Path | None
    #: Rows per table, the same in both files.
    rows: dict[str, int]


def kept_path(path: Path) -> Path:
    """Where `rewrite_store` keeps the original file."""
    return sidecars(path).before_rewrite


def rewrite_store(path: Path, *, busy_timeout_s: float | None = None) -> Rewrite:
    """Rewrite the store at `path` in the `STORAGE_VERSION` format, keeping the original beside it.

    The copy is made while this process holds the file for writing (no other process can write to
    it meanwhile), checked table by table, and moved into place; the original is kept as
    `<store>.before-rewrite`. A file already in a format DuckDB 1.5 reads is left alone.

    >>> rewrite_store(Path("auditor.duckdb")).kept      # doctest: +SKIP
    PosixPath('auditor.duckdb.before-rewrite')
    """
    from auditor.store.database import Store

    kept = kept_path(path)
    fresh = sidecars(path).rewrite
    _warned.add(path)  # the warning would tell to run this very function
    with Store.open(path, busy_timeout_s=busy_timeout_s) as store, store.session() as con:
        before = storage_format(con)
        current = con.execute("SELECT current_database()").fetchall()[0][0]
        rows = _row_counts(con, current)
        if readable_by_duckdb_1_5(before):
            return Rewrite(path, before, before, None, rows)
        if kept.exists():
            raise StoreError(
                f"{kept} exists: an earlier rewrite kept the original there",
                hint="move it away (or delete it once the rewritten store has served you well), then run this again",
            )
        for leftover in (fresh, sidecars(path).rewrite_wal):
            leftover.unlink(missing_ok=True)  # from a rewrite that was interrupted
        con.execute("CHECKPOINT")
        con.execute("ATTACH ? AS rewritten (STORAGE_VERSION ?)", [str(fresh), STORAGE_VERSION])
        try:
            con.execute(f'COPY FROM DATABASE "{current}" TO rewritten')
            copied = _row_counts(con, "rewritten")
            after = storage_format(con, "rewritten")
        finally:
            con.execute("DETACH rewritten")
        if copied != rows:
            fresh.unlink(missing_ok=True)
            raise StoreError(
                f"rewriting {path} did not copy every row ({_differences(rows, copied)}); the store is unchanged",
                hint="report this with the output of `auditor --debug store rewrite`",
            )
        # Moved while this connection still holds the original, so that no other process writes to
        # it between the copy and the move: whoever opens the store from now on gets the copy.
        os.replace(path, kept)
        os.replace(fresh, path)
    _warned.discard(path)
    return Rewrite(path, before, after, kept, rows)


def _row_counts(con: duckdb.DuckDBPyConnection, database: str) -> dict[str, int]:
    """Rows per table of an attached database."""
    tables = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? AND NOT temporary", [database]
    ).fetchall()
    return {
        f"{schema}.{table}": int(
            con.execute(f'SELECT count(*) FROM "{database}"."{schema}"."{table}"').fetchall()[0][0]
        )
        for schema, table in tables
    }


def _differences(rows: dict[str, int], copied: dict[str, int]) -> str:
    return ", ".join(f"{name}: {rows[name]} -> {copied.get(name)}" for name in rows if copied.get(name) != rows[name])
