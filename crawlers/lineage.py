"""The lineage crawl: every descendant of the roots, through all four relations, transitively.

Requests are the scarce resource, so the crawl spends them where the answer can change:

- **Full crawl** (the first one, or `--full`): from each root, list the children of every model
  that has children, one listing per relation the Hub counts (`childrenModelCount`). A listing
  page carries each child's own counts, so a leaf (most models) costs no request of its own. The
  cost is one page per relation per model with children: the lower bound for any crawl that
  learns the tree from the Hub.
- **Incremental crawl** (every later one): read the Hub's change feed (all models, newest
  `lastModified` first) back to the previous crawl's high-water mark. New derivatives, re-pushed
  models and edited declarations all move a model to the head of that feed, so the cost follows
  what changed on the Hub, not the size of the tree. A model that joins the tree with children of
  its own has its subtree listed. Children of a model are listed again once their last listing is
  `crawl.refresh_days` old: that refreshes downloads and likes on a slower cycle, and it is the only
  way to learn of deleted models, which the Hub announces nowhere.

Writes are batched and each batch lands together with the listings it came from, so a crawl
killed at any moment loses nothing it stored; the next crawl resumes the unfinished run (the
models it saw whose children it had not listed yet) and then closes it. Defective metadata never
stops a crawl: cycles terminate (each model is visited once), self-references are defects, and
missing parents are kept as declared (see docs/lineage.md).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from auditor.config import ResolvedConfig
from auditor.errors import CrawlError, HubError, StopRequested
from auditor.lineage import RELATIONS, ModelSnapshot
from auditor.store import LineageStore, Store
from auditor.store.lineage import CrawlRun, KnownModel, Listing
from auditor.textsafety import strip_control
from crawlers.hub import HubClient
from crawlers.hubjson import LINEAGE_FIELDS, parse_model

log = logging.getLogger(__name__)

#: Seconds between two writes at most, so that a killed crawl loses little work.
FLUSH_INTERVAL_S = 2.0
#: Times a failed listing is tried again later in the same crawl before it is left for the next.
LISTING_ATTEMPTS = 3


@dataclass(frozen=True)
class CrawlProgress:
    mode: str
    listed: int
    pending: int
    models_seen: int
    requests: int
    failed: int
    stage: str


@dataclass(frozen=True)
class CrawlOptions:
    #: Crawl the whole tree from the roots even when an earlier crawl exists.
    full: bool = False
    #: Called on the crawling thread after every listing; must be quick.
    progress: Callable[[CrawlProgress], None] | None = None
    #: Polled after every listing; when it returns True the crawl stops (resumably) with
    #: `StopRequested`, as if interrupted.
    should_stop: Callable[[], bool] | None = None


@dataclass(frozen=True)
class CrawlResult:
    crawl_id: int
    mode: str
    resumed: bool
    requests: int
    seconds: float
    summary: dict[str, Any]


@dataclass
class _Task:
    repo_id: str
    relation: str
    attempts: int = 0


@dataclass
class _Buffer:
    snapshots: list[ModelSnapshot] = field(default_factory=list)
    listings: list[Listing] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return len(self.snapshots) + len(self.listings) + len(self.unlisted)


def crawl_lineage(resolved: ResolvedConfig, store: Store, options: CrawlOptions | None = None) -> CrawlResult:
    """Crawl the roots' family trees into the store and return the run's summary.

    >>> from auditor.config import load_config                              # doctest: +SKIP
    >>> with Store.open("auditor.duckdb") as store:                         # doctest: +SKIP
    ...     result = crawl_lineage(load_config(), store)
    ...     print(result.summary["totals"])
    """
    return _Crawl(resolved, store, options or CrawlOptions()).run()


class _Crawl:
    def __init__(self, resolved: ResolvedConfig, store: Store, options: CrawlOptions) -> None:
        self.config = resolved.config
        self.provenance = resolved.provenance()
        self.settings = resolved.config.crawl
        self.roots = resolved.config.crawl.roots
        self.options = options
        self.ledger = LineageStore(store)
        self.client = HubClient(resolved.config.hub)
        self.buffer = _Buffer()
        self.seen: set[str] = set()
        self.listed: set[tuple[str, str]] = set()
        self.known: dict[str, KnownModel] = {}
        self.known_children: dict[tuple[str, str], set[str]] | None = None
        self.refresh_tasks: set[tuple[str, str]] = set()
        self.failed: list[tuple[_Task, str]] = []
        self.missing_roots: list[str] = []
        self.requests_flushed = 0
        self.stage = "starting"
        self.run_row: CrawlRun | None = None
        self.full = False
        self.unfinished: list[int] = []
        self.skipped_items = 0

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> CrawlResult:
        started = time.monotonic()
        run, resumed = self._open_run()
        self.run_row = run
        full = self.full = run.mode == "full"
        try:
            if full:
                tasks = self._full_tasks(run)
            else:
                tasks = self._incremental_tasks(run)
            self._execute(tasks)
            self._flush(force=True)
            if self.failed:
                raise CrawlError(
                    f"{len(self.failed)} listings failed in crawl {run.crawl_id}, for example"
                    f" {self.failed[0][0].repo_id} ({self.failed[0][0].relation}): {self.failed[0][1]}",
                    hint="run `auditor crawl` again: it resumes this crawl and lists only what is missing",
                )
        except BaseException as err:
            self._flush(force=True, quiet=True)
            reason = "interrupted" if isinstance(err, KeyboardInterrupt) else str(err)
            self.ledger.fail_run(run.crawl_id, reason, self._unflushed_requests())
            raise
        self.stage = "finishing"
        summary = self.ledger.finish_run(
            run.crawl_id,
            roots=self.roots,
            full=full,
            requests=self._unflushed_requests(),
            extra_summary={
                "mode": run.mode,
                "resumed": resumed,
                "missing_roots": self.missing_roots,
                "failed_listings": len(self.failed),
                "skipped_items": self.skipped_items,
                "listings": len(self.listed),
            },
        )
        return CrawlResult(
            crawl_id=run.crawl_id,
            mode=run.mode,
            resumed=resumed,
            requests=int(summary["requests"]),
            seconds=time.monotonic() - started,
            summary=summary,
        )

    def _open_run(self) -> tuple[CrawlRun, bool]:
        self.unfinished = self.ledger.unfinished_runs_since_last_done()
        latest = self.ledger.latest_run()
        if (
            latest is not None
            and latest.status != "done"
            and set(latest.roots) == set(self.roots)
            and not (self.options.full and latest.mode != "full")
        ):
            self.ledger.mark_resumed(latest.crawl_id)
            self.seen = self.ledger.seen_in_run(latest.crawl_id)
            self.listed = self.ledger.listed_in_run(latest.crawl_id)
            return latest, True
        if latest is not None and latest.status == "running":
            self.ledger.abandon_unfinished()
        previous = self.ledger.last_done_run()
        full = self.options.full or previous is None or previous.feed_watermark is None
        self.stage = "reading the change feed head" if full else "reading the change feed"
        if full:
            watermark = self._feed_head()
            since = None
        else:
            assert previous is not None and previous.feed_watermark is not None
            watermark = previous.feed_watermark
            since = previous.feed_watermark - timedelta(minutes=self.settings.feed_overlap_minutes)
        run = self.ledger.start_run(
            mode="full" if full else "incremental",
            endpoint=self.client.endpoint,
            roots=self.roots,
            config=self.provenance,
            feed_watermark=watermark,
            feed_since=since,
        )
        return run, False

    def _feed_head(self) -> datetime | None:
        """The newest lastModified on the Hub: where the next incremental crawl reads back to."""
        for page in self.client.list_pages(sort="lastModified", fields=("lastModified",), limit=1):
            for item in page:
                return _parse_time(item.get("lastModified"))
            break
        return None

    # -- planning -------------------------------------------------------------------------------

    def _full_tasks(self, run: CrawlRun) -> deque[_Task]:
        self.stage = "fetching roots"
        for root in self.roots:
            if root in self.seen:
                continue
            item = self.client.model(root, LINEAGE_FIELDS)
            if item is None:
                self.missing_roots.append(root)
                log.warning("root %s does not exist on the Hub; it is skipped", root)
                continue
            self._accept(parse_model(item))
        if len(self.missing_roots) == len(self.roots):
            raise CrawlError(
                "none of the roots exists on the Hub: " + ", ".join(self.roots),
                hint="check the ids in [crawl] roots or --root, and HF_ENDPOINT",
            )
        self._flush(force=True)
        return self._pending_tasks(run)

    def _pending_tasks(
        self, run: CrawlRun, *, new_in: tuple[int, ...] = (), new_created_before: datetime | None = None
    ) -> deque[_Task]:
        """Listings still owed: for the models this run has seen (all of them on a fresh full run),
        or with `new_in`, for the models those runs brought into the tree."""
        tasks: deque[_Task] = deque()
        for repo_id, counts in self.ledger.children_counts_in_run(
            run.crawl_id, new_in=new_in, new_created_before=new_created_before
        ):
            relations = RELATIONS if counts is None else [r for r in RELATIONS if counts.get(r, 0) > 0]
            tasks.extend(_Task(repo_id, r) for r in relations if (repo_id, r) not in self.listed)
        return tasks

    def _incremental_tasks(self, run: CrawlRun) -> deque[_Task]:
        assert run.feed_since is not None
        # Runs that never completed since the last one that did: what they let into the tree still
        # counts as new, so the listings they owed are made now.
        unfinished = tuple(sorted({*self.unfinished, run.crawl_id}))
        self.known = self.ledger.current_models(before_crawls=unfinished)
        self.stage = "reading the change feed"
        feed: dict[str, ModelSnapshot] = {}
        newest: datetime | None = None
        for page in self.client.list_pages(sort="lastModified", fields=LINEAGE_FIELDS):
            stop = False
            for item in page:
                try:
                    snapshot = parse_model(item)
                except HubError as err:
                    # The feed covers the whole Hub: one malformed stranger must not stop the crawl.
                    self.skipped_items += 1
                    log.warning("skipping a model in the change feed: %s", strip_control(str(err)))
                    continue
                if snapshot.last_modified is not None and newest is None:
                    newest = snapshot.last_modified
                if snapshot.last_modified is None or snapshot.last_modified < run.feed_since:
                    stop = True
                    break
                feed[snapshot.repo_id] = snapshot
            self._report()
            self._check_stop()
            if stop:
                break
        if newest is not None:
            self.ledger.set_watermark(run.crawl_id, max(newest, run.feed_watermark or newest))

        # Which feed models belong to the tree: those already in it, and those whose declared
        # parents are (to a fixpoint, so that a new chain A -> B -> C joins whole).
        in_tree = set(self.known) | set(self.roots)
        accepted: list[ModelSnapshot] = []
        waiting = dict(feed)
        progressed = True
        while progressed:
            progressed = False
            for repo_id, snapshot in list(waiting.items()):
                if repo_id in in_tree or any(e.parent in in_tree for e in snapshot.parents):
                    in_tree.add(repo_id)
                    accepted.append(snapshot)
                    del waiting[repo_id]
                    progressed = True
        # What an interrupted attempt of this run had brought in but not listed yet.
        tasks = self._pending_tasks(run, new_in=unfinished, new_created_before=run.feed_since)
        for snapshot in accepted:
            joined = snapshot.repo_id not in self.known
            self._accept(snapshot)
            # A model that existed before the feed window and joined now brings children the feed
            # does not show: list them. A brand-new model's children are all newer, so in the feed.
            created = snapshot.created_at
            if joined and snapshot.has_children and (created is None or created < run.feed_since):
                tasks.extend(
                    _Task(snapshot.repo_id, r)
                    for r in snapshot.relations_with_children()
                    if (snapshot.repo_id, r) not in self.listed
                )

        # New roots are crawled from; known ones have their metadata refreshed on the slow cycle.
        self.stage = "fetching roots"
        cutoff = datetime.now(timezone.utc) - timedelta(days=self.settings.refresh_days)
        for root in self.roots:
            known_root = self.known.get(root)
            fresh = known_root is not None and known_root.stats_at is not None and known_root.stats_at >= cutoff
            if fresh or root in self.seen:
                continue
            root_item = self.client.model(root, LINEAGE_FIELDS)
            if root_item is None:
                self.missing_roots.append(root)
                continue
            tasks.extend(self._accept(parse_model(root_item), explore=known_root is None))

        due = [pair for pair in self.ledger.listings_due(cutoff) if pair not in self.listed]
        if due:
            self.known_children = {}
            for child, known in self.known.items():
                for parent, relation in known.parents:
                    self.known_children.setdefault((parent, relation), set()).add(child)
            self.refresh_tasks = set(due)
            tasks.extend(_Task(repo_id, relation) for repo_id, relation in due)
        self._flush(force=True)
        return tasks

    # -- execution ------------------------------------------------------------------------------

    def _execute(self, tasks: deque[_Task]) -> None:
        self.stage = "listing children"
        unique: dict[tuple[str, str], _Task] = {}
        for task in tasks:
            unique.setdefault((task.repo_id, task.relation), task)
        tasks = deque(unique.values())
        queued = set(unique)
        consecutive_failures = 0
        in_flight: dict[Future[list[dict[str, Any]]], _Task] = {}
        pool = ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="crawl")
        finished = False
        try:
            while tasks or in_flight:
                while tasks and len(in_flight) < self.settings.concurrency:
                    task = tasks.popleft()
                    in_flight[pool.submit(self._list_children, task)] = task
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    task = in_flight.pop(future)
                    try:
                        children = future.result()
                    except HubError as err:
                        consecutive_failures += 1
                        task.attempts += 1
                        if task.attempts < LISTING_ATTEMPTS:
                            tasks.append(task)
                        else:
                            self.failed.append((task, str(err)))
                        if consecutive_failures >= self.settings.max_consecutive_failures:
                            raise
                        continue
                    consecutive_failures = 0
                    for new_task in self._take_listing(task, children):
                        key = (new_task.repo_id, new_task.relation)
                        if key not in queued:
                            queued.add(key)
                            tasks.append(new_task)
                    self._flush()
                    self._report(pending=len(tasks) + len(in_flight))
                    self._check_stop()
            finished = True
        finally:
            # On an error or Ctrl-C, do not wait for requests still in flight: what they would
            # bring is listed again by the resumed crawl.
            pool.shutdown(wait=finished, cancel_futures=True)

    def _check_stop(self) -> None:
        if self.options.should_stop is not None and self.options.should_stop():
            raise StopRequested("the crawl was asked to stop; the next crawl resumes it")

    def _list_children(self, task: _Task) -> list[dict[str, Any]]:
        children: list[dict[str, Any]] = []
        for page in self.client.list_pages(
            filters=(f"base_model:{task.relation}:{task.repo_id}",), fields=LINEAGE_FIELDS
        ):
            children.extend(page)
        return children

    def _take_listing(self, task: _Task, children: list[dict[str, Any]]) -> Iterable[_Task]:
        """Record one complete listing; yield the listings it makes necessary."""
        found: set[str] = set()
        new_tasks: list[_Task] = []
        for item in children:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                found.add(item["id"])  # listed, so it exists, even if its metadata does not parse
            try:
                snapshot = parse_model(item)
            except HubError as err:
                self.skipped_items += 1
                log.warning("skipping a child of %s: %s", strip_control(task.repo_id), strip_control(str(err)))
                continue
            if snapshot.repo_id in self.seen:
                continue
            # In an incremental crawl only models new to the tree have unknown subtrees.
            explore = self.full or snapshot.repo_id not in self.known
            new_tasks.extend(self._accept(snapshot, explore=explore))
        key = (task.repo_id, task.relation)
        self.listed.add(key)
        self.buffer.listings.append(Listing(task.repo_id, task.relation, _now(), len(children)))
        if key in self.refresh_tasks and self.known_children is not None:
            for child in self.known_children.get(key, set()) - found:
                if child not in self.seen:
                    self.buffer.unlisted.append(child)
        return new_tasks

    def _accept(self, snapshot: ModelSnapshot, *, explore: bool = False) -> list[_Task]:
        """Buffer a snapshot; with `explore`, return the listings of its children still owed."""
        self.seen.add(snapshot.repo_id)
        self.buffer.snapshots.append(snapshot)
        if not explore:
            return []
        return [
            _Task(snapshot.repo_id, relation)
            for relation in snapshot.relations_with_children()
            if (snapshot.repo_id, relation) not in self.listed
        ]

    # -- writes and progress --------------------------------------------------------------------

    def _flush(self, *, force: bool = False, quiet: bool = False) -> None:
        buffer = self.buffer
        due = len(buffer) >= self.settings.flush_rows or time.monotonic() - buffer.last_flush >= FLUSH_INTERVAL_S
        if not len(buffer) and not force:
            return
        if not (due or force):
            return
        assert self.run_row is not None
        requests = self._unflushed_requests()
        try:
            self.ledger.write_batch(
                self.run_row.crawl_id,
                buffer.snapshots,
                buffer.listings,
                unlisted=buffer.unlisted,
                requests=requests,
            )
        except Exception:
            if quiet:
                log.exception("could not write the last batch of crawl %s", self.run_row.crawl_id)
                return
            raise
        self.requests_flushed += requests
        self.buffer = _Buffer()

    def _unflushed_requests(self) -> int:
        return self.client.requests - self.requests_flushed

    def _report(self, pending: int = 0) -> None:
        if self.options.progress is None or self.run_row is None:
            return
        self.options.progress(
            CrawlProgress(
                mode=self.run_row.mode,
                listed=len(self.listed),
                pending=pending,
                models_seen=len(self.seen),
                requests=self.client.requests,
                failed=len(self.failed),
                stage=self.stage,
            )
        )


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
