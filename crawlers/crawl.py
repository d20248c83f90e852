"""The lineage crawl: every descendant of the roots, through all four relations, transitively.

Requests are the scarce resource (500 to 2,500 API calls per 5 minutes), and a listing cannot say
whether a model has children (the listing route refuses `childrenModelCount`: huggingface_hub PR
#3182). So:

- **Full crawl** (the first one, `--full`, and every `crawl.refresh_days`): the roots come from
  their detail route, then the tree is learned one of two ways (`crawlers.plan` estimates both and
  `auto` takes the cheaper): a **walk** lists the children of every model of the tree
  (`crawlers.walk`, one listing per model), a **scan** pages through the whole Hub listing and
  computes the tree here (`crawlers.scan`). Both store the same. A model of the store that the
  crawl did not meet is then asked for on its detail route: only a "not found" removes it (a
  redirect says it was renamed; a 429 or a network failure is no evidence and it stays).
- **Incremental crawl** (every other one): the Hub's change feed (`crawlers.feed`), back to the
  previous crawl's high-water mark: the cost follows what changed on the Hub, not the size of the
  tree. A model that joins the tree brings its subtree: from the Hub-wide index when the last full
  crawl was a scan (no request), else by walking it.

Writes are batched, and each batch lands together with the listings (or the scan's pages) it came
from, so a crawl killed at any moment loses nothing it stored; the next crawl resumes the
unfinished run and then closes it. Defective metadata never stops a crawl: cycles terminate (each
model is visited once), self-references are defects, and missing parents are kept as declared (see
docs/lineage.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from auditor.config import ResolvedConfig
from auditor.errors import CrawlError, HubError, StopRequested
from auditor.lineage import ModelSnapshot
from auditor.store import HubIndex, LineageStore, Store
from auditor.store.crawls import CrawlRun, KnownModel, Listing, Removal
from auditor.textsafety import strip_control
from crawlers import feed, scan, walk
from crawlers.client import HubClient
from crawlers.plan import StrategyChoice, choose_strategy, estimate_scan, estimate_walk
from crawlers.quota import RATE_LIMITS
from crawlers.records import DETAIL_FIELDS, LISTING_FIELDS, parse_model

log = logging.getLogger(__name__)

#: Seconds between two writes at most, so that a killed crawl loses little work.
FLUSH_INTERVAL_S = 2.0


@dataclass(frozen=True)
class CrawlProgress:
    mode: str
    listed: int
    pending: int
    models_seen: int
    requests: int
    failed: int
    stage: str
    #: A scan's pages read so far, and how many it expects (None when not scanning).
    pages: int = 0
    pages_expected: int | None = None


@dataclass(frozen=True)
class CrawlOptions:
    #: Crawl the whole tree from the roots even when an earlier crawl exists.
    full: bool = False
    #: Called on the crawling thread after every listing or page; must be quick.
    progress: Callable[[CrawlProgress], None] | None = None
    #: Polled after every listing and page, and while waiting for the rate limit; when it returns
    #: True the crawl stops (resumably) with `StopRequested`, as if interrupted.
    should_stop: Callable[[], bool] | None = None
    #: Told, in a sentence, what the crawl decided (its mode and strategy, and why).
    notify: Callable[[str], None] | None = None


@dataclass(frozen=True)
class CrawlResult:
    crawl_id: int
    mode: str
    resumed: bool
    requests: int
    seconds: float
    summary: dict[str, Any]


@dataclass
class Buffer:
    snapshots: list[ModelSnapshot] = field(default_factory=list)
    listings: list[Listing] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return len(self.snapshots) + len(self.listings) + len(self.removals)


def crawl_lineage(resolved: ResolvedConfig, store: Store, options: CrawlOptions | None = None) -> CrawlResult:
    """Crawl the roots' family trees into the store and return the run's summary.

    >>> from auditor.config import load_config                              # doctest: +SKIP
    >>> with Store.open("auditor.duckdb") as store:                         # doctest: +SKIP
    ...     result = crawl_lineage(load_config(), store)
    ...     print(result.summary["strategy"]["reason"], result.summary["totals"])
    """
    return Crawl(resolved, store, options or CrawlOptions()).run()


class Crawl:
    """One crawl's state, shared by the walk, the scan and the feed (`crawlers.walk` and others)."""

    def __init__(self, resolved: ResolvedConfig, store: Store, options: CrawlOptions) -> None:
        self.config = resolved.config
        self.provenance = resolved.provenance()
        self.settings = resolved.config.crawl
        self.roots = resolved.config.crawl.roots
        self.options = options
        self.ledger = LineageStore(store)
        self.index = HubIndex(store)
        self.client = HubClient(
            resolved.config.hub,
            in_flight=self.settings.concurrency,
            should_stop=options.should_stop,
            max_pages=self.settings.max_pages,
        )
        self.buffer = Buffer()
        #: Models this run has stored (or buffered) a snapshot of.
        self.seen: set[str] = set()
        #: Models whose children this run has listed.
        self.listed: set[str] = set()
        #: The tree before this run (incremental runs): models in it have known subtrees.
        self.known: dict[str, KnownModel] = {}
        self.failed: list[tuple[str, str]] = []
        self.missing_roots: list[str] = []
        self.confirmed: Counter[str] = Counter()
        self.scan_figures: dict[str, Any] | None = None
        self.requests_flushed = 0
        self.stage = "starting"
        self.run_row: CrawlRun | None = None
        self.unfinished: list[int] = []
        self.skipped_items = 0
        self.pages = 0
        self.pages_expected: int | None = None
        self.fetched_roots: list[ModelSnapshot] = []
        #: The roots' ids as the Hub has them (a renamed root under its new id), present ones only.
        self.root_ids: list[str] = list(self.roots)
        RATE_LIMITS.mark(self.client.origin)

    @property
    def full(self) -> bool:
        return self.run_row is not None and self.run_row.mode == "full"

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> CrawlResult:
        started = time.monotonic()
        run, resumed = self._open_run()
        self.run_row = run
        try:
            if run.mode == "full":
                # A fresh run fetched its roots to choose its strategy; a resumed one fetches those
                # it had not stored.
                roots = self.fetched_roots if not resumed else self._fetch_roots(skip=self.seen)
                for snapshot in roots:
                    self.accept(snapshot)
                self.flush(force=True)
                if run.strategy == "scan":
                    scan.scan_hub(self, run)
                else:
                    owed = self.ledger.unlisted_in_run(run.crawl_id, self.root_ids)
                    walk.walk(self, [r for r in owed if r not in self.listed])
                # Absences mean something only once every listing is in.
                self._raise_for_failed_listings(run)
                self._confirm_vanished(run)
            else:
                self._incremental(run)
                self._raise_for_failed_listings(run)
            self.flush(force=True)
        except BaseException as err:
            # Requests still waiting for the rate limit in other threads give up rather than go out.
            self.client.abort()
            self.flush(force=True, quiet=True)
            reason = "interrupted" if isinstance(err, KeyboardInterrupt) else str(err)
            self.ledger.fail_run(run.crawl_id, reason, self._unflushed_requests())
            raise
        self.stage = "finishing"
        if run.mode == "full":
            if run.strategy == "scan":
                self.index.finish_scan(run.crawl_id)
            else:
                self.index.clear()
        summary = self.ledger.finish_run(
            run.crawl_id,
            roots=self.root_ids,
            requests=self._unflushed_requests(),
            extra_summary={
                "mode": run.mode,
                "resumed": resumed,
                "strategy": run.strategy_plan,
                "scan": self.scan_figures,
                "quota": RATE_LIMITS.usage(self.client.origin).as_json(),
                "confirmed": dict(sorted(self.confirmed.items())),
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
            and latest.endpoint == self.client.endpoint
            and not (self.options.full and latest.mode != "full")
        ):
            self.ledger.mark_resumed(latest.crawl_id)
            self.seen = self.ledger.seen_in_run(latest.crawl_id)
            self.listed = self.ledger.listed_in_run(latest.crawl_id)
            self._notify(f"resuming crawl {latest.crawl_id} ({_describe_mode(latest)})")
            return latest, True
        if latest is not None and latest.status == "running":
            self.ledger.abandon_unfinished()
        previous = self.ledger.last_done_run()
        last_full = self.ledger.last_done_full_run()
        cutoff = datetime.now(timezone.utc) - timedelta(days=self.settings.refresh_days)
        refresh_due = last_full is None or last_full.finished_at is None or last_full.finished_at <= cutoff
        full = self.options.full or refresh_due or previous is None or previous.feed_watermark is None
        if not full:
            assert previous is not None and previous.feed_watermark is not None
            run = self.ledger.start_run(
                mode="incremental",
                endpoint=self.client.endpoint,
                roots=self.roots,
                config=self.provenance,
                feed_watermark=previous.feed_watermark,
                feed_since=previous.feed_watermark - timedelta(minutes=self.settings.feed_overlap_minutes),
            )
            since = run.feed_since.astimezone(timezone.utc) if run.feed_since else None
            self._notify(f"crawl {run.crawl_id}: the change feed since {since:%Y-%m-%d %H:%M} UTC")
            return run, False
        self.stage = "reading the change feed head"
        watermark = self._feed_head()
        self.fetched_roots = self._fetch_roots(skip=set())
        choice = self._choose(self.fetched_roots)
        run = self.ledger.start_run(
            mode="full",
            endpoint=self.client.endpoint,
            roots=self.roots,
            config=self.provenance,
            feed_watermark=watermark,
            feed_since=None,
            strategy=choice.strategy,
            strategy_plan=choice.as_json(),
        )
        why = "first crawl" if previous is None else "asked for" if self.options.full else "refresh due"
        self._notify(f"crawl {run.crawl_id}: full ({why}) by {choice.reason}")
        return run, False

    def _raise_for_failed_listings(self, run: CrawlRun) -> None:
        if not self.failed:
            return
        self.flush(force=True)
        raise CrawlError(
            f"{len(self.failed)} listings failed in crawl {run.crawl_id}, for example the children of"
            f" {strip_control(self.failed[0][0])}: {strip_control(self.failed[0][1])}",
            hint="run `auditor crawl` again: it resumes this crawl and lists only what is missing",
        )

    def _choose(self, roots: list[ModelSnapshot]) -> StrategyChoice:
        settings = self.settings
        learned = self.index.learned_hub_models()
        walk_cost = estimate_walk(roots, tree_size=self.ledger.tree_size(), page_size=settings.page_size)
        scan_cost = estimate_scan(
            hub_models=learned or settings.hub_models,
            learned=learned is not None,
            n_roots=len(self.roots),
            page_size=settings.page_size,
        )
        return choose_strategy(settings.strategy, walk_cost, scan_cost)

    def _feed_head(self) -> datetime | None:
        """The newest lastModified on the Hub: where the next incremental crawl reads back to."""
        for page in self.client.list_pages(sort="lastModified", fields=("lastModified",), limit=1):
            for item in page.items:
                return feed.parse_time(item.get("lastModified"))
            break
        return None

    def _fetch_roots(self, *, skip: set[str]) -> list[ModelSnapshot]:
        """The roots from their detail route (which alone gives `childrenModelCount`), except those in
        `skip`; sets `root_ids` to the roots' ids as the Hub has them now.

        A renamed root redirects to its new id (hub-docs, docs/hub/repositories-settings.md): the
        tree hangs from the new id, and the crawl says the configured one is out of date.
        """
        self.stage = "fetching roots"
        found: list[ModelSnapshot] = []
        self.root_ids = []
        for root in self.roots:
            if root in skip:
                self.root_ids.append(root)
                continue
            item = self.client.model(root, DETAIL_FIELDS)
            if item is None:
                self.missing_roots.append(root)
                log.warning("root %s does not exist on the Hub; it is skipped", root)
                continue
            snapshot = parse_model(item)
            if snapshot.repo_id != root:
                self._notify(
                    f"root {root} was renamed to {strip_control(snapshot.repo_id)} on the Hub: its tree is crawled from"
                    " the new id; put the new id in crawl.roots"
                )
            found.append(snapshot)
            self.root_ids.append(snapshot.repo_id)
        self.root_ids = list(dict.fromkeys(self.root_ids))
        if not found and not skip & set(self.roots):
            raise CrawlError(
                "none of the roots exists on the Hub: " + ", ".join(self.roots),
                hint="check the ids in [crawl] roots or --root, and HF_ENDPOINT",
            )
        return found

    # -- incremental ----------------------------------------------------------------------------

    def _incremental(self, run: CrawlRun) -> None:
        assert run.feed_since is not None
        # Runs that never completed since the last one that did: what they let into the tree still
        # counts as new, so the subtrees they owed are brought in now.
        unfinished = tuple(sorted({*self.unfinished, run.crawl_id}))
        self.known = self.ledger.current_models(before_crawls=unfinished)
        indexed = self.index.complete()
        accepted = feed.read_changes(self, run, keep_index=indexed)
        joined = [s for s in accepted if s.repo_id not in self.known]
        for snapshot in accepted:
            self.accept(snapshot)

        # Roots new to the tree are crawled from (a renamed one is asked for each time, and found known).
        fetched = self._fetch_roots(skip=set(self.known) | self.seen)
        new_roots = [s for s in fetched if s.repo_id not in self.known]
        for snapshot in fetched:
            if snapshot.repo_id not in self.seen:
                self.accept(snapshot)
        self.flush(force=True)

        if indexed:
            # Every subtree that joined is in the index: no request.
            seeds = [s.repo_id for s in joined] + [s.repo_id for s in new_roots]
            seeds += self.ledger.brought_in(unfinished)
            self.materialize(self.index.descendants(seeds, known=set(self.known)))
            return
        # A model that existed before the feed's window and joined now brings children the feed does
        # not show: walk its subtree. A brand-new model's children are all newer, so in the feed.
        seeds = [s.repo_id for s in joined if s.created_at is None or s.created_at < run.feed_since] + [
            s.repo_id for s in new_roots
        ]
        seeds += self.ledger.brought_in(unfinished, created_before=run.feed_since)
        walk.walk(self, [s for s in dict.fromkeys(seeds) if s not in self.listed])

    # -- what the crawl did not meet --------------------------------------------------------------

    def _confirm_vanished(self, run: CrawlRun) -> None:
        """Ask the Hub about each model of the store this full crawl did not meet.

        Only a "not found" (404, or 401 without a token) removes a model; a redirect says it was
        renamed. A model that still exists is stored as it is now, and its declared parents decide
        whether it stays in the tree. A 429, a 5xx or a network failure is no evidence: the model
        stays as it was, and the next full crawl asks again.
        """
        self.flush(force=True)  # what this run met must be in the store before absences are read there
        vanished = self.ledger.vanished(run.crawl_id)
        self.stage = f"asking the Hub about {len(vanished)} models the crawl did not meet"
        for repo_id in vanished:
            self.check_stop()
            try:
                item = self.client.model(repo_id, LISTING_FIELDS)
            except HubError as err:
                self.confirmed["unconfirmed"] += 1
                log.warning(
                    "could not confirm whether %s still exists: %s", strip_control(repo_id), strip_control(str(err))
                )
                continue
            if item is None:
                self.confirmed["deleted"] += 1
                self.buffer.removals.append(
                    Removal(repo_id, "deleted", "not found on the Hub (404, or 401 without a token)")
                )
            else:
                new_id = item.get("id")
                if isinstance(new_id, str) and new_id != repo_id:
                    self.confirmed["renamed"] += 1
                    self.buffer.removals.append(Removal(repo_id, "renamed", f"renamed to {new_id}"))
                    if new_id in self.seen:
                        continue
                else:
                    self.confirmed["still_there"] += 1
                # It exists; when its metadata does not parse, the store keeps what it has.
                snapshot = self.parse(item, f"{repo_id}'s metadata (the stored snapshot stays)")
                if snapshot is not None:
                    self.accept(snapshot)
            self.flush()
            self.report()

    # -- shared by the walk, the scan and the feed ------------------------------------------------

    def parse(self, item: Any, where: str) -> ModelSnapshot | None:
        """`item` (the Hub's JSON for a model) as a snapshot; None when its metadata does not parse,
        counted in `skipped_items` and logged with `where` it came from. One malformed model never
        stops a crawl."""
        try:
            return parse_model(item)
        except HubError as err:
            self.skipped_items += 1
            log.warning("skipping %s: %s", strip_control(where), strip_control(str(err)))
            return None

    def accept(self, snapshot: ModelSnapshot) -> None:
        """Buffer a snapshot for the store."""
        self.seen.add(snapshot.repo_id)
        self.buffer.snapshots.append(snapshot)

    def materialize(self, repo_ids: Iterable[str]) -> None:
        """Store the snapshots the Hub-wide index holds of these models (no request)."""
        wanted = [r for r in repo_ids if r not in self.seen]
        self.stage = f"storing {len(wanted)} models from the Hub-wide index"
        for batch in self.index.raws(wanted):
            for repo_id, raw in batch:
                snapshot = self.parse(json.loads(raw), f"the Hub-wide index's entry of {repo_id}")
                if snapshot is not None:
                    self.accept(snapshot)
            self.flush()
            self.report()

    def check_stop(self) -> None:
        if self.options.should_stop is not None and self.options.should_stop():
            raise StopRequested("the crawl was asked to stop; the next crawl resumes it")

    def flush(self, *, force: bool = False, quiet: bool = False) -> None:
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
                removals=buffer.removals,
                requests=requests,
            )
        except Exception:
            if quiet:
                log.exception("could not write the last batch of crawl %s", self.run_row.crawl_id)
                return
            raise
        self.requests_flushed += requests
        self.buffer = Buffer()

    def _unflushed_requests(self) -> int:
        return self.client.requests - self.requests_flushed

    def report(self, pending: int = 0) -> None:
        if self.options.progress is None or self.run_row is None:
            return
        self.options.progress(
            CrawlProgress(
                mode=self.run_row.mode if self.run_row.strategy is None else f"full, {self.run_row.strategy}",
                listed=len(self.listed),
                pending=pending,
                models_seen=len(self.seen),
                requests=self.client.requests,
                failed=len(self.failed),
                stage=self.stage,
                pages=self.pages,
                pages_expected=self.pages_expected,
            )
        )

    def _notify(self, line: str) -> None:
        log.info("%s", line)
        if self.options.notify is not None:
            self.options.notify(line)


def _describe_mode(run: CrawlRun) -> str:
    return run.mode if run.strategy is None else f"{run.mode}, by {run.strategy}"
