"""The DuckDB store: migrations, version checks, busy files."""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.errors import StoreBusyError, StoreError, StoreFormatError, StoreVersionError
from auditor.store import Store, schema_version
from auditor.store.database import remove_if_empty
from auditor.store.fileformat import (
    STORAGE_VERSION,
    connect_config,
    kept_path,
    readable_by_duckdb_1_5,
    storage_format,
)
from tests.helpers.stores import store_at_schema

PUBLIC = {"models", "lineage", "lineage_defects", "crawl_runs", "model_changes", "lineage_changes"}


def test_a_new_store_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        assert store.version() == schema_version()
        tables = {r[0] for r in store.query("SELECT table_name FROM information_schema.tables")}
        applied = store.query("SELECT version, name FROM schema_migrations ORDER BY version")
    assert tables >= PUBLIC
    assert applied[0] == (1, "lineage")
    with Store.open(tmp_path / "s.duckdb") as again:  # reopening migrates nothing
        assert again.query("SELECT count(*) FROM schema_migrations")[0][0] == len(applied)


def test_a_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store, store.transaction() as con:
        con.execute("INSERT INTO schema_migrations VALUES (999, 'future', now())")
    with pytest.raises(StoreVersionError, match="newer than this auditor knows") as caught:
        Store.open(path)
    assert "upgrade" in (caught.value.hint or "")


def test_read_only_needs_an_existing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        Store.open(tmp_path / "absent.duckdb", read_only=True)


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        with pytest.raises(RuntimeError), store.transaction() as con:
            con.execute("INSERT INTO model_changes VALUES (1, 'a/b', 'new', NULL, 'x', NULL)")
            raise RuntimeError("boom")
        assert store.query("SELECT count(*) FROM model_changes")[0][0] == 0


