"""The lineage crawl against the simulated Hub, through the real huggingface_hub client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor.errors import CrawlError
from auditor.simhub import FaultRule, SimHub, World
from auditor.simhub.server import truth_figures
from auditor.store import Store
from crawlers import CrawlOptions, crawl_lineage
from crawlers.lineage import CrawlProgress
from tests.conftest import assert_matches_truth, fresh_world, run_crawl, sim_config, stored_lineage


def test_full_crawl_stores_the_worlds_truth_with_every_defect(hub: SimHub, world: World, tmp_path: Path) -> None:
    result = run_crawl(hub, tmp_path / "a.duckdb")

    assert result.mode == "full"
    assert_matches_truth(tmp_path / "a.duckdb", world)
    nodes, edges, _ = stored_lineage(tmp_path / "a.duckdb")
    # The unrelated family, models without a base model and cycles off the tree stay out.
    assert not {n for n in nodes if n.startswith("mistralai/")}
    assert not any("Mistral" in n for n in nodes)
    assert "defects/no-base-model" not in nodes
    assert "defects/island-a" not in nodes and "defects/only-itself" not in nodes
    assert "defects/only-ghost-parent" not in nodes
    # Kept as declared: a missing parent, and a parent from the unrelated family.
    assert ("defects/merge-with-ghost", "ghost/deleted-model", "merge") in edges
    assert ("defects/cross-family-merge", "mistralai/Mistral-7B-Instruct-v0.2", "merge") in edges
    # A self-reference is a defect, not an edge.
    assert not any(c == p for c, p, _ in edges)

    with Store.open(tmp_path / "a.duckdb", read_only=True) as store:
        defects = {(r, k) for r, k, _ in store.query("SELECT repo_id, kind, detail FROM lineage_defects")}
        placed = dict(store.query("SELECT repo_id, family FROM models WHERE removed_at IS NULL"))
        depth = dict(store.query("SELECT repo_id, depth FROM models WHERE removed_at IS NULL"))
        run = store.query_dicts("SELECT * FROM crawl_runs")
    assert ("defects/names-itself", "self_reference") in defects
    assert ("defects/two-parents", "multiple_parents") in defects
    assert ("defects/merge-with-ghost", "parent_outside_tree") in defects
    assert ("defects/cross-family-merge", "parent_outside_tree") in defects
    for member in ("defects/cycle-a", "defects/cycle-b", "defects/ring-1", "defects/ring-2", "defects/ring-3"):
        assert (member, "cycle") in defects
    assert placed["google/gemma-2-2b-it"] == "gemma" and depth["google/gemma-2-2b-it"] == 0
    assert placed["defects/ring-2"] == "llama" and depth["defects/ring-2"] == 2
    assert placed["defects/cross-family-merge"] == "phi"
    assert run[0]["status"] == "done" and run[0]["models_new"] == len(nodes)
    assert json.loads(run[0]["config"])["resolved"]["hub"]["endpoint"] == hub.url


def test_full_crawl_spends_about_one_request_per_listing(hub: SimHub, world: World, tmp_path: Path) -> None:
    result = run_crawl(hub, tmp_path / "a.duckdb")

    figures = truth_figures(world)
    # One page per relation per model with children, plus one request per root and the feed head.
    assert result.requests == hub.stats.total
    assert result.requests <= figures["listing_pages"] + len(world.roots) + 1
    assert result.requests <= 1.2 * figures["listing_lower_bound"]
    assert hub.stats.snapshot().get("route:info") == len(world.roots)


def test_faults_on_the_wire_give_the_same_store(tmp_path: Path) -> None:
    clean_world, faulty_world = fresh_world(), fresh_world()
    with SimHub(clean_world) as hub:
        run_crawl(hub, tmp_path / "clean.duckdb")
    with SimHub(faulty_world) as hub:
        hub.faults.set(
            [
                FaultRule(kind="rate_limit", path="/api/models", every=40, times=2, retry_after=0),
                FaultRule(kind="server", path="/api/models", probability=0.04, status=503),
                FaultRule(kind="server", path="/api/models", probability=0.02, status=502),
                FaultRule(kind="drop", path="/api/models", probability=0.03),
                FaultRule(kind="truncate", path="/api/models", probability=0.03),
                FaultRule(kind="slow", path="/api/models", probability=0.02, delay_s=0.05),
            ],
            seed=3,
        )
        result = run_crawl(hub, tmp_path / "faulty.duckdb")
        fired = {rule.kind: rule.fired for rule in hub.faults.rules}
    assert all(fired[kind] > 0 for kind in ("rate_limit", "server", "drop", "truncate", "slow")), fired
    assert result.requests > result.summary["listings"]  # the retries were spent and counted
    assert stored_lineage(tmp_path / "faulty.duckdb") == stored_lineage(tmp_path / "clean.duckdb")
    assert_matches_truth(tmp_path / "faulty.duckdb", faulty_world)


def test_recrawl_follows_the_change_feed_and_costs_what_changed(tmp_path: Path) -> None:
    world = fresh_world(size=3000, seed=5)
    store_path = tmp_path / "a.duckdb"
    with SimHub(world) as hub:
        full = run_crawl(hub, store_path)
        changes = world.evolve(0.02, seed=9)
        assert changes.new and changes.repushed and changes.deleted and changes.redeclared

        again = run_crawl(hub, store_path)

    assert again.mode == "incremental"
    assert again.requests < 0.05 * full.requests
    truth = world.truth()
    nodes, edges, shas = stored_lineage(store_path)
    # Every new derivative, re-push and edited declaration is in; only deletions wait for the
    # refresh cycle, because the Hub announces them nowhere.
    gone = set(changes.deleted)
    assert truth.nodes <= nodes
    assert all(shas[n] == truth.shas[n] for n in truth.nodes)
    assert truth.edges <= edges
    stale = nodes - truth.nodes
    assert stale and all(_descends_from(world, n, gone) for n in stale)
    with Store.open(store_path, read_only=True) as store:
        logged = dict(store.query("SELECT repo_id, change FROM model_changes WHERE crawl_id = 2"))
    for repo_id in changes.new:
        if repo_id in truth.nodes:
            assert logged[repo_id] == "new"
    for repo_id in changes.repushed:
        if repo_id in truth.nodes:
            assert logged[repo_id] == "changed"
    moved_out = [r for r in changes.redeclared if r not in truth.nodes]
    assert moved_out and all(logged[r] == "removed" for r in moved_out)
    joined = [r for r in changes.redeclared if r.startswith("orphanage/")]
    assert joined and all(f"{r}-0-child" in nodes for r in joined)  # the subtree came with it


def test_refresh_cycle_finds_deleted_models(tmp_path: Path) -> None:
    world = fresh_world(size=2000, seed=8)
    store_path = tmp_path / "a.duckdb"
    with SimHub(world) as hub:
        run_crawl(hub, store_path)
        changes = world.evolve(0.02, seed=4)
        run_crawl(hub, store_path, **{"crawl.refresh_days": 0})
    assert_matches_truth(store_path, world)
    with Store.open(store_path, read_only=True) as store:
        removed = dict(store.query("SELECT repo_id, removed_reason FROM models WHERE removed_crawl = 2"))
    assert set(changes.deleted) & set(removed)
    assert all(removed[r] == "unlisted" for r in changes.deleted if r in removed)


def test_full_recrawl_after_changes_gives_the_new_truth(tmp_path: Path) -> None:
    world = fresh_world(size=2000, seed=3)
    store_path = tmp_path / "a.duckdb"
    with SimHub(world) as hub:
        run_crawl(hub, store_path)
        world.evolve(0.03, seed=1)
        result = run_crawl(hub, store_path, full=True)
    assert result.mode == "full"
    assert_matches_truth(store_path, world)
    assert result.summary["totals"]["models_removed"] > 0 and result.summary["totals"]["models_new"] > 0


def test_interrupted_crawl_resumes_and_completes(hub: SimHub, world: World, tmp_path: Path) -> None:
    store_path = tmp_path / "a.duckdb"
    calls = 0

    def interrupt_after_some_listings(progress: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 60:
            raise KeyboardInterrupt

    with Store.open(store_path) as store, pytest.raises(KeyboardInterrupt):
        crawl_lineage(sim_config(hub), store, CrawlOptions(progress=interrupt_after_some_listings))
    with Store.open(store_path, read_only=True) as store:
        run = store.query_dicts("SELECT status, error, requests FROM crawl_runs")[0]
        stored_before = store.query("SELECT count(*) FROM models")[0][0]
        listed_before = store.query("SELECT count(*) FROM crawl_listings")[0][0]
    assert run["status"] == "failed" and run["error"] == "interrupted"
    assert stored_before > len(world.roots)

    requests_before = hub.stats.total
    result = run_crawl(hub, store_path)

    assert result.resumed and result.crawl_id == 1
    assert_matches_truth(store_path, world)
    figures = truth_figures(world)
    # The resumed part listed only what was not listed yet (an interrupted run flushes first).
    assert listed_before >= 50
    assert hub.stats.total - requests_before <= figures["listing_pages"] - listed_before
    assert result.requests == hub.stats.total


def test_a_hub_that_stays_down_fails_the_crawl_resumably(hub: SimHub, world: World, tmp_path: Path) -> None:
    store_path = tmp_path / "a.duckdb"
    # The feed head and the roots come first and succeed; every listing after them fails.
    hub.faults.set([FaultRule(kind="server", path="/api/models", every=1, after=1 + len(world.roots))])
    with pytest.raises(Exception) as caught:
        run_crawl(hub, store_path, **{"hub.max_retries": 1, "crawl.max_consecutive_failures": 5})
    assert "kept failing" in str(caught.value) or "listings failed" in str(caught.value)
    with Store.open(store_path, read_only=True) as store:
        assert store.query("SELECT status FROM crawl_runs")[0][0] == "failed"

    hub.faults.clear()
    result = run_crawl(hub, store_path)
    assert result.resumed
    assert_matches_truth(store_path, world)


def test_missing_roots_are_reported_and_the_rest_is_crawled(hub: SimHub, world: World, tmp_path: Path) -> None:
    roots = ("microsoft/Phi-3.5-mini-instruct", "nobody/does-not-exist")
    result = run_crawl(hub, tmp_path / "a.duckdb", **{"crawl.roots": roots})
    assert result.summary["missing_roots"] == ["nobody/does-not-exist"]
    nodes, _, _ = stored_lineage(tmp_path / "a.duckdb")
    assert nodes == world.truth(roots).nodes

    with pytest.raises(CrawlError, match="none of the roots exists"):
        run_crawl(hub, tmp_path / "b.duckdb", **{"crawl.roots": ("nobody/x", "nobody/y")})


def _descends_from(world: World, repo_id: str, ancestors: set[str]) -> bool:
    """Whether some chain of declared parents leads from `repo_id` to one of `ancestors`."""
    seen: set[str] = set()
    stack = [repo_id]
    while stack:
        node = stack.pop()
        if node in ancestors:
            return True
        if node in seen or node not in world.models:
            continue
        seen.add(node)
        stack.extend(world.models[node].declared)
    return False


def test_an_interrupted_recrawl_still_lists_the_subtrees_it_let_in(tmp_path: Path) -> None:
    world = fresh_world(size=2000, seed=5)
    store_path = tmp_path / "a.duckdb"
    with SimHub(world) as hub:
        run_crawl(hub, store_path)
        changes = world.evolve(0.03, seed=9)
        joined = [r for r in changes.redeclared if r.startswith("orphanage/")]
        assert len(joined) >= 2

        def interrupt_at_the_first_listing(progress: CrawlProgress) -> None:
            if progress.stage == "listing children":
                raise KeyboardInterrupt

        with Store.open(store_path) as store, pytest.raises(KeyboardInterrupt):
            crawl_lineage(sim_config(hub), store, CrawlOptions(progress=interrupt_at_the_first_listing))
        result = run_crawl(hub, store_path)

    assert result.resumed and result.mode == "incremental"
    nodes, _, _ = stored_lineage(store_path)
    assert all(f"{r}-0-child" in nodes and f"{r}-1-child" in nodes for r in joined)
    assert world.truth().nodes <= nodes


def test_refresh_covers_parents_met_only_through_the_feed(tmp_path: Path) -> None:
    world = fresh_world(size=800, seed=2)
    store_path = tmp_path / "a.duckdb"
    with SimHub(world) as hub:
        run_crawl(hub, store_path)
        leaf = next(
            n
            for n in sorted(world.truth().nodes)
            if not world.children_count(n) and "/" in n and world.models[n].relation == "finetune"
        )
        world.add_model("late/first-child", declared=[leaf], relation="quantized", family=world.models[leaf].family)
        run_crawl(hub, store_path)
        assert "late/first-child" in stored_lineage(store_path)[0]
        world.delete("late/first-child")
        run_crawl(hub, store_path, **{"crawl.refresh_days": 0})
    assert "late/first-child" not in stored_lineage(store_path)[0]
    assert_matches_truth(store_path, world)


def test_malformed_metadata_neither_stops_a_crawl_nor_removes_a_live_model(tmp_path: Path) -> None:
    world = fresh_world(size=800, seed=4)
    store_path = tmp_path / "a.duckdb"
    with SimHub(world) as hub:
        run_crawl(hub, store_path)
        stranger = next(m.repo_id for m in world.live_models() if m.family == "mistral" and m.declared)
        member = next(n for n in sorted(world.truth().nodes) if world.models[n].relation == "adapter")
        for repo_id in (stranger, member):
            world.models[repo_id].downloads = "1.2k"  # type: ignore[assignment]  # as a broken Hub answer
            world.repush(repo_id)
        result = run_crawl(hub, store_path, **{"crawl.refresh_days": 0})
    assert result.summary["skipped_items"] >= 2
    nodes, _, _ = stored_lineage(store_path)
    assert member in nodes  # listed under its parent, so it exists, even though it did not parse


def test_a_crawl_that_replaces_an_abandoned_one_lists_what_it_let_in(tmp_path: Path) -> None:
    world = fresh_world(size=2000, seed=5)
    store_path = tmp_path / "a.duckdb"
    with SimHub(world) as hub:
        run_crawl(hub, store_path)
        changes = world.evolve(0.03, seed=9)
        joined = [r for r in changes.redeclared if r.startswith("orphanage/")]

        def interrupt_at_the_first_listing(progress: CrawlProgress) -> None:
            if progress.stage == "listing children":
                raise KeyboardInterrupt

        with Store.open(store_path) as store, pytest.raises(KeyboardInterrupt):
            crawl_lineage(sim_config(hub), store, CrawlOptions(progress=interrupt_at_the_first_listing))
        roots = (*world.roots, "nobody/new-root")  # other roots: the unfinished run is not resumed
        result = run_crawl(hub, store_path, **{"crawl.roots": roots})
    assert not result.resumed
    nodes, _, _ = stored_lineage(store_path)
    assert joined and all(f"{r}-0-child" in nodes and f"{r}-1-child" in nodes for r in joined)
