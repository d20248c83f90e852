"""The walk: the children of every model of the tree, one listing each.

`GET /api/models?filter=base_model:<id>` lists every direct child of a model whatever the relation
(the Hub tags each child `base_model:<parent>` besides `base_model:<relation>:<parent>`; the
relations are read from those tags; the sources are cited where the simulated Hub pins this, in
tests/auditor/simhub/test_hub_facts.py, `test_base_model_tags_list_every_relation_or_one`). A
listing cannot say whether a child has children of its own (`childrenModelCount` is refused on
the listing route: huggingface_hub PR #3182), so every model met is listed in turn, leaves
included: about one request per model of the tree.

Listings are sorted by `createdAt`, which never changes: the Hub's cursor is a keyset on the sort
key (the cursor of huggingface_hub PR #1176 decodes to `{"$or": [{"likes": 294, "_id": {"$gt":
...}}, {"likes": {"$lt": 294}}]}`), so a listing of more than one page sorted by a key that moves
while it is read (downloads, likes, trending) could skip or repeat children.

Listings run `crawl.concurrency` at a time. One that fails is tried again later in the crawl (three
times in all) and then left to the next crawl; after `crawl.max_consecutive_failures` failures in
a row the crawl stops, resumable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from auditor.errors import HubError
from auditor.store.crawls import Listing
from crawlers.records import LISTING_FIELDS

if TYPE_CHECKING:
    from crawlers.crawl import Crawl


#: Times a failed listing is tried in the same crawl before it is left for the next.
LISTING_ATTEMPTS = 3


def walk(crawl: Crawl, seeds: Iterable[str]) -> None:
    """List the children of `seeds` and, transitively, of every model those listings bring in.

    In a full crawl every child met is listed in turn; in an incremental one only children new to
    the tree are (the subtrees of known models are known).
    """
    crawl.stage = "listing children"
    tasks: deque[str] = deque(dict.fromkeys(seeds))
    queued = set(tasks)
    attempts: dict[str, int] = {}
    consecutive_failures = 0
    in_flight: dict[Future[list[dict[str, Any]]], str] = {}
    pool = ThreadPoolExecutor(max_workers=crawl.settings.concurrency, thread_name_prefix="crawl")
    finished = False
    try:
        while tasks or in_flight:
            while tasks and len(in_flight) < crawl.settings.concurrency:
                repo_id = tasks.popleft()
                in_flight[pool.submit(list_children, crawl, repo_id)] = repo_id
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                repo_id = in_flight.pop(future)
                try:
                    children = future.result()
                except HubError as err:
                    consecutive_failures += 1
                    attempts[repo_id] = attempts.get(repo_id, 0) + 1
                    if attempts[repo_id] < LISTING_ATTEMPTS:
                        tasks.append(repo_id)
                    else:
                        crawl.failed.append((repo_id, str(err)))
                    if consecutive_failures >= crawl.settings.max_consecutive_failures:
                        raise
                    continue
                consecutive_failures = 0
                for child in take_listing(crawl, repo_id, children):
                    if child not in queued:
                        queued.add(child)
                        tasks.append(child)
                crawl.flush()
                crawl.report(pending=len(tasks) + len(in_flight))
                crawl.check_stop()
        finished = True
    finally:
        # On an error or Ctrl-C, do not wait for requests still in flight: what they would bring
        # is listed again by the resumed crawl. Those waiting for the rate limit give up at once.
        if not finished:
            crawl.client.abort()
        pool.shutdown(wait=finished, cancel_futures=True)


def list_children(crawl: Crawl, repo_id: str) -> list[dict[str, Any]]:
    """Every direct child of `repo_id`, of every relation, as the listing's JSON."""
    children: list[dict[str, Any]] = []
    for page in crawl.client.list_pages(
        filters=(f"base_model:{repo_id}",), sort="createdAt", fields=LISTING_FIELDS, limit=crawl.settings.page_size
    ):
        children.extend(page.items)
    return children


def take_listing(crawl: Crawl, repo_id: str, children: list[dict[str, Any]]) -> list[str]:
    """Record one complete listing; return the models whose children must be listed next."""
    explore: list[str] = []
    for item in children:
        snapshot = crawl.parse(item, f"a child of {repo_id}")
        if snapshot is None:
            continue
        if snapshot.repo_id == repo_id:
            continue
        if snapshot.repo_id in crawl.seen:
            # Met before in this run. A full walk lists every model a listing shows, including one an
            # earlier attempt stored without listing it (the caller skips those already queued).
            if crawl.full and snapshot.repo_id not in crawl.listed:
                explore.append(snapshot.repo_id)
            continue
        crawl.accept(snapshot)
        if crawl.full or snapshot.repo_id not in crawl.known:
            explore.append(snapshot.repo_id)
    crawl.listed.add(repo_id)
    crawl.buffer.listings.append(Listing(repo_id, datetime.now(timezone.utc), len(children)))
    return explore