@contextmanager
def _plain_duckdb_writer(path: Path) -> Iterator[None]:
    """Another process holding the file open for writing the plain duckdb way (the duckdb CLI, a
    notebook): it does not watch for readers."""
    Store.open(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_a_store_held_by_another_writer_is_reported_busy(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with _plain_duckdb_writer(path):
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="busy") as caught:
            Store.open(path, busy_timeout_s=0.5)
        assert time.monotonic() - started >= 0.5
        assert "wait" in (caught.value.hint or "")


def test_a_reader_is_let_in_while_another_process_writes_and_sees_only_whole_transactions(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        store.query("CREATE TABLE ledger (i INTEGER)")
    # Each transaction adds +i and -i: a reader that saw half of one would find a sum other than 0.
    # The writer alternates bursts of short transactions with idle stretches, as a cycle does.
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time, sys\n"
            "from auditor.store import Store\n"
            f"with Store.open({str(path)!r}) as store:\n"
            "    print('writing', flush=True)\n"
            "    i, end = 1, time.monotonic() + 8\n"
            "    while time.monotonic() < end:\n"
            "        with store.transaction() as con:\n"
            "            con.execute('INSERT INTO ledger VALUES (?)', [i])\n"
            "            con.execute('INSERT INTO ledger VALUES (?)', [-i])\n"
            "        i += 1\n"
            "        time.sleep(0.005 if i % 100 else 0.5)\n"
            "    print('yields', store.yields, flush=True)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        seen = []
        waits = []
        while writer.poll() is None and len(seen) < 12:
            started = time.monotonic()
            with Store.open(path, read_only=True, busy_timeout_s=5) as reader:
                waits.append(time.monotonic() - started)
                seen.append(reader.query("SELECT count(*), coalesce(sum(i), 0) FROM ledger")[0])
            time.sleep(0.2)
        yields = writer.stdout.read()
    finally:
        writer.kill()
        writer.wait()
    assert len(seen) >= 8 and all(total == 0 for _, total in seen)
    assert [n for n, _ in seen] == sorted(n for n, _ in seen) and seen[-1][0] > seen[0][0]  # the writer went on
    assert max(waits) < 3.0, waits
    assert int(yields.split()[-1]) >= 8  # the writer let each reader in


def test_a_reader_that_is_never_let_in_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with _plain_duckdb_writer(path):
        with pytest.raises(StoreBusyError, match="did not let this reader in") as caught:
            Store.open(path, read_only=True, busy_timeout_s=0.5)
        assert "read_wait_s" in (caught.value.hint or "")


def test_a_store_of_schema_4_keeps_its_cycles_when_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v4.duckdb"
    con = store_at_schema(path, 4)
    con.execute("INSERT INTO cycles (cycle_id, status, started_at, audited) VALUES (1, 'done', now(), 7)")
    con.close()
    with Store.open(path) as store:
        assert store.version() == schema_version() >= 5
        assert store.query("SELECT cycle_id, status, audited FROM cycles") == [(1, "done", 7)]
        store.query("INSERT INTO cycles (cycle_id, status, started_at) VALUES (2, 'stopped', now())")
        with pytest.raises(Exception, match="CHECK"):
            store.query("INSERT INTO cycles (cycle_id, status, started_at) VALUES (3, 'paused', now())")


def test_a_store_of_schema_5_keeps_its_crawls_when_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v5.duckdb"
    con = store_at_schema(path, 5)
    for crawl_id, status in ((1, "done"), (2, "running")):
        con.execute(
            "INSERT INTO crawl_runs (crawl_id, mode, status, started_at, endpoint, roots, auditor_version)"
            " VALUES (?, 'full', ?, now(), 'https://huggingface.co', ['g/root'], '0.1.0')",
            [crawl_id, status],
        )
    # Listings were kept per relation; those of the unfinished run are dropped (listed again).
    con.executemany(
        "INSERT INTO crawl_listings VALUES (?, ?, ?, ?::TIMESTAMPTZ, ?)",
        [
            ("g/root", "finetune", 1, "2026-11-01 00:00:00+00", 3),
            ("g/root", "adapter", 1, "2026-11-02 00:00:00+00", 2),
            ("u/child", "finetune", 2, "2026-11-03 00:00:00+00", 1),
        ],
    )
    con.close()
    with Store.open(path) as store:
        assert store.version() == schema_version() >= 6
        runs = store.query("SELECT crawl_id, status, strategy, strategy_plan FROM crawl_runs ORDER BY crawl_id")
        assert runs == [(1, "done", None, None), (2, "running", None, None)]
        listings = store.query("SELECT repo_id, crawl_id, n_children, listed_at::DATE::VARCHAR FROM crawl_listings")
        assert listings == [("g/root", 1, 5, "2026-11-01")]  # the oldest listing speaks for the model
        assert store.query("SELECT count(*) FROM crawl_hub_index")[0][0] == 0


# -- the storage format: what the DuckDB CLI 1.5 reads ---------------------------------------------

HEADER_SIZE = 4096  # the main header block; then two database headers (duckdb.org/internals/storage)


def _checksum(block: bytes) -> int:
    """DuckDB's checksum of a header block (duckdb src/common/checksum.cpp `Checksum`): 5381 xor-ed
    with a multiplicative hash of every 8-byte word."""
    result = 5381
    for (word,) in struct.iter_unpack("<Q", block):
        result ^= (word * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return result


def _set_storage_version(path: Path, version: int) -> None:
    """Write `version` into the main header of a DuckDB file, as a newer DuckDB would have.

    The main header is a uint64 checksum of the rest of its block, the magic bytes `DUCK`, then the
    storage version as a uint64 (duckdb.org/internals/storage, "Storage header"; duckdb
    src/storage/single_file_block_manager.cpp, `MainHeader::Write`), and DuckDB checks that version
    before anything else (`MainHeader::Read`).
    """
    data = bytearray(path.read_bytes())
    assert data[8:12] == b"DUCK"
    stored = struct.unpack("<Q", data[0:8])[0]
    assert _checksum(bytes(data[8:HEADER_SIZE])) == stored, "the checksum is not DuckDB's: the test would be moot"
    data[12:20] = struct.pack("<Q", version)
    data[0:8] = struct.pack("<Q", _checksum(bytes(data[8:HEADER_SIZE])))
    path.write_bytes(bytes(data))


def test_new_stores_are_in_a_storage_format_duckdb_1_5_reads(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store, store.session() as con:
        fmt = storage_format(con)
    if connect_config():  # duckdb 1.5 or later: asked for explicitly
        assert fmt == STORAGE_VERSION
    assert readable_by_duckdb_1_5(fmt)
    # The version in the header is one DuckDB 1.5 reads (64 to 68: its error message for a 2.0 file).
    assert 64 <= struct.unpack("<Q", path.read_bytes()[12:20])[0] <= 68


def test_a_store_in_a_storage_format_this_duckdb_cannot_read_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    _set_storage_version(path, 1_000_000)
    for read_only in (True, False):
        with pytest.raises(StoreFormatError, match="storage format 1000000") as caught:
            Store.open(path, read_only=read_only)
        message = str(caught.value)
        assert str(path) in message and duckdb.__version__ in message and "\n" not in message
        assert "pip install -U duckdb" in (caught.value.hint or "")
    done = subprocess.run(
        [sys.executable, "-m", "auditor", "store", "info", "--store", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert [line.split(":")[0] for line in done.stderr.splitlines()] == ["error", "hint"]
    _set_storage_version(path, 39)  # DuckDB 0.6's (duckdb src/storage/storage_info.cpp, storage_version_info)
    with pytest.raises(StoreFormatError, match=r"older than 0\.10"):
        Store.open(path, read_only=True)


def _v2_store(path: Path) -> None:
    """A store as an earlier auditor left it under duckdb 2.0: created in the 2.0 storage format."""
    con = store_at_schema(path, schema_version())
    for _ in range(3):
        con.execute(
            "INSERT INTO audits (repo_id, battery_id, preset, preset_hash, generation_config, quantization,"
            " scorer, device, status, started_at, auditor_version)"
            " VALUES ('a/b', 'bat', 'paper', 'h', '{}', 'none', 'detoxify', 'cpu', 'done', now(), 'old')"
        )
    con.execute("INSERT INTO completions VALUES (1, 'p1', 'a completion', 2, 'eos')")
    con.close()


def test_a_store_in_the_duckdb_2_format_is_said_so_and_rewritten_for_duckdb_1_5(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if not connect_config():
        pytest.skip(f"duckdb {duckdb.__version__} creates no file that DuckDB 1.5 cannot read")
    path = tmp_path / "s.duckdb"
    _v2_store(path)
    with caplog.at_level(logging.WARNING, logger="auditor.store"), Store.open(path, read_only=True) as store:
        assert store.query("SELECT count(*) FROM audits") == [(3,)]  # still usable as it is
    assert "auditor store rewrite" in caplog.text and "v2.0.0" in caplog.text

    done = CliRunner().invoke(cli, ["store", "rewrite", "--store", str(path)])
    assert done.exit_code == 0, done.output
    assert "rewritten from the v2.0.0 to the v1.5.0 storage format" in done.output
    assert kept_path(path).exists()
    with Store.open(path) as store, store.session() as con:
        assert storage_format(con) == "v1.5.0"
        assert store.query("SELECT count(*), max(audit_id) FROM audits") == [(3, 3)]
        assert store.query("SELECT text FROM completions") == [("a completion",)]
        assert store.query("SELECT count(*) FROM audit_summary") == [(0,)]  # views and macros came along
        store.query(
            "INSERT INTO audits (repo_id, battery_id, preset, preset_hash, generation_config, quantization,"
            " scorer, device, status, started_at, auditor_version)"
            " VALUES ('a/c', 'bat', 'paper', 'h', '{}', 'none', 'detoxify', 'cpu', 'done', now(), 'new')"
        )
        assert store.query("SELECT max(audit_id) FROM audits") == [(4,)]  # the sequence went on where it was
        compression = store.query(
            "SELECT sql FROM duckdb_tables() WHERE table_name = 'completions' AND database_name = current_database()"
        )[0][0]
    assert "USING COMPRESSION ZSTD" in compression.upper()
    again = CliRunner().invoke(cli, ["store", "rewrite", "--store", str(path)])
    assert again.exit_code == 0 and "unchanged" in again.output


def test_a_store_left_empty_is_removed_and_one_with_data_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    assert remove_if_empty(path) and list(tmp_path.iterdir()) == []
    with Store.open(path) as store:
        store.query("INSERT INTO cycles (cycle_id, status, started_at) VALUES (1, 'failed', now())")
    assert not remove_if_empty(path) and path.exists()


def test_a_store_of_schema_10_gains_n_truncated_null_until_an_audit_counts(tmp_path: Path) -> None:
    from auditor.store.audits import AuditStore

    path = tmp_path / "v10.duckdb"
    con = store_at_schema(path, 10)
    con.execute(
        "INSERT INTO audits (repo_id, battery_id, preset, preset_hash, generation_config, quantization,"
        " scorer, device, status, started_at, auditor_version)"
        " VALUES ('a/b', 'bat', 'nightly', 'h', '{}', 'none', 'detoxify', 'cpu', 'done', now(), 'old')"
    )
    con.close()
    with Store.open(path) as store:
        assert store.version() == schema_version() >= 11
        # Not counted is NULL, never 0 (which says: counted, none was truncated).
        assert store.query("SELECT audit_id, n_truncated FROM audits") == [(1, None)]
        AuditStore(store).note_truncated(1, 7)
        assert store.query("SELECT n_truncated FROM audits") == [(7,)]
        assert store.query("SELECT n_truncated FROM latest_audits") == [(7,)]  # a `SELECT *` view reads it
