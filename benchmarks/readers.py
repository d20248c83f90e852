"""Benchmark: how long a report waits for a writing process to let it in.

    python benchmarks/readers.py [--readers 40] [--seconds 20]

A writer process (a `Store`, as a crawl or a cycle holds one) commits short transactions every
5 ms, with a half-second pause every 100 of them, as a cycle alternates batches and generation.
Meanwhile this process opens the store read-only again and again, as `auditor report` does, and
times each open. Printed: the readers' median, 90th-percentile and longest waits, how many
transactions the writer committed meanwhile (it is never held up for long), and how many times it
closed its connection for a waiting reader. A benchmark that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from auditor.store import Store

WRITER = """
import sys, time
from auditor.store import Store
with Store.open(sys.argv[1]) as store:
    print("writing", flush=True)
    i, end = 1, time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        with store.transaction() as con:
            con.execute("INSERT INTO ledger VALUES (?)", [i])
            con.execute("INSERT INTO ledger VALUES (?)", [-i])
        i += 1
        time.sleep(0.005 if i % 100 else 0.5)
    print(i - 1, store.yields, flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    path = Path(tempfile.mkdtemp(prefix="bench-readers-")) / "s.duckdb"
    with Store.open(path) as store:
        store.query("CREATE TABLE ledger (i INTEGER)")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(args.seconds)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    waits = []
    unbalanced = 0
    while writer.poll() is None and len(waits) < args.readers:
        started = time.monotonic()
        with Store.open(path, read_only=True, busy_timeout_s=10) as reader:
            waits.append(time.monotonic() - started)
            unbalanced += reader.query("SELECT coalesce(sum(i), 0) FROM ledger")[0][0] != 0
        time.sleep(0.2)
    committed, yields = (int(x) for x in writer.stdout.read().split())
    writer.wait()
    waits.sort()
    rows = [
        ("readers", f"{len(waits)}"),
        ("wait: median", f"{statistics.median(waits) * 1000:.0f} ms"),
        ("wait: 90th percentile", f"{waits[int(len(waits) * 0.9)] * 1000:.0f} ms"),
        ("wait: longest", f"{waits[-1] * 1000:.0f} ms"),
        ("readers that saw half a transaction", f"{unbalanced}"),
        ("writer: transactions committed", f"{committed} in {args.seconds:g} s"),
        ("writer: connection closed for a reader", f"{yields} times"),
    ]
    for name, value in rows:
        print(f"{name:<40} {value}")


if __name__ == "__main__":
    main()
