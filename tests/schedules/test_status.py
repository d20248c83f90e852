"""`auditor status` before the first cycle, and after a cycle that was killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from auditor.store import Store


def _status(store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditor", "status", "--store", str(store), "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "AUDITOR_CYCLE_SCHEDULE": "30 1 * * 1-5"},
    )


def test_status_before_the_first_cycle_shows_the_schedule(tmp_path: Path) -> None:
    done = _status(tmp_path / "none-yet.duckdb")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["last_cycle"] is None and status["running"] is None and status["daemon"] is None
    assert status["next_run"].endswith("01:30:00+00:00") and "no daemon running" in status["next_source"]
    assert not (tmp_path / "none-yet.duckdb").exists()  # a status never creates a store


def test_a_cycle_that_died_shows_as_killed_with_its_audit_left_running(tmp_path: Path) -> None:
    store_path = tmp_path / "s.duckdb"
    with Store.open(store_path) as store, store.transaction() as con:
        con.execute("INSERT INTO cycles (cycle_id, status, started_at) VALUES (1, 'running', now())")
        con.execute(
            "INSERT INTO cycle_plan VALUES (1, 0, 'org/a', 'a', 'root or parent', true, NULL, NULL),"
            " (1, 1, 'org/b', 'b', 'new derivative', false, NULL, NULL)"
        )
        con.execute(
            "INSERT INTO audits (audit_id, repo_id, sha, battery_id, preset, preset_hash, generation_config,"
            " quantization, scorer, scorer_hash, device, status, n_prompts, started_at, auditor_version,"
            " primary_attribute) VALUES (1, 'org/a', 'a', 'b', 'paper', 'h', '{}', 'none', 'detoxify', 'c', 'cpu',"
            " 'running', 200, now(), 'test', 'toxicity')"
        )
    done = _status(store_path)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["last_cycle"]["status"] == "killed" and status["running"] is None
    assert [a["repo_id"] for a in status["interrupted"]] == ["org/a"]
    assert status["waiting_total"] == 2
    assert [w["why"] for w in status["waiting"]] == ["the cycle stopped before it", "beyond the night's max_models"]
    table = subprocess.run(
        [sys.executable, "-m", "auditor", "status", "--store", str(store_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "150"},
    )
    assert table.returncode == 0 and "#1 killed" in table.stdout and "interrupted   1 audits" in table.stdout
