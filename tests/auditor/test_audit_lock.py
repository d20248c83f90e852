"""`auditor audit` holds the cycle lock: beside a running cycle or audit it exits 3 and writes nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditor.store import Store
from schedules.lock import CycleLock, cycle_lock_path


def _closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _audits(path: Path) -> int:
    with Store.open(path, read_only=True) as store:
        return int(store.query("SELECT count(*) FROM audits")[0][0])


@pytest.mark.parametrize(
    ("holder", "args", "said", "hint"),
    [
        (
            {"cycle_id": 7},
            ("--pending",),
            "error: a nightly cycle (cycle #7, pid {pid}) holds the cycle lock of store",
            "hint: wait for the cycle to finish (`auditor status` shows it) and run this again, or stop it"
            " (kill -TERM {pid}",
        ),
        (
            {"command": "auditor audit --pending"},
            ("planted/llama-toxic-sft",),
            "error: another audit ('auditor audit --pending', pid {pid}) holds the cycle lock of store",
            "hint: wait for it to finish and run this again, or stop it (kill {pid}",
        ),
    ],
)
def test_an_audit_beside_a_cycle_or_another_audit_exits_3_at_once_and_writes_nothing(
    holder: dict[str, object], args: tuple[str, ...], said: str, hint: str, tmp_path: Path
) -> None:
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    before = _audits(path)
    # Nothing may reach a Hub or load a model before the lock: none is reachable here.
    env = {**os.environ, "NO_COLOR": "1", "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HUB_OFFLINE": "1"}
    with CycleLock(cycle_lock_path(path)) as lock:  # as a running cycle (or audit) holds it
        lock.note(**holder)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "auditor", "audit", *args, "--store", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        took = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert said.format(pid=os.getpid()) in done.stderr and str(cycle_lock_path(path)) in done.stderr
    assert hint.format(pid=os.getpid()) in done.stderr
    assert took < 20  # at once: no waiting for the lock (the bound is the interpreter's start)
    assert _audits(path) == before
