"""Simulated worlds and lineage crawls against them, and checks of what a crawl stored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor.config import ResolvedConfig, load_config
from auditor.simhub import SimHub, World, WorldSpec, build_world
from auditor.store import Store, tree_digest
from crawlers import CrawlOptions, CrawlProgress, CrawlResult, crawl_lineage


def fresh_world(size: int = 1500, seed: int = 11) -> World:
    """A new world (worlds are mutable, so every test that changes one builds its own)."""
    return build_world(WorldSpec(size=size, seed=seed))


def sim_config(hub: SimHub, **flags: Any) -> ResolvedConfig:
    """Config pointing at `hub`, with fast retries (the backoff policy itself is the client's).

    `auto` is told the simulated Hub's true size (a real Hub's is learned by the first scan).
    """
    base: dict[str, Any] = {
        "hub.endpoint": hub.url,
        "hub.backoff_s": 0.01,
        "crawl.concurrency": 4,
        "crawl.hub_models": max(1, len(hub.world.models)),
    }
    base.update(flags)
    return load_config(flags=base)


def run_crawl(hub: SimHub, store_path: Path, *, full: bool = False, **flags: Any) -> CrawlResult:
    with Store.open(store_path) as store:
        return crawl_lineage(sim_config(hub, **flags), store, CrawlOptions(full=full))


def interrupt_after(reports: int) -> Callable[[CrawlProgress], None]:
    """A crawl's progress callback that presses Ctrl-C (raises KeyboardInterrupt) at its `reports`-th call."""
    calls = 0

    def interrupt(progress: CrawlProgress) -> None:
        nonlocal calls
        calls += 1
        if calls == reports:
            raise KeyboardInterrupt

    return interrupt


def interrupt_once_the_feed_is_read(progress: CrawlProgress) -> None:
    """A crawl's progress callback that presses Ctrl-C at the first report after the change feed."""
    if progress.stage != "reading the change feed":
        raise KeyboardInterrupt


def stored_lineage(store_path: Path) -> tuple[set[str], set[tuple[str, str, str]], dict[str, str]]:
    """(models in the tree, their edges, their shas) as the store holds them."""
    with Store.open(store_path, read_only=True) as store:
        rows = store.query("SELECT repo_id, sha FROM models WHERE removed_at IS NULL")
        edges = store.query(
            "SELECT l.child, l.parent, l.relation FROM lineage l JOIN models m ON m.repo_id = l.child"
            " WHERE m.removed_at IS NULL"
        )
    return {r[0] for r in rows}, {(c, p, r) for c, p, r in edges}, {r[0]: r[1] for r in rows}


def store_digest(store_path: Path) -> str:
    """The digest of a store's `models` and `lineage` tables (`auditor.store.tree_digest`)."""
    with Store.open(store_path, read_only=True) as store:
        return tree_digest(store)


def assert_matches_truth(store_path: Path, world: World) -> None:
    truth = world.truth()
    nodes, edges, shas = stored_lineage(store_path)
    assert sorted(nodes - truth.nodes) == [], "models stored that are not in the tree"
    assert sorted(truth.nodes - nodes) == [], "models of the tree missing from the store"
    assert sorted(edges - truth.edges) == [], "edges stored that were not declared"
    assert sorted(truth.edges - edges) == [], "declared edges missing from the store"
    assert shas == dict(truth.shas)
