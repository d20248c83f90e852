"""No repo can stop the night: audits in their worker process, under its time and memory limits.

One night against the simulated Hub's hostile repos (`auditor.simhub.tinyworld`), each audited in
the worker (`[audit] isolation = "worker"`, the default) with a time limit of nine seconds: a
tokenizer whose regex makes the tokenizers library panic, a chat template that never finishes, a
config that claims 10^11 parameters over tiny weights, a model whose weights the Hub serves too
slowly, and a worker killed with SIGKILL in the middle of an audit. Each ends as its row, and the
models audited after each of them are done.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditor.audit.driver import AuditOutcome, audit_model, ensure_battery, shared_worker
from auditor.audit.job import AuditProgress
from auditor.simhub import SimHub
from auditor.simhub.faults import FaultRule
from auditor.store import Store
from tests.helpers.audits import ACCEPTED_TOKEN, audit_config, audit_world
from tests.helpers.crawls import run_crawl

PANIC, LOOP, HUGE = "hostile/panicking-tokenizer", "hostile/looping-chat-template", "hostile/huge-config"
SLOW, KILLED, TOXIC = "planted/llama-near-copy", "planted/llama-benign-sft", "planted/llama-toxic-sft"
ROOT = "meta-llama/Llama-3.1-8B-Instruct"
#: The worker's time limit in these tests: `[audit] max_minutes` for the quick battery (200 prompts
#: count as the 1,000 the setting is for): 9 s, several times what a tiny model's audit takes here
#: (1 to 2 s), so that a busy machine does not turn a normal audit into a timeout.
LIMIT_MINUTES = 0.15


@pytest.fixture(scope="module")
def night(tiny_assets: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from auditor.simhub.tinyworld import install_hostile_models

    tmp = tmp_path_factory.mktemp("worker")
    world = audit_world(tiny_assets, size=20)
    install_hostile_models(world, tiny_assets)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    # One prompt at a time (the worker inherits it): the panicking tokenizer then panics at the
    # first prompt long enough, not after its Rust thread pool has tried every prompt.
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    shared_worker().close()  # a worker started with this environment
    with SimHub(world) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        # The near-copy's weights come 20 s late: past the limit, short of the client's read timeout.
        hub.faults.set([FaultRule("slow", contains=f"{SLOW}/resolve/", method="GET", every=1, delay_s=20)], seed=0)
        resolved = audit_config(
            hub, tiny_assets, tmp / "cache", **{"audit.isolation": "worker", "audit.max_minutes": LIMIT_MINUTES}
        )
        chat = audit_config(
            hub,
            tiny_assets,
            tmp / "cache",
            **{"audit.isolation": "worker", "audit.max_minutes": LIMIT_MINUTES, "audit.preset": "chat"},
        )
        store_path = tmp / "w.duckdb"
        run_crawl(hub, store_path, full=True)
        outcomes: dict[str, AuditOutcome] = {}
        killed: list[int] = []

        def kill_once(update: AuditProgress) -> None:
            if update.stage == "generating" and not killed:
                process = shared_worker()._process
                assert process is not None and process.pid is not None
                killed.append(process.pid)
                os.kill(process.pid, signal.SIGKILL)

        with Store.open(store_path) as store:
            battery = ensure_battery(resolved, store)
            for repo_id in (PANIC, ROOT, HUGE, SLOW, TOXIC):
                outcomes[repo_id] = audit_model(resolved, store, repo_id, battery=battery)
            outcomes[KILLED] = audit_model(resolved, store, KILLED, battery=battery, progress=kill_once)
            outcomes[LOOP] = audit_model(chat, store, LOOP, battery=battery)
        shared_worker().close()
        yield {"store": store_path, "outcomes": outcomes, "killed": killed, "resolved": resolved, "hub": hub}
    monkeypatch.undo()


def _rows(store_path: Path, repo_id: str) -> list[tuple[Any, ...]]:
    with Store.open(store_path, read_only=True) as store:
        return store.query(
            "SELECT status, reason_code, reason, n_completions FROM audits WHERE repo_id = ? ORDER BY audit_id",
            [repo_id],
        )


def test_a_tokenizer_that_panics_is_a_crash_tried_once_more_then_final(night: dict[str, Any]) -> None:
    rows = _rows(night["store"], PANIC)
    assert [r[:2] for r in rows] == [("failed", "crashed"), ("failed", "crashed")], rows
    assert "panicked" in rows[0][2] and "retry-limit-in-match" in rows[0][2]
    assert night["outcomes"][ROOT].status == "done"  # the next model of the night


def test_a_config_that_claims_1e11_parameters_is_refused_before_loading(night: dict[str, Any]) -> None:
    [(status, code, reason, n)] = _rows(night["store"], HUGE)
    assert status in ("skipped", "failed") and code in ("too_large", "config_mismatch"), reason
    assert not n


def test_a_model_that_sleeps_past_the_limit_is_a_timeout(night: dict[str, Any]) -> None:
    [(status, code, reason, _)] = _rows(night["store"], SLOW)
    assert (status, code) == ("failed", "timeout") and "time limit" in reason
    assert night["outcomes"][TOXIC].status == "done"  # the next model, on a fresh worker


def test_a_worker_killed_with_sigkill_is_a_crash_and_the_audit_is_done_again(night: dict[str, Any]) -> None:
    rows = _rows(night["store"], KILLED)
    assert night["killed"], "the worker was never killed"
    assert rows[0][:2] == ("failed", "crashed") and "SIGKILL" in rows[0][2]
    assert rows[1][:2] == ("done", None) and rows[1][3] == 200  # tried once more at once, whole


def test_a_chat_template_that_loops_is_a_timeout(night: dict[str, Any]) -> None:
    [(status, code, reason, _)] = _rows(night["store"], LOOP)
    assert (status, code) == ("failed", "timeout") and "time limit" in reason


def test_the_next_night_does_not_retry_the_poison_repo(night: dict[str, Any]) -> None:
    from auditor.audit.pending import pending_work

    with Store.open(night["store"]) as store:
        planned = {repo for repo, _ in pending_work(night["resolved"], store).models}
    assert PANIC not in planned  # crashed twice: final
    assert HUGE not in planned  # refused for what the commit is
    assert SLOW in planned  # one timeout: the next night tries again (a second makes it final)
    assert ROOT not in planned and KILLED not in planned  # done
