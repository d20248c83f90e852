"""Crash recovery and readers during a write: real `auditor` processes against the simulated Hub.

A cycle killed with SIGKILL in the middle of its crawl, then another in the middle of an audit;
the next cycle completes both, and the store holds every completed audit exactly once. While that
cycle writes, reports run in other processes and succeed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from auditor.simhub import FaultRule, SimHub
from auditor.store import Store
from schedules.lock import cycle_lock_path, holder
from tests.helpers.audits import audit_env, audit_world, running_audit
from tests.helpers.crawls import stored_lineage

TINY_ROOTS = ("google/gemma-2-2b-it", "meta-llama/Llama-3.1-8B-Instruct", "microsoft/Phi-3.5-mini-instruct")


def _auditor(*args: str) -> list[str]:
    return [sys.executable, "-m", "auditor", *args]


def test_cycles_killed_mid_crawl_and_mid_audit_are_completed_by_the_next_while_reports_run(
    tiny_assets: Any, tmp_path: Path
) -> None:
    world = audit_world(tiny_assets, size=20)
    store_path = tmp_path / "s.duckdb"
    with SimHub(world) as hub:
        env = {
            **os.environ,
            "NO_COLOR": "1",
            **audit_env(
                hub,
                tiny_assets,
                tmp_path,
                AUDITOR_CRAWL_ROOTS=",".join(TINY_ROOTS),
                AUDITOR_CRAWL_CONCURRENCY="1",
                AUDITOR_AUDIT_BATCH_SIZE="4",  # many small batches: the kill lands mid-audit
                AUDITOR_CYCLE_MAX_MODELS="6",
            ),
        }

        # 1. Killed in the middle of the crawl: the Hub answers listings slowly.
        hub.faults.set([FaultRule(kind="slow", path="/api/models", every=1, delay_s=0.2)], seed=0)
        first = subprocess.Popen(_auditor("run"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while hub.stats.snapshot().get("total", 0) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the cycle finished its crawl before it could be killed"
        first.send_signal(signal.SIGKILL)
        first.wait()
        hub.faults.set([], seed=0)
        with Store.open(store_path, read_only=True) as store:
            assert store.query("SELECT status FROM cycles") == [("running",)]
            assert store.query("SELECT status FROM crawl_runs") == [("running",)]
            assert store.query("SELECT count(*) FROM audits") == [(0,)]

        # 2. Killed in the middle of an audit, found by reading the store while the cycle writes.
        second = subprocess.Popen(_auditor("run"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        interrupted = None
        deadline = time.monotonic() + 120
        while interrupted is None and time.monotonic() < deadline:
            assert second.poll() is None, "the cycle ended before an audit could be interrupted"
            interrupted = running_audit(store_path)
            time.sleep(0.05)
        assert interrupted is not None
        second.send_signal(signal.SIGKILL)
        second.wait()
        with Store.open(store_path, read_only=True) as store:
            done_before = store.query("SELECT audit_id, repo_id, sha FROM audits WHERE status = 'done' ORDER BY 1")
            partial = store.query("SELECT count(*) FROM completions WHERE audit_id = ?", [interrupted])[0][0]
        assert 0 < partial < 200

        # 3. The next cycle, with reports and status running in other processes while it writes.
        third = subprocess.Popen(
            _auditor("run", "--format", "json"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        lock = cycle_lock_path(store_path)
        while third.poll() is None and not (holder(lock) or {}).get("cycle_id"):
            time.sleep(0.05)
        reports: list[subprocess.CompletedProcess[str]] = []
        during: list[str] = []  # the reports that began and ended while the cycle held its lock
        while third.poll() is None:
            for command in (("status", "--format", "json"), ("report", "drift", "--format", "json")):
                before = holder(lock)
                reports.append(subprocess.run(_auditor(*command), env=env, capture_output=True, text=True))
                if before and holder(lock) and third.poll() is None:
                    during.append(command[0])
        out, err = third.communicate()
        truth = world.truth(TINY_ROOTS)
    assert third.returncode == 0, err
    result = json.loads(out)
    assert result["took_over"] and result["status"] == "done"

    # Every report succeeded, and some of them ran while the cycle held the store.
    assert reports and all(r.returncode == 0 for r in reports), [r.stderr for r in reports if r.returncode]
    assert {"status", "report"} <= set(during), during
    statuses = [json.loads(r.stdout) for r in reports if r.args[3] == "status"]
    assert any(s["running"] and s["running"]["cycle_id"] == 3 for s in statuses)
    drifts = [json.loads(r.stdout) for r in reports if r.args[3] == "report"]
    assert drifts and all(isinstance(d, list) for d in drifts)

    with Store.open(store_path, read_only=True) as store:
        cycles = store.query("SELECT cycle_id, status, error, took_over FROM cycles ORDER BY 1")
        crawls = store.query("SELECT crawl_id, mode, status FROM crawl_runs ORDER BY 1")
        after = store.query("SELECT audit_id, repo_id, sha FROM audits WHERE status = 'done' ORDER BY 1")
        resumed = store.query(
            "SELECT status, n_completions, (SELECT count(*) FROM scores s WHERE s.audit_id = a.audit_id)"
            " FROM audits a WHERE audit_id = ?",
            [interrupted],
        )
        duplicates = store.query("SELECT repo_id, sha, count(*) FROM audits GROUP BY ALL HAVING count(*) > 1")
        complete = store.query(
            "SELECT count(*) FROM audits a WHERE status = 'done' AND (SELECT count(DISTINCT prompt_id)"
            " FROM completions c WHERE c.audit_id = a.audit_id) <> 200"
        )
    assert cycles == [
        (1, "failed", "interrupted", False),
        (2, "failed", "interrupted", True),
        (3, "done", None, True),
    ]
    assert crawls[0] == (1, "full", "done")  # the killed crawl was resumed, not started over
    assert resumed == [("done", 200, 200 * 6)]  # the interrupted audit, finished in place
    assert set(done_before) < set(after)  # nothing completed was lost ...
    assert duplicates == [] and complete == [(0,)]  # ... or done twice, or left half-written
    nodes, edges, shas = stored_lineage(store_path)
    assert nodes == set(truth.nodes) and edges == set(truth.edges) and shas == dict(truth.shas)
