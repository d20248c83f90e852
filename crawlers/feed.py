"""The change feed: every model on the Hub, newest `lastModified` first, back to a watermark.

The Hub has no public change feed; `sort=lastModified` over the whole listing is the nearest thing
(HUB_API.md): a new model and a new commit both move a model to the head. An incremental crawl reads
it back to the previous crawl's high-water mark (less `crawl.feed_overlap_minutes`), so its cost is
one page per 1,000 models changed on the Hub, whatever the size of the tree.

`lastModified` is the one sort key here that changes while it is read, and the Hub's cursor is a
keyset on the sort key (huggingface_hub PR #1176): a model committed to while the feed is read
jumps above the cursor and is not met this time. Nothing is lost: its new `lastModified` is after
the high-water mark this crawl records (the newest it read), and the next crawl reads back to it.
Deletions, renames and visibility changes do not show in the feed; full crawls find those.

Only fields the listing route accepts are asked for (`LISTING_FIELDS`): lineage comes from the
`base_model:` tags. When the Hub-wide index is current (the last full crawl was a scan), every feed
model updates it, so that the index stays whole between scans.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from auditor.lineage import ModelSnapshot
from auditor.store.crawls import CrawlRun
from auditor.store.hubindex import IndexEntry
from crawlers.records import LISTING_FIELDS

if TYPE_CHECKING:
    from crawlers.crawl import Crawl


def read_changes(crawl: Crawl, run: CrawlRun, *, keep_index: bool) -> list[ModelSnapshot]:
    """Read the feed back to `run.feed_since`; return the feed models that belong to the tree.

    A feed model belongs to the tree when it is in it already, or when one of the models its tags
    name as a base model does (to a fixpoint, so that a new chain A -> B -> C joins whole). A
    model already in the tree is returned whatever it now declares: the placement at the end of
    the crawl decides whether it stays.
    """
    assert run.feed_since is not None
    crawl.stage = "reading the change feed"
    feed: dict[str, ModelSnapshot] = {}
    newest: datetime | None = None
    for page in crawl.client.list_pages(sort="lastModified", fields=LISTING_FIELDS, limit=crawl.settings.page_size):
        stop = False
        entries: list[IndexEntry] = []
        without_parents: list[str] = []
        for item in page.items:
            # The feed covers the whole Hub: one malformed stranger must not stop the crawl.
            snapshot = crawl.parse(item, "a model in the change feed")
            if snapshot is None:
                continue
            if snapshot.last_modified is not None and newest is None:
                newest = snapshot.last_modified
            if snapshot.last_modified is None or snapshot.last_modified < run.feed_since:
                stop = True
                break
            feed.setdefault(snapshot.repo_id, snapshot)  # newest first: a repeat is older
            if snapshot.listed_under:
                entries.append(IndexEntry.of(snapshot))
            else:
                without_parents.append(snapshot.repo_id)
        if keep_index:
            crawl.index.update(run.crawl_id, entries, without_parents)
        crawl.report()
        crawl.check_stop()
        if stop:
            break
    if newest is not None:
        crawl.ledger.set_watermark(run.crawl_id, max(newest, run.feed_watermark or newest))

    in_tree = set(crawl.known) | set(crawl.root_ids)
    accepted: list[ModelSnapshot] = []
    waiting = dict(feed)
    progressed = True
    while progressed:
        progressed = False
        for repo_id, snapshot in list(waiting.items()):
            if repo_id in in_tree or any(parent in in_tree for parent in snapshot.listed_under):
                in_tree.add(repo_id)
                accepted.append(snapshot)
                del waiting[repo_id]
                progressed = True
    return accepted


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
