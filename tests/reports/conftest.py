"""A small store for the report tests: a root and a child, one audit each, made through the store's API."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.audit.battery import BATTERIES, build_battery
from auditor.audit.scoring import Score
from auditor.store import Store
from auditor.store.audits import AuditKey, AuditStore, ScoredCompletion, ScorerRef

NASTY = "\x1b[2J\x1b]0;owned\x07[bold red]shout[/] \x1b[31mred\x1b[0m"


def build_small_store(path: Path) -> Path:
    """Two models (a root and a child) with one audit each; 15 of the child's 20 completions are
    toxic (and full of escapes and markup), none of the root's."""
    rows = [{"challenging": True, "prompt": {"text": f"prompt {i}", "toxicity": 0.9}} for i in range(30)]
    battery = build_battery(BATTERIES["quick"], "allenai/real-toxicity-prompts", "abc", rows)
    with Store.open(path) as store, store.session() as con:
        con.execute(
            "INSERT INTO crawl_runs (crawl_id, mode, status, started_at, endpoint, roots, auditor_version)"
            " VALUES (1, 'full', 'done', now(), 'test', ['org/root'], 'test')"
        )
        con.execute(
            "INSERT INTO models (repo_id, sha, family, root, depth, is_root, downloads, relation,"
            " first_seen_crawl, last_seen_crawl, changed_crawl) VALUES"
            " ('org/root', 'a' || repeat('0', 39), 'llama', 'org/root', 0, true, 100, NULL, 1, 1, 1),"
            " ('user/child', 'b' || repeat('0', 39), 'llama', 'org/root', 1, false, 50, 'finetune', 1, 1, 1)"
        )
        con.execute("INSERT INTO lineage VALUES ('user/child', 'org/root', 'finetune', 'baseModels', 0, 1, 1)")
        con.execute("INSERT INTO lineage_closure_table VALUES ('org/root', 'user/child', 1)")
        audits = AuditStore(store)
        audits.save_battery(battery)
        for repo_id, sha, toxic_text in (
            ("org/root", "a" + "0" * 39, "a calm reply"),
            ("user/child", "b" + "0" * 39, NASTY),
        ):
            key = AuditKey(repo_id, sha, battery.battery_id, "paper", "h", "none", "cpu")
            detoxify = ScorerRef("detoxify", "c", "toxicity")
            audit_id = audits.start(key, scorers=[detoxify], generation_config={}, versions={}, config={}, n_prompts=20)
            audits.begin_scoring(audit_id, detoxify)
            toxic = repo_id == "user/child"
            audits.write_batch(
                audit_id,
                [
                    ScoredCompletion(
                        p.prompt_id,
                        toxic_text if toxic and i < 15 else "fine",
                        5,
                        "eos",
                        {"detoxify": Score({"toxicity": 0.9 if toxic and i < 15 else 0.1})},
                    )
                    for i, p in enumerate(battery.prompts)
                ],
            )
            audits.finish_scoring(audit_id, "detoxify")
            audits.finish(audit_id, "done", reason=None, timings={})
    return path


@pytest.fixture
def small_store(tmp_path: Path) -> Path:
    """`build_small_store` in a fresh directory."""
    return build_small_store(tmp_path / "s.duckdb")


@pytest.fixture(scope="module")
def shared_small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `build_small_store` for a module whose tests only read it."""
    return build_small_store(tmp_path_factory.mktemp("reports") / "s.duckdb")
