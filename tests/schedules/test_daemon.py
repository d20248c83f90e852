"""The scheduler daemon: cycles on a cron expression against the simulated Hub, a world that
changes between cycles, and a clean stop on SIGTERM."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from auditor.simhub import SimHub
from auditor.simhub.world import SimFile
from auditor.store import Store
from schedules.cycle import CycleResult
from schedules.daemon import run_daemon
from schedules.status import CycleStatus, cycle_status
from tests.helpers.audits import ACCEPTED_TOKEN, audit_config, audit_env, audit_world, running_audit
from tests.helpers.crawls import stored_lineage

TINY_ROOTS = ("google/gemma-2-2b-it", "meta-llama/Llama-3.1-8B-Instruct", "microsoft/Phi-3.5-mini-instruct")
BUDGET = 12


def _files_of(hub: SimHub, repo_id: str) -> dict[str, SimFile]:
    repo = hub.world.models[repo_id]
    assert repo.files is not None
    return dict(repo.files)


def _unaudited(store_path: Path, hub: SimHub) -> set[tuple[str, str]]:
    """The oracle: every model of the tree at its current commit that has no audit at that commit."""
    truth = hub.world.truth(TINY_ROOTS)
    with Store.open(store_path, read_only=True) as store:
        audited = {(r[0], r[1]) for r in store.query("SELECT repo_id, sha FROM audits")}
    return {(repo_id, sha) for repo_id, sha in truth.shas.items()} - audited


def test_the_daemon_runs_three_cycles_on_its_cron_auditing_exactly_the_new_work(
    tiny_assets: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = audit_world(tiny_assets, size=20)
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    store_path = tmp_path / "s.duckdb"
    expected: list[set[tuple[str, str]]] = []
    statuses: list[CycleStatus] = []
    changes: list[dict[str, str]] = []
    with SimHub(world) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        resolved = audit_config(
            hub,
            tiny_assets,
            tmp_path / "cache",
            **{
                "store.path": store_path,
                "crawl.roots": TINY_ROOTS,
                "crawl.refresh_days": 0,  # every crawl lists again, so deletions are seen at once
                "cycle.max_models": BUDGET,
                "cycle.schedule": "*/2 * * * * *",  # every two seconds, seconds first
            },
        )
        # Before the first cycle there is no store: all of the tree is new work.
        expected.append({(r, s) for r, s in world.truth(TINY_ROOTS).shas.items()})

        def change(new: str, like: str, *, repushed: str, deleted: str) -> None:
            """Add `new` as a copy of `like` (same parent, relation and files), re-push one, delete one."""
            model = world.models[like]
            world.add_model(
                new,
                declared=model.declared,
                relation=model.relation,
                family=model.family,
                files=_files_of(hub, like),
                license="apache-2.0",
                library_name=model.library_name,
            )
            world.repush(repushed)
            world.delete(deleted)
            changes.append({"new": new, "repushed": repushed, "deleted": deleted})

        def change_the_world(result: CycleResult) -> None:
            statuses.append(cycle_status(resolved))
            waiting = [p.repo_id for p in result.plan if not p.chosen]
            if result.cycle_id == 1:
                # New derivative, a re-push of an audited model, and a deletion of one still waiting.
                audited = next(o.repo_id for o in result.outcomes if o.repo_id.startswith("planted/"))
                change("community/llama-new-sft", "planted/llama-benign-sft", repushed=audited, deleted=waiting[0])
            elif result.cycle_id == 2:
                # An adapter this time, and a deletion of a model audited by now: it leaves the tree.
                change(
                    "community/gemma-new-lora",
                    "planted/gemma-lora",
                    repushed="planted/llama-benign-sft",
                    deleted="planted/llama-near-copy",
                )
            if result.cycle_id < 3:
                expected.append(_unaudited(store_path, hub))

        run = run_daemon(resolved, cycles=3, after_cycle=change_the_world)

        truth = world.truth(TINY_ROOTS)
    assert not run.failures and [c.cycle_id for c in run.cycles] == [1, 2, 3]
    assert run.skipped >= 1  # fires every 2 s; the first cycle takes longer: skipped, never overlapped
    audited = [{(o.repo_id, o.sha) for o in c.outcomes} for c in run.cycles]
    # Cycle 1 had more than its budget: it took the first BUDGET, parents first.
    assert len(expected[0]) > BUDGET
    assert len(audited[0]) == BUDGET and audited[0] <= expected[0]
    assert run.cycles[0].stopped_by == "max_models"
    assert all(p.reason == "root or parent" for p in run.cycles[0].plan[:3])
    # Cycles 2 and 3: exactly what was left plus what changed, and nothing else.
    assert audited[1] == expected[1] and audited[2] == expected[2]
    names = [{r for r, _ in a} for a in audited]
    assert changes[0]["new"] in names[1] and changes[0]["repushed"] in names[1]
    assert changes[0]["deleted"] not in set().union(*names)
    assert changes[1]["new"] in names[2] and changes[1]["repushed"] in names[2]
    # The store ends with the truth, and holds each audit once.
    nodes, edges, shas = stored_lineage(store_path)
    assert nodes == set(truth.nodes) and edges == set(truth.edges) and shas == dict(truth.shas)
    with Store.open(store_path, read_only=True) as store:
        assert store.query("SELECT repo_id, sha, count(*) FROM audits GROUP BY ALL HAVING count(*) > 1") == []
        assert store.query("SELECT status, count(*) FROM cycles GROUP BY ALL") == [("done", 3)]
        times = store.query("SELECT started_at, finished_at FROM cycles ORDER BY cycle_id")
        assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(times))
        new_audit = store.query("SELECT status, n_completions FROM audits WHERE repo_id = ?", [changes[0]["new"]])
    assert new_audit == [("done", 200)]
    # `auditor status` while the daemon ran: its schedule, and its next fire a few seconds away.
    daemon = statuses[0].daemon
    assert daemon is not None and daemon["schedule"] == "*/2 * * * * *" and daemon["pid"] == os.getpid()
    assert statuses[0].next_source == "daemon" and statuses[0].last_cycle["cycle_id"] == 1  # type: ignore[index]


def test_sigterm_stops_the_daemon_within_a_batch_and_the_next_cycle_finishes_the_audit(
    tiny_assets: Any, tmp_path: Path
) -> None:
    world = audit_world(tiny_assets, size=20)
    store_path = tmp_path / "s.duckdb"
    with SimHub(world) as hub:
        env = {
            **os.environ,
            **audit_env(
                hub,
                tiny_assets,
                tmp_path,
                AUDITOR_CRAWL_ROOTS="meta-llama/Llama-3.1-8B-Instruct",
                AUDITOR_AUDIT_BATCH_SIZE="4",
                AUDITOR_AUDIT_ISOLATION="worker",  # the stop reaches the audit in its worker
            ),
        }
        daemon = subprocess.Popen(
            [sys.executable, "-m", "auditor", "schedule", "--cron", "*/2 * * * * *"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Wait, reading the store as the daemon writes it, until an audit has stored batches.
            deadline = time.monotonic() + 120
            running = None
            while running is None and time.monotonic() < deadline:
                assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
                running = running_audit(store_path)
                time.sleep(0.1)
            assert running is not None, "no audit started"
            stopping = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            _, stderr = daemon.communicate(timeout=60)
            stop_s = time.monotonic() - stopping
        finally:
            daemon.kill()
        assert daemon.returncode == 0, stderr
        assert "SIGTERM: stopping after the current batch" in stderr and "scheduler stopped after 1 cycles" in stderr
        assert stop_s < 15
        with Store.open(store_path, read_only=True) as store:
            status, error = store.query("SELECT status, error FROM cycles")[0]
            left = store.query(
                "SELECT status, (SELECT count(*) FROM completions c WHERE c.audit_id = a.audit_id) FROM audits a"
                " WHERE audit_id = ?",
                [running],
            )[0]
        assert status == "stopped" and "stopped during the audits" in error
        assert left[0] == "running" and 0 < left[1] < 200  # stopped within a batch or two, resumable

        finished = subprocess.run(
            [sys.executable, "-m", "auditor", "run", "--format", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert finished.returncode == 0, finished.stderr
    with Store.open(store_path, read_only=True) as store:
        assert store.query("SELECT status, n_completions FROM audits WHERE audit_id = ?", [running]) == [("done", 200)]
        assert store.query("SELECT repo_id, sha, count(*) FROM audits GROUP BY ALL HAVING count(*) > 1") == []
        assert store.query("SELECT count(*) FROM completions WHERE audit_id = ?", [running]) == [(200,)]
