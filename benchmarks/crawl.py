"""Benchmark: a walk and a scan of the same large simulated Hub, side by side, and the recrawl.

    python benchmarks/crawl.py [--size 200000] [--tree 20000] [--seed 1] [--fraction 0.01]

The simulated Hub (as strict as the real one: no `childrenModelCount` on listings, pages of at most
1,000, a keyset cursor, rate-limit headers on every answer) runs in its own process; each crawl is
an `auditor crawl` process of its own against a fresh DuckDB file, so that its wall time and peak
memory are its own. Printed side by side, from one run:

- requests of a full crawl by walk and by scan, against their bounds: a walk lists every model of
  the tree (nodes + roots, the roots' detail requests included); a scan reads every page of the
  Hub listing (pages + roots). Target: each at most 1.2x its bound.
- what `auto` chose on a fresh store, and its estimates. Target: the cheaper of the two.
- whether the two stores are equal (the digest of their `models` and `lineage` tables).
- after `--fraction` of the Hub's models changed (new derivatives, re-pushes, deletions, edited
  declarations), the incremental recrawl of each store. Target (after the scan): below 2% of the
  scan's requests.
- wall time and peak memory (RSS) of each crawl. Target: the full scan under 5 minutes.

This is a benchmark that prints figures, not a test: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.simhub.process import simhub_process
from auditor.store import Store, tree_digest


@dataclass
class Crawled:
    summary: dict[str, Any]
    seconds: float
    peak_mb: float

    @property
    def requests(self) -> int:
        return int(self.summary["requests"])


def crawl(url: str, store: Path, hub_models: int, *args: str) -> Crawled:
    """One `auditor crawl` process; its summary, wall time and peak resident memory."""
    env = {
        **os.environ,
        "HF_ENDPOINT": url,
        # What the first scan of a real Hub would count; the benchmark built this one, so it knows.
        "AUDITOR_CRAWL_HUB_MODELS": str(hub_models),
    }
    env.pop("HF_TOKEN", None)
    command = [sys.executable, "-m", "auditor", "crawl", "--store", str(store), "--format", "json", *args]
    with tempfile.TemporaryFile(mode="w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        assert process.stdout is not None
        out = process.stdout.read()
        # wait4 gives this child's own resource usage: its peak RSS (ru_maxrss, KiB on Linux).
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read()[-2000:]}")
    return Crawled(json.loads(out), seconds, usage.ru_maxrss / 1024)


def digest(store: Path) -> str:
    with Store.open(store, read_only=True) as opened:
        return tree_digest(opened)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--tree", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fraction", type=float, default=0.01)
    args = parser.parse_args()

    started = time.perf_counter()
    with simhub_process(f"size={args.size},seed={args.seed},tree={args.tree}") as hub:
        url = hub.url
        print(f"simulated Hub of {args.size:,} models at {url} (built in {time.perf_counter() - started:.1f} s)")
        truth = hub.admin("/_sim/truth")
        print(
            f"tree of the paper's roots: {truth['nodes']:,} models, {truth['edges']:,} edges;"
            f" the Hub listing: {truth['scan_pages']:,} pages"
        )
        with tempfile.TemporaryDirectory() as tmp:
            walked, scanned, fresh = Path(tmp) / "walk.duckdb", Path(tmp) / "scan.duckdb", Path(tmp) / "auto.duckdb"
            walk = crawl(url, walked, args.size, "--strategy", "walk")
            scan = crawl(url, scanned, args.size, "--strategy", "scan")
            same = digest(walked) == digest(scanned)
            auto = crawl(url, fresh, args.size, "--strategy", "auto")

            changes = hub.admin("/_sim/evolve", {"fraction": args.fraction, "seed": args.seed})
            changed = sum(len(v) for v in changes.values())
            again_scan = crawl(url, scanned, args.size)
            again_walk = crawl(url, walked, args.size)
            scan_size_mb = scanned.stat().st_size / 1e6
            walk_size_mb = walked.stat().st_size / 1e6

    plan = auto.summary["strategy"]
    cheaper = "walk" if walk.requests <= scan.requests else "scan"
    rows = [
        ("", "walk", "scan", "target"),
        ("full crawl: requests", f"{walk.requests:,}", f"{scan.requests:,}", ""),
        (
            "bound (nodes + roots | pages + roots)",
            f"{truth['walk_bound']:,}",
            f"{truth['scan_bound']:,}",
            "",
        ),
        (
            "requests / bound",
            f"{walk.requests / truth['walk_bound']:.3f}",
            f"{scan.requests / truth['scan_bound']:.3f}",
            "<= 1.2",
        ),
        ("wall time", f"{walk.seconds:.1f} s", f"{scan.seconds:.1f} s", "scan < 300 s"),
        ("peak memory (RSS)", f"{walk.peak_mb:.0f} MB", f"{scan.peak_mb:.0f} MB", ""),
        (
            "models in the tree",
            f"{walk.summary['totals']['models_in_tree']:,}",
            f"{scan.summary['totals']['models_in_tree']:,}",
            f"{truth['nodes']:,}",
        ),
        ("store file", f"{walk_size_mb:.0f} MB", f"{scan_size_mb:.0f} MB", ""),
        (
            f"recrawl after {args.fraction:.0%} changed ({changed:,} models)",
            f"{again_walk.requests:,} in {again_walk.seconds:.1f} s",
            f"{again_scan.requests:,} in {again_scan.seconds:.1f} s",
            "",
        ),
        (
            "recrawl / the scan's requests",
            f"{again_walk.requests / scan.requests:.2%}",
            f"{again_scan.requests / scan.requests:.2%}",
            "scan < 2%",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
    print(f"walk and scan stored the same models and lineage (digest): {same}")
    print(
        f"auto on a fresh store chose {plan['strategy']} (the cheaper was {cheaper}):"
        f" walk estimated {plan['walk']['requests']:,}, scan {plan['scan']['requests']:,};"
        f" it spent {auto.requests:,} requests"
    )
    print(f"auto's reason: {plan['reason']}")
    print("changes made: " + ", ".join(f"{len(v):,} {k}" for k, v in changes.items()))


if __name__ == "__main__":
    main()
