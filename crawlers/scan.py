"""The scan: every page of the whole Hub listing, with the tree computed here.

One page is `crawl.page_size` models (the Hub serves at most 1,000), so a scan costs about
(models on the Hub) / 1,000 requests whatever the size of the tree: about 2,200 for the real Hub's
2.2M models, where a walk of the paper's ten trees costs tens of thousands. Pages are sorted by
`createdAt` (what `HfApi.list_models(sort="created_at")` sends: hf_api.py lines 2468-2477), which
never changes, so the Hub's keyset cursor neither skips nor repeats a model (huggingface_hub PR
#1176 shows the cursor: a keyset on the sort key and `_id`). Pages come one after another: each
needs the cursor of the one before.

Each page lands in the Hub-wide index (`auditor.store.hubindex`) in one transaction with the URL
of the next page, so a scan killed at any moment resumes at the first page it had not stored.
Once the last page is in, the tree is computed in SQL from the roots along the `base_model:` tags
(the same edges a walk's `filter=base_model:<id>` follows), and the snapshots of its models are
stored from the index. A model created while the scan ran is not in it (it sorts before the
cursor); its `lastModified` is after the feed's high-water mark taken at the start, so the next
incremental crawl reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from auditor.store.crawls import CrawlRun
from auditor.store.hubindex import IndexEntry
from crawlers.records import LISTING_FIELDS

if TYPE_CHECKING:
    from crawlers.crawl import Crawl


def scan_hub(crawl: Crawl, run: CrawlRun) -> None:
    """Read (or finish reading) every page of the Hub listing, then store the tree from the index."""
    index = crawl.index
    state = index.scan_state(run.crawl_id)
    crawl.pages = state.pages if state else 0
    plan = run.strategy_plan or {}
    crawl.pages_expected = _expected_pages(plan, len(crawl.roots))
    if state is None or not state.done:
        crawl.stage = "scanning the Hub listing"
        start = state.next_url if state is not None else None
        for page in crawl.client.list_pages(
            sort="createdAt", fields=LISTING_FIELDS, limit=crawl.settings.page_size, start_url=start
        ):
            entries = [entry for item in page.items if (entry := _entry(crawl, item)) is not None]
            index.save_page(run.crawl_id, entries, listed=len(page.items), next_url=page.next_url)
            crawl.pages += 1
            crawl.report()
            crawl.check_stop()
        state = index.scan_state(run.crawl_id)
    assert state is not None and state.done
    crawl.scan_figures = {"pages": state.pages, "hub_models": state.listed, "indexed": state.indexed}

    crawl.stage = "computing the tree"
    roots = [r for r in crawl.root_ids if r in crawl.seen]
    members = index.descendants(roots, since_crawl=run.crawl_id)
    # Models of the store that the index holds but no root reaches any more: they re-declared their
    # parents. Their snapshots are stored too, so that they leave the tree as they are now.
    outside = set(index.indexed_among(crawl.ledger.vanished(run.crawl_id), since_crawl=run.crawl_id))
    crawl.materialize(sorted({*members, *outside} - set(crawl.root_ids)))
    crawl.flush(force=True)


def _entry(crawl: Crawl, item: object) -> IndexEntry | None:
    """The index entry of one listed model, or None when its tags name no base model."""
    snapshot = crawl.parse(item, "a model of the Hub listing")
    if snapshot is None or not snapshot.listed_under:
        return None
    return IndexEntry.of(snapshot)


def _expected_pages(plan: dict[str, object], n_roots: int) -> int | None:
    """The pages the plan expected (its estimate less the roots' and the feed head's requests)."""
    scan = plan.get("scan")
    if isinstance(scan, dict) and isinstance(scan.get("requests"), int):
        return max(1, int(scan["requests"]) - n_roots - 1)
    return None
