"""`auditor sql` cannot hold the store: a query is stopped at its timeout, and reads at most its limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
from click.testing import CliRunner

from auditor.cli import cli
from auditor.cli.store import sql
from auditor.config import StoreSettings
from auditor.store import Store
from auditor.store.database import (
    USER_QUERY_ROW_LIMIT,
    USER_QUERY_STOP_MARGIN_S,
    USER_QUERY_TIMEOUT_S,
    WRITE_WAIT_S,
)
from auditor.store.fileformat import connect_config

#: About six minutes of one core's work (1e8 rows take a third of a second), and nothing to shortcut.
ENDLESS_QUERY = "SELECT sum(hash(range)) FROM range(100000000000)"

#: A writer that is ready (imports done) before it is told to open the store, so that it starts
#: waiting the moment the test says: it prints how long it waited, then commits five rows.
WRITER = """
import sys, time
from auditor.store import Store
print('ready', flush=True)
sys.stdin.readline()
asked = time.monotonic()
with Store.open(sys.argv[1]) as store:
    waited = time.monotonic() - asked
    for i in range(5):
        with store.transaction() as con:
            con.execute('INSERT INTO ledger VALUES (?)', [i])
print('waited', waited, flush=True)
"""


def _wait_until_held(path: Path, process: subprocess.Popen[str]) -> None:
    """Return once another process has the store open (a plain duckdb writer cannot get in)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            duckdb.connect(str(path), config=connect_config()).close()
        except duckdb.IOException:
            return
        time.sleep(0.05)
    raise AssertionError("the query never opened the store")


def test_a_query_past_its_timeout_is_stopped_and_the_writer_waiting_for_it_gets_in(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        store.query("CREATE TABLE ledger (i INTEGER)")
    env = {**os.environ, "NO_COLOR": "1"}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    query: subprocess.Popen[str] | None = None
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        query = subprocess.Popen(
            [sys.executable, "-m", "auditor", "sql", "--timeout", "2", "--store", str(path), ENDLESS_QUERY],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        _wait_until_held(path, query)
        held = time.monotonic()
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()  # the writer now waits for the query's connection
        out, err = query.communicate(timeout=60)
        ran = time.monotonic() - held
        written, _ = writer.communicate(timeout=60)
    finally:
        for process in (writer, query):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    assert query.returncode == 1 and out == ""
    assert "error: the query was stopped after 2 s, its time limit (--timeout 2)" in err
    assert "allow it longer with `auditor sql --timeout SECONDS`" in err
    assert 1.5 <= ran < 6, ran  # stopped at its timeout, not minutes later
    assert writer.returncode == 0
    waited = float(written.split()[-1])
    assert 1.0 <= waited <= ran + 1.0, (waited, ran)  # held out by the query, let in as it stopped
    with Store.open(path, read_only=True) as store:
        assert store.query("SELECT count(*), sum(i) FROM ledger") == [(5, 10)]


def test_more_rows_than_the_limit_are_cut_with_a_notice_and_never_all_read(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    runner = CliRunner()

    def run(*args: str) -> tuple[list[dict[str, int]], str]:
        done = runner.invoke(cli, ["sql", "--store", str(path), "--format", "json", *args], catch_exceptions=False)
        assert done.exit_code == 0, done.output
        return json.loads(done.stdout), done.stderr

    rows, notice = run("--limit", "10", "SELECT range AS i FROM range(25) ORDER BY i")
    assert [r["i"] for r in rows] == list(range(10))
    assert "the output was cut at 10 rows (the query returns more)" in notice and "--limit ROWS" in notice
    rows, notice = run("--limit", "25", "SELECT range AS i FROM range(25)")
    assert len(rows) == 25 and notice == ""  # exactly the limit: nothing was cut
    # Ten billion rows: read whole, this would take minutes and be stopped at its timeout.
    started = time.monotonic()
    rows, notice = run("--limit", "10", "--timeout", "20", "SELECT range AS i FROM range(10000000000)")
    assert len(rows) == 10 and "cut at 10 rows" in notice and time.monotonic() - started < 10


def test_a_writer_waits_longer_than_a_query_runs_at_its_default_timeout() -> None:
    """The relation `auditor.store.database` states: a query at the default timeout never makes a
    writer give up, at the code's default wait and at the configuration's."""
    for write_wait in (WRITE_WAIT_S, StoreSettings().write_wait_s):
        assert write_wait >= 10 * (USER_QUERY_TIMEOUT_S + USER_QUERY_STOP_MARGIN_S)
    defaults = {p.name: p.default for p in sql.params}
    assert defaults["timeout"] == USER_QUERY_TIMEOUT_S and defaults["limit"] == USER_QUERY_ROW_LIMIT


def test_a_timeout_longer_than_a_writer_waits_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    done = CliRunner().invoke(
        cli, ["sql", "--store", str(path), "--timeout", "900", "SELECT 1 AS one"], catch_exceptions=False
    )
    assert done.exit_code == 0
    assert "warning: --timeout 900 s is longer than a writer waits for readers ([store] write_wait_s = 600 s)" in (
        done.stderr
    )
