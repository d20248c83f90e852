"""The DuckDB store: opening, migrating, and short write transactions.

This module (with its siblings in `auditor.store`) is the only place that imports duckdb. The
schema changes only through the numbered files in `migrations/`; each runs in its own transaction
and is recorded in `schema_migrations`. A file written by a newer auditor is refused rather than
misread.

DuckDB lets one process write a file at a time. Writers keep transactions short; a second writer,
or a reader while a writer holds the file, waits up to `busy_timeout_s` and then gets a
`StoreBusyError` that says so.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from auditor.errors import StoreBusyError, StoreError, StoreVersionError

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The schema migrations shipped with this version, in order."""
    found = []
    for entry in resources.files("auditor.store").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(f"migration numbering has a gap before {migration.version:04d}_{migration.name}")
    return found


def schema_version() -> int:
    """The newest schema version this code knows."""
    return migrations()[-1].version


class Store:
    """A DuckDB store file. Use as a context manager, or call `close()`.

    >>> with Store.open("auditor.duckdb") as store:      # doctest: +SKIP
    ...     store.query("SELECT count(*) FROM models")
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self._con = connection
        self.path = path
        self.read_only = read_only

    @classmethod
    def open(cls, path: Path | str, *, read_only: bool = False, busy_timeout_s: float = 5.0) -> Store:
        """Open (and for writers, create and migrate) the store at `path`."""
        path = Path(path)
        if read_only and not path.exists():
            raise StoreError(
                f"no store at {path}", hint="run `auditor crawl` first, or pass --store with the right path"
            )
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        connection = _connect(path, read_only=read_only, busy_timeout_s=busy_timeout_s)
        store = cls(connection, path, read_only)
        try:
            store._migrate()
        except BaseException:
            connection.close()
            raise
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._con.close()

    # -- schema ---------------------------------------------------------------------------------

    def version(self) -> int:
        """The schema version of the open file (0 for an empty file)."""
        exists = self._con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        ).fetchone()
        if not exists or exists[0] == 0:
            return 0
        row = self._con.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _migrate(self) -> None:
        current = self.version()
        known = schema_version()
        if current > known:
            raise StoreVersionError(
                f"store {self.path} has schema version {current}, newer than this auditor knows ({known})",
                hint="upgrade the auditor (pip install -U hub-auditor) or point --store at another file",
            )
        pending = [m for m in migrations() if m.version > current]
        if not pending:
            return
        if self.read_only:
            raise StoreError(
                f"store {self.path} is at schema version {current} and needs migrating to {known}",
                hint="run any writing command once (for example `auditor store migrate`)",
            )
        for migration in pending:
            with self.transaction():
                if migration.version == 1:
                    self._con.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
                    )
                self._con.execute(migration.sql)
                self._con.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, now())", [migration.version, migration.name]
                )

    # -- access ---------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction: everything inside lands together or not at all."""
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only", hint="open it without read_only to write")
        self._con.execute("BEGIN TRANSACTION")
        try:
            yield self._con
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The raw connection, for modules of `auditor.store` only."""
        return self._con

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one read query and return its rows."""
        return self._con.execute(sql, params or []).fetchall()

    def run_read_query(self, sql: str) -> list[dict[str, Any]]:
        """One user query: a single SELECT (or WITH ... SELECT) on a read-only store, with no access to
        files or other databases, so that it can read the store and nothing else."""
        if not self.read_only:
            raise StoreError("user queries run on a read-only store", hint="open the store with read_only=True")
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as err:
            raise StoreError(f"the query does not parse: {err}", hint="check the SQL") from None
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise StoreError(
                "only one SELECT query is allowed here",
                hint="run writes, COPY, ATTACH or PRAGMA with the duckdb CLI on a copy of the store",
            )
        self._con.execute("SET enable_external_access = false")
        self._con.execute("SET lock_configuration = true")
        try:
            return self.query_dicts(sql)
        except duckdb.Error as err:
            raise StoreError(
                f"the query failed: {err}", hint="check the SQL; the tables and views are listed in the README"
            ) from None

    def query_dicts(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one read query and return its rows as dicts keyed by column name."""
        cursor = self._con.execute(sql, params if params is not None else [])
        names = _unique([d[0] for d in cursor.description or []])
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _unique(names: list[str]) -> list[str]:
    """Column names made unique (a second `parent` becomes `parent_2`), so no column is lost."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


@contextmanager
def staged(con: duckdb.DuckDBPyConnection, tables: dict[str, Any]) -> Iterator[None]:
    """Expose Arrow tables to SQL under the given names for the duration of the block."""
    for name, table in tables.items():
        con.register(name, table)
    try:
        yield
    finally:
        for name in tables:
            try:
                con.unregister(name)
            except duckdb.Error:
                pass  # an aborted transaction drops the view with its rollback


def _connect(path: Path, *, read_only: bool, busy_timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + busy_timeout_s
    delay = 0.05
    while True:
        try:
            connection = duckdb.connect(str(path), read_only=read_only)
            connection.execute("SET TimeZone = 'UTC'")
            return connection
        except duckdb.IOException as err:
            if "lock" not in str(err).lower():
                raise StoreError(f"cannot open store {path}: {err}") from None
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"store {path} is busy: another auditor process is writing to it",
                    hint="wait for that process (a crawl or nightly cycle) to finish, then try again",
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        except duckdb.Error as err:
            raise StoreError(
                f"cannot open store {path}: {err}", hint="check that the file is an auditor DuckDB store"
            ) from None
