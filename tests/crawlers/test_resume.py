"""Crawls that stop half-way, and the crawls that finish them, against the strict simulated Hub."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from auditor.errors import CrawlError
from auditor.lineage import RELATIONS
from auditor.simhub import FaultRule, SimHub, World
from auditor.store import Store
from crawlers import CrawlOptions, CrawlProgress, crawl_lineage
from crawlers.quota import RATE_LIMITS
from tests.helpers.crawls import assert_matches_truth, fresh_world, interrupt_after, run_crawl, sim_config


def _parent_of_a_parent(world: World) -> tuple[str, str]:
    """(F, C): a model of the tree, not a root, with a child C that has children of its own."""
    truth = world.truth()
    for node in sorted(truth.nodes - set(world.roots)):
        if node.startswith("defects/"):
            continue
        for relation in RELATIONS:
            for child in sorted(world._children.get((node, relation), ())):
                if world.children_count(child):
                    return node, child
    raise AssertionError("no model with grandchildren in this world")


def test_a_walk_whose_listings_failed_lists_what_they_hid_when_it_resumes(tmp_path: Path) -> None:
    world = fresh_world(size=800, seed=4)
    store_path = tmp_path / "a.duckdb"
    with SimHub(world) as hub:
        run_crawl(hub, store_path, **{"crawl.strategy": "walk"})
        parent, child = _parent_of_a_parent(world)
        world.add_model("newbie/grandchild", declared=[child], relation="finetune", family=world.models[child].family)
        # The listing of `parent` fails however often it is asked, for this whole crawl.
        hub.faults.set([FaultRule(kind="server", path="/api/models", query=f"filter=base_model:{parent}&", every=1)])
        with pytest.raises(CrawlError, match="listings failed"):
            run_crawl(hub, store_path, full=True, **{"crawl.strategy": "walk", "hub.max_retries": 0})
        requests_before = hub.stats.total
        hub.faults.clear()
        result = run_crawl(hub, store_path, **{"crawl.strategy": "walk"})
        spent = hub.stats.total - requests_before
    assert result.resumed and result.mode == "full"
    # Nothing but the roots was asked for on its detail route, by either attempt: the models below
    # the failed listing had not vanished, they were not listed yet.
    assert result.summary["confirmed"] == {}
    assert hub.stats.snapshot()["route:info"] == 2 * len(world.roots)
    assert spent < 0.2 * len(world.truth().nodes)
    assert_matches_truth(store_path, world)


def test_a_walk_left_unfinished_by_an_older_auditor_lists_again_what_the_migration_dropped(tmp_path: Path) -> None:
    world = fresh_world(size=800, seed=4)
    store_path = tmp_path / "a.duckdb"
    with SimHub(world) as hub:
        with Store.open(store_path) as store, pytest.raises(KeyboardInterrupt):
            config = sim_config(hub, **{"crawl.strategy": "walk"})
            crawl_lineage(config, store, CrawlOptions(progress=interrupt_after(200)))
        # Migration 0006 drops the listings of unfinished runs (schema 5 kept them per relation).
        with Store.open(store_path) as store, store.transaction() as con:
            con.execute("DELETE FROM crawl_listings WHERE crawl_id = 1")
        result = run_crawl(hub, store_path)
    assert result.resumed and result.summary["confirmed"] == {}
    assert_matches_truth(store_path, world)


def test_ctrl_c_while_the_crawl_waits_for_the_rate_limit_stops_it_at_once(tmp_path: Path) -> None:
    world = fresh_world(size=300, seed=1)
    stopped_at: list[float] = []

    def interrupt_once_paused(progress: CrawlProgress) -> None:
        # Once a listing thread waits for the window to reset (30 s away), Ctrl-C.
        if not stopped_at and RATE_LIMITS.usage(hub.url).pauses > 0:
            stopped_at.append(time.monotonic())
            raise KeyboardInterrupt

    with SimHub(world, rate_limit=(30, 30)) as hub:
        with Store.open(tmp_path / "a.duckdb") as store, pytest.raises(KeyboardInterrupt):
            crawl_lineage(
                sim_config(hub, **{"crawl.strategy": "walk"}), store, CrawlOptions(progress=interrupt_once_paused)
            )
        served = hub.stats.total
        deadline = time.monotonic() + 5
        while any(t.name.startswith("crawl") for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.05)
        lingering = [t.name for t in threading.enumerate() if t.name.startswith("crawl")]
        time.sleep(0.3)
        assert hub.stats.total == served  # nothing went out after the interrupt
    assert not lingering, lingering  # the threads that waited for the window gave up (it resets in 30 s)
    assert stopped_at and time.monotonic() - stopped_at[0] < 10
