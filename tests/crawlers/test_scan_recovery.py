"""A scan killed with SIGKILL at random points, then run again, stores what a clean scan stores."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from auditor.simhub import FaultRule, SimHub
from auditor.store import Store
from tests.helpers.crawls import assert_matches_truth, fresh_world, run_crawl, store_digest
from tests.helpers.env import HF_HOME

PAGE_SIZE = 40


def test_a_scan_killed_at_random_points_then_run_again_stores_what_a_clean_scan_stores(tmp_path: Path) -> None:
    world = fresh_world(size=1600, seed=7)
    store_path = tmp_path / "killed.duckdb"
    pages = -(-len(world.models) // PAGE_SIZE)
    rng = random.Random(20261202)
    # Kill once the Hub has served the k-th listing request, for three random k, then once more at
    # a random moment after the last page (while the tree is computed and stored).
    thresholds = sorted(rng.sample(range(3, pages), 3))
    with SimHub(world) as hub:
        hub.faults.set([FaultRule(kind="slow", path="/api/models", every=1, delay_s=0.01)])
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HF_HOME": HF_HOME,
            "HF_ENDPOINT": hub.url,
            "AUDITOR_CRAWL_STRATEGY": "scan",
            "AUDITOR_CRAWL_PAGE_SIZE": str(PAGE_SIZE),
            "AUDITOR_STORE_PATH": str(store_path),
        }
        killed_at: list[int] = []
        for threshold in [*thresholds, pages + 1]:
            crawler = subprocess.Popen(
                [sys.executable, "-m", "auditor", "crawl"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            deadline = time.monotonic() + 120
            while hub.stats.snapshot().get("route:list", 0) < threshold and crawler.poll() is None:
                assert time.monotonic() < deadline, "the scan never got there"
                time.sleep(0.002)
            if threshold > pages:
                time.sleep(rng.uniform(0.0, 0.4))
            if crawler.poll() is None:
                crawler.send_signal(signal.SIGKILL)
                killed_at.append(hub.stats.snapshot().get("route:list", 0))
            crawler.wait()
            assert crawler.returncode in (0, -signal.SIGKILL), crawler.stderr.read() if crawler.stderr else ""
        assert len(killed_at) >= 3, killed_at
        with Store.open(store_path, read_only=True) as store:
            [(status,)] = store.query("SELECT status FROM crawl_runs WHERE crawl_id = 1")
        assert status in ("running", "done")

        hub.faults.clear()
        finished = subprocess.run([sys.executable, "-m", "auditor", "crawl"], env=env, capture_output=True, text=True)
        assert finished.returncode == 0, finished.stderr
        served = hub.stats.snapshot()["route:list"]
        run_crawl(hub, tmp_path / "clean.duckdb", **{"crawl.strategy": "scan", "crawl.page_size": PAGE_SIZE})

    with Store.open(store_path, read_only=True) as store:
        runs = store.query_dicts("SELECT crawl_id, status, strategy, resumed FROM crawl_runs")
    assert runs[0]["crawl_id"] == 1 and runs[0]["status"] == "done" and runs[0]["strategy"] == "scan"
    assert store_digest(store_path) == store_digest(tmp_path / "clean.duckdb")
    assert_matches_truth(store_path, world)
    # Each kill cost at most the page it was reading: the scan was never started over.
    assert served <= 1 + pages + 2 * len(killed_at), (served, pages, killed_at)
