"""The DuckDB store: opening, migrating, and short write transactions.

This module (with its siblings in `auditor.store`) is the only place that imports duckdb. The
schema changes only through the numbered files in `migrations/`; each runs in its own transaction
and is recorded in `schema_migrations`. A file written by a newer auditor is refused rather than
misread. New files are created in DuckDB's v1.5.0 storage format, which the DuckDB CLI 1.5 reads
(`auditor.store.fileformat`).

DuckDB lets one process open a file for writing at a time, and while it has the file open no other
process can read it. So a writer holds its connection as a lease: opened when a session needs it,
and closed whenever it is idle and a reader is waiting. A reader that finds the file locked says
so by holding a shared `flock` on `<store>.readers`; the writer's watcher thread sees that within
a tenth of a second, closes the connection at the next moment no session is using it (its last
transaction is committed, so the reader sees only whole transactions), and reopens it when the
next session starts, after the reader has its connection. A reader waits up to
`[store] read_wait_s`, a writer up to `write_wait_s`, then gets a `StoreBusyError` that says so.
Code outside this package reaches the connection only inside `Store.session()` or
`Store.transaction()`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from auditor.errors import StoreBusyError, StoreError, StoreVersionError
from auditor.store.fileformat import connect_config, unreadable_format, warn_if_unreadable_by_duckdb_1_5
from auditor.store.sidecars import sidecars

if TYPE_CHECKING:
    from auditor.config import StoreSettings

log = logging.getLogger("auditor.store")

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


#: A user query (`auditor sql`, `Store.run_read_query`) is stopped after this many seconds unless
#: its caller allows longer, and reads at most this many rows.
USER_QUERY_TIMEOUT_S = 30.0
USER_QUERY_ROW_LIMIT = 10_000
#: How long a stopped query may still hold the file after its timeout: DuckDB sees the interrupt at
#: its next vector (milliseconds), the connection is closed at once, and a waiting writer retries
#: at least every half second (`_connect`).
USER_QUERY_STOP_MARGIN_S = 5.0
#: How long a reader waits for a writer to let go, and a writer for readers, by default. A reader
#: cannot be asked to let go (DuckDB gives a writer no way to tell it), so a writer that finds one
#: simply waits. `WRITE_WAIT_S` (like `[store] write_wait_s`, 600 s by default) must stay well above
#: USER_QUERY_TIMEOUT_S + USER_QUERY_STOP_MARGIN_S: then a user query at the default timeout holds a
#: writer out for at most its timeout, and never long enough to make the writer give up with
#: "store is busy" (tests/auditor/test_sql_limits.py holds both defaults to that).
READ_WAIT_S = 10.0
WRITE_WAIT_S = 600.0
#: How often a writer's watcher looks for waiting readers.
WATCH_INTERVAL_S = 0.05


@dataclass(frozen=True)
class QueryResult:
    """A user query's rows (`Store.run_read_query`), at most its limit, and whether it had more."""

    records: list[dict[str, Any]]
    truncated: bool


