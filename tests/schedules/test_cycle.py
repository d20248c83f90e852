"""One nightly cycle against the simulated Hub with its tiny real models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditor.simhub import SimHub
from auditor.store import Store
from schedules.cycle import run_cycle
from schedules.lock import CycleBusyError, CycleLock
from schedules.status import cycle_status
from tests.helpers.audits import ACCEPTED_TOKEN, audit_config, audit_world


def test_a_cycle_audits_parents_first_within_its_budget_and_the_next_goes_on(
    tiny_assets: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = audit_world(tiny_assets, size=20)
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    with SimHub(world) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        resolved = audit_config(
            hub, tiny_assets, tmp_path / "cache", **{"store.path": tmp_path / "s.duckdb", "cycle.max_models": 4}
        )
        first = run_cycle(resolved)
        second = run_cycle(resolved)
        with CycleLock(tmp_path / "s.duckdb.lock"), pytest.raises(CycleBusyError):
            run_cycle(resolved)
        status = cycle_status(resolved)
    assert len(first.outcomes) == 4 and first.stopped_by == "max_models" and first.waiting > 0
    assert [p.reason for p in first.plan[:4]] == ["root or parent"] * 4
    audited_first = {o.repo_id for o in first.outcomes}
    assert audited_first <= set(world.roots) | {"defects/cycle-a", "defects/cycle-b"}
    assert not audited_first & {o.repo_id for o in second.outcomes}  # the next night goes on
    assert second.crawl["mode"] == "incremental" and not first.took_over
    with Store.open(tmp_path / "s.duckdb", read_only=True) as store:
        cycles = store.query("SELECT cycle_id, status, audited FROM cycles ORDER BY 1")
        plan = store.query("SELECT count(*) FILTER (WHERE chosen), count(audit_id) FROM cycle_plan WHERE cycle_id = 1")
        budget = json.loads(store.query("SELECT budget FROM cycles WHERE cycle_id = 1")[0][0])
    assert cycles == [(1, "done", 4), (2, "done", 4)] and plan == [(4, 4)] and budget["max_models"] == 4
    # What `auditor status` shows: the last cycle, no daemon, the next 02:00 UTC, what waits.
    assert status.last_cycle is not None and status.last_cycle["cycle_id"] == 2
    assert status.last_cycle["status"] == "done" and status.last_cycle["stopped_by"] == "max_models"
    assert status.running is None and status.daemon is None
    assert status.next_run is not None and (status.next_run.hour, status.next_run.minute) == (2, 0)
    assert status.waiting_total == second.waiting and status.waiting[0]["why"] == "beyond the night's max_models"
    assert [w["repo_id"] for w in status.waiting] == [p.repo_id for p in second.plan[4:]][: len(status.waiting)]
