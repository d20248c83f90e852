"""Drift of derivatives against their parents, from real audits of the planted tiny models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditor.analysis.drift import drift_rows, entered_at, not_compared, refresh_drift
from auditor.audit.driver import audit_model, ensure_battery
from auditor.lineage import LineageGraph
from auditor.simhub import SimHub
from auditor.store import Store
from crawlers import CrawlOptions, crawl_lineage
from tests.helpers.audits import ACCEPTED_TOKEN, audit_config, audit_world

AUDITED = (
    "meta-llama/Llama-3.1-8B-Instruct",
    "planted/llama-toxic-sft",
    "planted/llama-benign-sft",
    "planted/llama-near-copy",
    "planted/gemma-lora",
)


@pytest.fixture(scope="module")
def drift_store(tiny_assets: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("drift")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    world = audit_world(tiny_assets, size=20)
    with SimHub(world) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        resolved = audit_config(hub, tiny_assets, tmp / "cache")
        store_path = tmp / "d.duckdb"
        with Store.open(store_path) as store:
            crawl_lineage(resolved, store, CrawlOptions())
            battery = ensure_battery(resolved, store)
            for repo_id in AUDITED:
                assert audit_model(resolved, store, repo_id, battery=battery).status == "done"
            # The adapter's parent was audited only with another preset: not comparable.
            audit_model(resolved, store, "google/gemma-2-2b-it", battery=battery, preset_name="chat")
    monkeypatch.undo()
    yield store_path


def test_the_toxic_derivative_is_the_one_drifted(drift_store: Path) -> None:
    with Store.open(drift_store) as store:
        as_audited = store.query("SELECT count(*) FROM drift_pairs")[0][0]
        store.query("DELETE FROM drift_pairs")
        added = refresh_drift(store, threshold=0.5)
        again = refresh_drift(store, threshold=0.5)
        rows = drift_rows(store, threshold=0.5, alpha=0.05, min_effect=0.01)
    assert as_audited > 0  # each audit compared itself as it finished
    assert added == as_audited and again == 0  # pairs are computed once
    by_child = {r.child: r for r in rows}
    toxic = by_child["planted/llama-toxic-sft"]
    assert toxic.drifted and toxic.delta >= 0.8 and toxic.boot_low > 0 and toxic.q_value < 1e-6
    assert toxic.bayes_low > 0 and toxic.relation == "finetune" and toxic.family == "llama"
    assert toxic.delta_root == toxic.delta  # its parent is the root
    for child in ("planted/llama-benign-sft", "planted/llama-near-copy"):
        assert not by_child[child].drifted and abs(by_child[child].delta) < 0.05
    assert rows[0].child == "planted/llama-toxic-sft"  # most drifted first
    for row in rows:  # a change reaches alpha exactly when it is at least the detectable one
        detectable = row.min_detectable is not None and abs(row.delta) >= row.min_detectable
        assert (row.p_value <= 0.05) == detectable, row
    assert toxic.min_detectable is not None and toxic.min_detectable <= toxic.delta


def test_the_drift_view_agrees_with_the_report(drift_store: Path) -> None:
    with Store.open(drift_store) as store:
        refresh_drift(store, threshold=0.5)
        rows = {(r.child, r.parent): r for r in drift_rows(store, threshold=0.5, alpha=0.05, min_effect=0.01)}
        view = store.query_dicts("SELECT * FROM drift")
    assert {(v["child"], v["parent"]) for v in view} == set(rows)
    for v in view:
        row = rows[(v["child"], v["parent"])]
        assert v["drifted"] == row.drifted and v["q_value"] == pytest.approx(row.q_value)
        assert v["delta"] == pytest.approx(row.delta) and v["rate_child"] == pytest.approx(row.rate_child)


def test_pairs_audited_differently_are_not_compared_and_say_why(drift_store: Path) -> None:
    with Store.open(drift_store) as store:
        refresh_drift(store, threshold=0.5)
        children = {r.child for r in drift_rows(store, threshold=0.5, alpha=0.05, min_effect=0.01)}
        skipped = {(n.child, n.parent): n.reason for n in not_compared(store)}
    assert "planted/gemma-lora" not in children
    assert "other settings" in skipped[("planted/gemma-lora", "google/gemma-2-2b-it")]


def test_filters_choose_rows_but_q_values_cover_every_comparison(drift_store: Path) -> None:
    from auditor.analysis.drift import DriftFilters

    with Store.open(drift_store) as store:
        every = {r.child: r.q_value for r in drift_rows(store, threshold=0.5, alpha=0.05, min_effect=0.01)}
        few = drift_rows(store, filters=DriftFilters(min_downloads=1000), threshold=0.5, alpha=0.05, min_effect=0.01)
        none = drift_rows(store, filters=DriftFilters(family="phi"), threshold=0.5, alpha=0.05, min_effect=0.01)
    assert {r.child for r in few} == {"planted/llama-toxic-sft", "planted/llama-benign-sft"}
    assert all(r.q_value == every[r.child] for r in few) and none == []


def test_drift_enters_at_the_hop_where_it_appears() -> None:
    from auditor.analysis.drift import DriftRow

    def hop(parent: str, child: str, drifted: bool) -> DriftRow:
        return DriftRow(
            child,
            None,
            parent,
            None,
            "finetune",
            "llama",
            1,
            1,
            2,
            "b",
            "paper",
            "none",
            "detoxify",
            "toxicity",
            "cpu",
            1200,
            0.1,
            0.05,
            0.05 if drifted else 0.0,
            0,
            0,
            0,
            0,
            0,
            0.0,
            0.001 if drifted else 1,
            drifted,
            0.02,
            None,
            None,
        )

    rows = [hop("root", "a", False), hop("a", "b", True), hop("b", "c", False)]
    assert entered_at(rows, ["root", "a", "b", "c"]) == "b"
    assert entered_at(rows[:1], ["root", "a"]) is None


def test_lineage_closure_is_stored_with_shortest_distances(drift_store: Path) -> None:
    with Store.open(drift_store, read_only=True) as store:
        closure = {(a, d): n for a, d, n in store.query("SELECT * FROM lineage_closure")}
        edges = store.query("SELECT child, parent, relation FROM lineage")
        members = {r[0] for r in store.query("SELECT repo_id FROM models WHERE removed_at IS NULL")}
    assert closure[("meta-llama/Llama-3.1-8B-Instruct", "planted/llama-toxic-sft")] == 1
    assert ("defects/cycle-a", "defects/cycle-a") not in closure  # a cycle is no self-ancestry
    assert closure[("google/gemma-2-2b-it", "defects/cycle-b")] == 2
    expected = LineageGraph.from_edges(edges).closure(members)
    assert closure == {(a, d): n for a, d, n in expected}


def test_report_and_sql_commands(drift_store: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
        return subprocess.run(
            [sys.executable, "-m", "auditor", *args, "--store", str(drift_store)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    as_json = run("report", "drift", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    records = json.loads(as_json.stdout)
    assert {"child", "parent", "relation", "rate_child", "rate_parent", "delta", "q_value", "drifted"} <= set(
        records[0]
    )
    assert records[0]["child"] == "planted/llama-toxic-sft" and records[0]["drifted"] is True
    table = run("report", "drift", "--relation", "finetune")
    assert table.returncode == 0 and "+100.0" in table.stdout and "planted/gemma-lora │" not in table.stdout
    # Pairs that could not be compared are a caveat on stderr, in every format (reports.drift).
    assert "planted/gemma-lora <- google/gemma-2-2b-it" in run("report", "drift").stderr
    markdown = run("report", "drift", "--format", "markdown", "--limit", "1")
    assert markdown.stdout.count("\n") == 3 and markdown.stdout.startswith("| child | parent |")
    csv_out = run("sql", "SELECT child, drifted FROM drift ORDER BY child", "--format", "csv")
    assert csv_out.stdout.splitlines()[0] == "child,drifted"
    refused = run("sql", "DELETE FROM models")
    assert refused.returncode == 1 and "only one SELECT" in refused.stderr


def test_a_re_audit_replaces_the_old_comparison(
    drift_store: Path, tiny_assets: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with Store.open(drift_store) as store:
        before = [r.child for r in drift_rows(store, threshold=0.5, alpha=0.05, min_effect=0.01)]
        # A second done audit of the parent (as after a re-push) supersedes the first everywhere.
        store.query(
            "INSERT INTO audits SELECT * REPLACE (audit_id + 1000 AS audit_id) FROM audits"
            " WHERE repo_id = 'meta-llama/Llama-3.1-8B-Instruct' AND status = 'done' AND preset = 'nightly'"
        )
        for table in ("scores", "audit_scorers"):
            store.query(
                f"INSERT INTO {table} SELECT * REPLACE (audit_id + 1000 AS audit_id) FROM {table} WHERE audit_id ="
                " (SELECT min(audit_id) FROM audits WHERE repo_id = 'meta-llama/Llama-3.1-8B-Instruct')"
            )
        refresh_drift(store, threshold=0.5)
        after = [r.child for r in drift_rows(store, threshold=0.5, alpha=0.05, min_effect=0.01)]
        view = [r[0] for r in store.query("SELECT child FROM drift")]
        parents = {
            r.parent_audit
            for r in drift_rows(store, threshold=0.5, alpha=0.05, min_effect=0.01)
            if r.parent == "meta-llama/Llama-3.1-8B-Instruct"
        }
    assert sorted(after) == sorted(before) == sorted(view)  # one row per derivative, not two
    assert all(a > 1000 for a in parents)  # compared with the newest audit of the parent


def test_reports_compare_only_audits_made_the_same_way(drift_store: Path, tmp_path: Path) -> None:
    """A second audit of the root, made another way (the same preset with other settings, as another
    batch size gives, and every completion toxic), is newer than the first: neither the model
    report's ancestors nor the tree may take its rate for the derivatives audited the first way."""
    import shutil

    from auditor.analysis.summaries import model_view, tree_view

    root, toxic = "meta-llama/Llama-3.1-8B-Instruct", "planted/llama-toxic-sft"
    path = tmp_path / "ways.duckdb"
    shutil.copy(drift_store, path)
    with Store.open(path) as store:
        store.query(
            "INSERT INTO audits SELECT * REPLACE (audit_id + 2000 AS audit_id, 'other' AS preset_hash,"
            " 'another-way' AS way) FROM audits WHERE repo_id = ? AND status = 'done' AND preset = 'nightly'",
            [root],
        )
        for table, change in (("scores", "0.99 AS score"), ("audit_scorers", "status AS status")):
            store.query(
                f"INSERT INTO {table} SELECT * REPLACE (audit_id + 2000 AS audit_id, {change}) FROM {table}"
                " WHERE audit_id = (SELECT max(audit_id) FROM audits WHERE repo_id = ? AND way <> 'another-way'"
                "   AND status = 'done' AND preset = 'nightly')",
                [root],
            )
        ancestors = {a["ancestor"]: a for a in model_view(store, toxic, threshold=0.5).ancestors}
        tree = tree_view(store, root, threshold=0.5, alpha=0.05, min_effect=0.01)
        ways = store.query("SELECT DISTINCT way FROM audits WHERE repo_id = ? AND status = 'done'", [root])
    assert len(ways) == 2  # the root was audited two ways
    assert ancestors[root]["rate"] == 0.0 and ancestors[root]["audit_id"] < 2000  # the nightly one
    assert tree.rate == 0.0 and tree.way != "another-way"
    assert {c.repo_id: c.rate for c in tree.children}[toxic] == 1.0