class Store:
    """A DuckDB store file. Use as a context manager, or call `close()`.

    >>> with Store.open("auditor.duckdb") as store:      # doctest: +SKIP
    ...     store.query("SELECT count(*) FROM models")
    """

    def __init__(self, path: Path, read_only: bool, busy_timeout_s: float) -> None:
        self.path = path
        self.read_only = read_only
        self.busy_timeout_s = busy_timeout_s
        self._con: duckdb.DuckDBPyConnection | None = None
        self._users = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        #: How many times this writer let a waiting reader in (for tests and benchmarks).
        self.yields = 0

    @classmethod
    def open(cls, path: Path | str, *, read_only: bool = False, busy_timeout_s: float | None = None) -> Store:
        """Open (and for writers, create and migrate) the store at `path`."""
        path = Path(path)
        if read_only and not path.exists():
            raise StoreError(
                f"no store at {path}", hint="run `auditor crawl` first, or pass --store with the right path"
            )
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
            _readers_file(path).touch(exist_ok=True)
        timeout = busy_timeout_s if busy_timeout_s is not None else (READ_WAIT_S if read_only else WRITE_WAIT_S)
        store = cls(path, read_only, timeout)
        try:
            with store.session() as con:
                store._migrate()
                warn_if_unreadable_by_duckdb_1_5(path, con)
        except BaseException:
            store.close()
            raise
        if not read_only:
            store._watcher = threading.Thread(target=store._watch, name=f"store-lease:{path.name}", daemon=True)
            store._watcher.start()
        return store

    @classmethod
    def open_configured(cls, settings: StoreSettings, *, read_only: bool = False) -> Store:
        """Open the store that `[store]` names, waiting as long as it says when the file is busy."""
        wait = settings.read_wait_s if read_only else settings.write_wait_s
        return cls.open(settings.path, read_only=read_only, busy_timeout_s=wait)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    # -- the lease ------------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection, held for the block: a writer does not let readers in until it ends.

        Sessions nest. Keep them short, around database work only: never around a download,
        a model load or generation.
        """
        with self._lock:
            if self._closed.is_set():
                raise StoreError(f"store {self.path} is closed", hint="open it again with Store.open")
            if self._con is None:
                self._con = _connect(self.path, read_only=self.read_only, busy_timeout_s=self.busy_timeout_s)
            self._users += 1
            con = self._con
        try:
            yield con
        finally:
            with self._lock:
                self._users -= 1

    def _watch(self) -> None:
        signal = _readers_file(self.path)
        handle = None
        while not self._closed.wait(WATCH_INTERVAL_S):
            if self._con is None or self._users:
                continue
            if handle is None:
                try:
                    handle = open(signal, "rb")  # noqa: SIM115 (kept open across probes)
                except OSError:
                    continue
            if not _held(handle.fileno()):
                continue
            with self._lock:
                if self._con is not None and self._users == 0:
                    self._con.close()
                    self._con = None
                    self.yields += 1
        if handle is not None:
            handle.close()

    # -- schema ---------------------------------------------------------------------------------

    def version(self) -> int:
        """The schema version of the open file (0 for an empty file)."""
        exists = self.query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'")
        if not exists or exists[0][0] == 0:
            return 0
        rows = self.query("SELECT max(version) FROM schema_migrations")
        row = rows[0] if rows else None
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
            with self.transaction() as con:
                if migration.version == 1:
                    con.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
                    )
                con.execute(migration.sql)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [migration.version, migration.name])

    # -- access ---------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction: everything inside lands together or not at all."""
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only", hint="open it without read_only to write")
        with self.session() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one read query and return its rows."""
        with self.session() as con:
            return con.execute(sql, params if params is not None else []).fetchall()

    def run_read_query(
        self, sql: str, *, timeout_s: float = USER_QUERY_TIMEOUT_S, limit: int = USER_QUERY_ROW_LIMIT
    ) -> QueryResult:
        """One user query: a single SELECT (or WITH ... SELECT) on a read-only store, with no access to
        files or other databases, so that it can read the store and nothing else.

        It may hold the file for `timeout_s` seconds: a timer then interrupts it and its connection
        is closed at once, which lets a waiting writer (a cycle) in, and a `StoreError` says it was
        stopped. At most `limit` rows are fetched, and one more to learn whether there were more
        (`QueryResult.truncated`): a query of a million rows is never read whole.

        >>> with Store.open("auditor.duckdb", read_only=True) as store:        # doctest: +SKIP
        ...     result = store.run_read_query("SELECT repo_id FROM models", timeout_s=5, limit=10)
        >>> len(result.records), result.truncated                              # doctest: +SKIP
        (10, True)
        """
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
        stopped = threading.Event()
        try:
            with self.session() as con:
                con.execute("SET enable_external_access = false")
                con.execute("SET lock_configuration = true")

                def stop() -> None:
                    stopped.set()
                    # duckdb 2.0.1's `DuckDBPyConnection.interrupt() -> None`, "Interrupt pending
                    # operations" (_duckdb-stubs/__init__.pyi, class DuckDBPyConnection), called from
                    # this timer thread: the query running in the caller's thread raises
                    # `duckdb.InterruptException` ("INTERRUPT Error: Interrupted!") at its next vector.
                    con.interrupt()

                timer = threading.Timer(timeout_s, stop)
                timer.daemon = True
                timer.start()
                try:
                    # duckdb streams a result: `execute` returns once the first rows are ready, and
                    # `fetchmany` computes no more rows than it returns.
                    cursor = con.execute(sql)
                    names = _unique([d[0] for d in cursor.description or []])
                    rows = cursor.fetchmany(limit + 1)
                finally:
                    timer.cancel()
                    timer.join()  # an interrupt under way ends before the connection is closed
        except duckdb.Error as err:
            if stopped.is_set():
                raise StoreError(
                    f"the query was stopped after {timeout_s:g} s, its time limit (--timeout {timeout_s:g}),"
                    " so that it would not keep writers out of the store",
                    hint="allow it longer with `auditor sql --timeout SECONDS` (timeout_s= in Python),"
                    " or narrow it (a WHERE, fewer joins)",
                ) from None
            raise StoreError(
                f"the query failed: {err}", hint="check the SQL; the tables and views are listed in the README"
            ) from None
        finally:
            # Closed at once, stopped or not: a waiting writer gets the file now, and the next query
            # gets a fresh connection (this one's settings are locked, and an interrupt that raced
            # the query's end would stop the next one).
            self._drop_connection()
        records = [dict(zip(names, row, strict=True)) for row in rows[:limit]]
        return QueryResult(records, truncated=len(rows) > limit)

    def _drop_connection(self) -> None:
        """Close the connection now unless a session uses it; the next session opens a new one."""
        with self._lock:
            if self._con is not None and self._users == 0:
                self._con.close()
                self._con = None

    def query_dicts(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one read query and return its rows as dicts keyed by column name."""
        with self.session() as con:
            cursor = con.execute(sql, params if params is not None else [])
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


