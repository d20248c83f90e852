"""Benchmark: requests and wall time of a full crawl and of a recrawl, on a large simulated Hub.

    python benchmarks/crawl.py [--size 100000] [--seed 1] [--fraction 0.01] [--concurrency 4]

The simulated Hub runs in its own process (as the Hub would), the crawl in this one, against a
fresh DuckDB file. Printed side by side, from one run:

- the lower bound of requests for a full crawl: one listing per relation per model with children
  (and the pages beyond the first where a model has more than 1000 children of one relation);
- the full crawl: requests, ratio to that bound (target <= 1.2), wall time (target < 5 minutes);
- after `--fraction` of the models changed (new derivatives, re-pushes, deletions, edited
  declarations): the incremental recrawl's requests, as a share of the full crawl's (target < 5%);
- the slower refresh cycle (children listings older than `crawl.refresh_days`, forced here), which
  also finds deleted models, and whether the store then equals the world's truth.

This is a benchmark that prints figures, not a test: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from auditor.config import load_config
from auditor.simhub.process import simhub_process
from auditor.simhub.server import lineage_digest
from auditor.store import Store
from crawlers import CrawlOptions, crawl_lineage


def _crawl(
    url: str, store_path: Path, concurrency: int, *, full: bool = False, refresh_days: float = 7.0
) -> tuple[Any, float]:
    resolved = load_config(
        flags={"hub.endpoint": url, "crawl.concurrency": concurrency, "crawl.refresh_days": refresh_days}
    )
    started = time.perf_counter()
    with Store.open(store_path) as store:
        result = crawl_lineage(resolved, store, CrawlOptions(full=full))
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    started = time.perf_counter()
    with simhub_process(f"size={args.size},seed={args.seed}") as hub:
        url = hub.url
        print(f"simulated Hub of {args.size} models at {url} (built in {time.perf_counter() - started:.1f} s)")
        truth = hub.admin("/_sim/truth")
        bound = truth["listing_lower_bound"]
        print(
            f"tree: {truth['nodes']} models, {truth['edges']} edges; lower bound {bound} listings"
            f" ({truth['listing_pages']} pages)"
        )

        with tempfile.TemporaryDirectory() as tmp:
            store_path = Path(tmp) / "bench.duckdb"
            hub.admin("/_sim/stats/reset", {})
            full, full_s = _crawl(url, store_path, args.concurrency)
            served = hub.admin("/_sim/stats")["total"]

            changes = hub.admin("/_sim/evolve", {"fraction": args.fraction, "seed": args.seed})
            changed = sum(len(v) for v in changes.values())
            again, again_s = _crawl(url, store_path, args.concurrency)

            refresh, refresh_s = _crawl(url, store_path, args.concurrency, refresh_days=0)
            after = hub.admin("/_sim/truth")
            with Store.open(store_path, read_only=True) as store:
                nodes = [r[0] for r in store.query("SELECT repo_id FROM models WHERE removed_at IS NULL")]
                edges = store.query(
                    "SELECT l.child, l.parent, l.relation FROM lineage l JOIN models m ON m.repo_id = l.child"
                    " WHERE m.removed_at IS NULL"
                )
            equal = lineage_digest(nodes, [tuple(e) for e in edges]) == after["digest"]
            size_mb = store_path.stat().st_size / 1e6

        rows = [
            ("full crawl: requests", f"{full.requests} (server counted {served})", ""),
            ("full crawl: requests / lower bound", f"{full.requests / bound:.3f}", "<= 1.2"),
            ("full crawl: wall time", f"{full_s:.1f} s", "< 300 s"),
            ("full crawl: models stored", f"{full.summary['totals']['models_in_tree']} of {truth['nodes']}", ""),
            (
                f"changes made ({args.fraction:.0%} of models)",
                f"{changed}: " + ", ".join(f"{len(v)} {k}" for k, v in changes.items()),
                "",
            ),
            ("recrawl: requests", f"{again.requests}", ""),
            ("recrawl: requests / full crawl", f"{again.requests / full.requests:.2%}", "< 5%"),
            ("recrawl: wall time", f"{again_s:.1f} s", ""),
            ("refresh cycle (deletions): requests", f"{refresh.requests} in {refresh_s:.1f} s", ""),
            (
                "store after refresh = truth",
                f"{equal} ({len(nodes)} models, {len(edges)} edges)",
                "True",
            ),
            ("store file size", f"{size_mb:.1f} MB", ""),
        ]
        width = max(len(r[0]) for r in rows)
        for name, value, target in rows:
            print(f"{name:<{width}}  {value:<40} {('target ' + target) if target else ''}")


if __name__ == "__main__":
    main()
