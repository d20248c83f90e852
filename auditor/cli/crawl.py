"""`auditor crawl`: learn the family trees into the store."""

from __future__ import annotations

import click

from auditor.cli.invocation import Invocation, configured
from auditor.cli.options import format_option
from auditor.config import CRAWL_STRATEGIES


@click.command()
@click.option(
    "--root",
    "roots",
    multiple=True,
    metavar="ID",
    help="Root model id (repeatable; default: the paper's ten).",
)
@click.option("--full", is_flag=True, help="Learn the whole tree again instead of reading the change feed.")
@click.option(
    "--strategy",
    type=click.Choice(CRAWL_STRATEGIES),
    default=None,
    help="How a full crawl learns the tree: walk (a listing per model), scan (the whole Hub listing),"
    " auto (the cheaper, estimated; crawl.strategy).",
)
@click.option("--concurrency", type=int, default=None, help="Listing requests in flight (crawl.concurrency).")
@click.option(
    "--sim",
    "sim_world",
    default=None,
    metavar="SPEC",
    help="Crawl a simulated Hub of this world (size=N,seed=S) started on loopback: no network needed.",
)
@format_option("table", "json")
@configured({"crawl.roots": "roots", "crawl.strategy": "strategy", "crawl.concurrency": "concurrency"})
def crawl(inv: Invocation, full: bool, sim_world: str | None, fmt: str) -> None:
    """Discover every descendant of the roots and store models and lineage edges.

    A full crawl (the first, --full, and every crawl.refresh_days) learns the whole tree by a walk
    (one listing per model of the tree) or a scan (every page of the Hub listing), whichever is
    estimated cheaper, and says which and why; later crawls read the Hub's change feed and cost
    requests in proportion to what changed. It paces itself by the Hub's rate-limit headers. An
    interrupted crawl is resumed by the next one.

    \b
    Examples:
      auditor crawl --store night.duckdb
      auditor crawl --root google/gemma-2-2b-it --format json
      auditor crawl --sim size=20000,seed=1 --strategy scan --store demo.duckdb
    """
    from contextlib import ExitStack

    from crawlers import CrawlOptions, crawl_lineage
    from reports.crawl import render_crawl_summary
    from reports.progress import CrawlProgressDisplay

    with ExitStack() as stack:
        if sim_world is not None:
            from auditor.simhub import SimHub, WorldSpec, build_world

            try:
                spec = WorldSpec.parse(sim_world)
            except ValueError as err:
                raise click.BadParameter(str(err), param_hint="--sim") from None
            hub = stack.enter_context(SimHub(build_world(spec)))
            # What a first scan would count on a real Hub: the simulated one's size is known here.
            inv.add_flags({"hub.endpoint": hub.url, "crawl.hub_models": spec.size})
            click.echo(f"crawling a simulated Hub of {spec.size} models at {hub.url}", err=True)
        store = stack.enter_context(inv.write_store())
        progress = stack.enter_context(CrawlProgressDisplay())
        result = crawl_lineage(inv.resolved, store, CrawlOptions(full=full, progress=progress, notify=progress.keep))
    render_crawl_summary(result.summary, fmt=fmt)