def remove_if_empty(path: Path) -> bool:
    """Delete the store at `path` (and the files the store keeps beside it) when it holds nothing but
    its schema, as a command leaves it that failed before storing anything; returns whether it did.

    A store held by another process is left alone. It is deleted while this connection holds it,
    so no other process can start writing to it in between; one that opens it later makes a new one.
    """
    if not path.exists():
        return False
    try:
        con = _connect(path, read_only=False, busy_timeout_s=0)
    except StoreError:
        return False
    try:
        tables = con.execute(
            "SELECT table_name FROM duckdb_tables()"
            " WHERE database_name = current_database() AND table_name <> 'schema_migrations'"
        ).fetchall()
        for (table,) in tables:
            if con.execute(f'SELECT EXISTS (SELECT 1 FROM "{table}")').fetchall()[0][0]:
                return False
        path.unlink()
        sidecars(path).wal.unlink(missing_ok=True)
    finally:
        con.close()
    _readers_file(path).unlink(missing_ok=True)
    return True


def _readers_file(path: Path) -> Path:
    return sidecars(path).readers


def _held(fd: int) -> bool:
    """Whether some reader holds its shared lock on the signal file (we cannot get ours)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _connect(path: Path, *, read_only: bool, busy_timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + busy_timeout_s
    delay = 0.02
    waiting: int | None = None  # a reader's signal: an fd holding a shared lock on `<store>.readers`
    told = False
    if not read_only:
        _defer_to_readers(path, deadline)
    try:
        while True:
            try:
                connection = duckdb.connect(str(path), read_only=read_only, config=connect_config())
                connection.execute("SET TimeZone = 'UTC'")
                return connection
            except duckdb.IOException as err:
                unreadable = unreadable_format(path, err)
                if unreadable is not None:
                    raise unreadable from None
                if "lock" not in str(err).lower():
                    raise StoreError(f"cannot open store {path}: {err}") from None
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"store {path} is busy: another process has held it for {busy_timeout_s:g} s"
                        + (" and did not let this reader in" if read_only else ""),
                        hint="an older auditor, or a duckdb session opened for writing, does not let readers in;"
                        " wait for it to finish, or raise [store] read_wait_s / write_wait_s"
                        if read_only
                        else "a reader (a report, `auditor sql`, a notebook) or another writer holds it;"
                        " close it, or raise [store] write_wait_s",
                    ) from None
                if read_only and waiting is None:
                    waiting = _signal_waiting(path)
                if not read_only and not told and time.monotonic() > deadline - busy_timeout_s + 3:
                    told = True
                    log.warning(
                        "store %s is busy (a reader, or another writer, has it open); waiting up to %g s",
                        path,
                        busy_timeout_s,
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.1 if read_only else 0.5)
            except duckdb.Error as err:
                if "different configuration" in str(err):
                    raise StoreError(
                        f"this process already has store {path} open " + ("for writing" if read_only else "read-only"),
                        hint="use the Store this process already has open",
                    ) from None
                raise StoreError(
                    f"cannot open store {path}: {err}", hint="check that the file is an auditor DuckDB store"
                ) from None
    finally:
        if waiting is not None:
            os.close(waiting)


def _signal_waiting(path: Path) -> int | None:
    """Tell the writer a reader waits: a shared lock on the signal file, held until we connect."""
    try:
        fd = os.open(_readers_file(path), os.O_RDONLY)
    except OSError:
        return None  # no signal file (an older writer) or no permission: we can only wait
    fcntl.flock(fd, fcntl.LOCK_SH)  # blocks only for the instant a writer's probe holds it
    return fd


def _defer_to_readers(path: Path, deadline: float) -> None:
    """A writer about to reopen lets readers that are waiting connect first (for a few seconds)."""
    try:
        fd = os.open(_readers_file(path), os.O_RDONLY)
    except OSError:
        return
    try:
        until = min(deadline, time.monotonic() + 5.0)
        while _held(fd) and time.monotonic() < until:
            time.sleep(0.02)
    finally:
        os.close(fd)