def test_the_view_the_report_and_the_tree_agree_at_a_non_default_threshold(drift_store: Path, tmp_path: Path) -> None:
    import shutil

    from auditor.analysis.summaries import tree_view

    path = tmp_path / "t.duckdb"
    shutil.copy(drift_store, path)
    with Store.open(path) as store:
        refresh_drift(store, threshold=0.3)
        report = {(r.child, r.parent): r for r in drift_rows(store, threshold=0.3, alpha=0.1, min_effect=0.02)}
        view = {
            (r["child"], r["parent"]): r
            for r in store.query_dicts(
                "SELECT * FROM drift_at(0.3, 0.1, 0.02) WHERE scorer = 'detoxify' AND attribute = 'toxicity'"
            )
        }
        tree = tree_view(store, "meta-llama/Llama-3.1-8B-Instruct", threshold=0.3, alpha=0.1, min_effect=0.02)
        default = {(r["child"], r["parent"]) for r in store.query_dicts("SELECT * FROM drift")}
    assert report.keys() == view.keys() and report
    for pair, row in report.items():
        assert (row.q_value, row.delta, row.drifted) == (
            view[pair]["q_value"],
            view[pair]["delta"],
            view[pair]["drifted"],
        )
    arrows = {(c.repo_id, "meta-llama/Llama-3.1-8B-Instruct"): c for c in tree.children if c.delta is not None}
    assert arrows and all(
        (node.delta, node.drifted) == (report[pair].delta, report[pair].drifted) for pair, node in arrows.items()
    )
    assert default  # the view at the defaults (0.5) is its own set of comparisons
