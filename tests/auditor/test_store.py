"""The DuckDB store: migrations, version checks, busy files."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditor.errors import StoreBusyError, StoreError, StoreVersionError
from auditor.store import Store, schema_version

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


def test_a_store_held_by_another_writer_is_reported_busy(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
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
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="busy") as caught:
            Store.open(path, busy_timeout_s=0.5)
        assert time.monotonic() - started >= 0.5
        assert "wait" in (caught.value.hint or "")
    finally:
        holder.kill()
        holder.wait()
