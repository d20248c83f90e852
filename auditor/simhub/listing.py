"""The model listing's order and cursor, as the Hub pages `GET /api/models`.

The Hub's cursor is a keyset, not an offset: the cursor of huggingface_hub PR #1176
(https://github.com/huggingface/huggingface_hub/pull/1176) decodes to
`{"$or":[{"likes":294,"_id":{"$gt":"621ffdc136468d709f179a12"}},{"likes":{"$lt":294}}]}`.
So a listing is ordered by its sort key descending, then `_id` ascending, and the next page holds
the models with key < k, or key == k and `_id` > i, where (k, i) is the last model served. A key
that changes while a listing is read therefore moves models across the cursor: an unread model
whose key rises above it is skipped, a read one whose key falls below it is served again. Only
`createdAt` never changes, so only a `createdAt` listing is read whole and once each, whatever is
added or deleted between pages.

Listings are computed once per world version and kept (least recently used first out) as parallel
lists sorted by (-key, `_id`), so that a page is a `bisect` and a slice: a 200,000-model world is
sorted once, then served 1,000 models a page.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from auditor.simhub.world import SimRepo, World

#: The most models one page holds; a larger `limit` is served as this.
PAGE_MAX = 1000
#: Listings kept per world version.
CACHE_SIZE = 512


def trending_score(repo: SimRepo) -> int:
    """The sim's `trendingScore`: it moves whenever likes or downloads do (the Hub's follows recent activity)."""
    return repo.likes + repo.downloads // 100


_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _micros(value: datetime) -> int:
    return (value - _UNIX_EPOCH) // timedelta(microseconds=1)


#: The sorts the Hub accepts (the client maps created_at -> createdAt etc.: hf_api.py `list_models`),
#: always descending. Datetimes become integer microseconds, so every key is an int.
SORT_KEYS: dict[str, Callable[[SimRepo], int]] = {
    "downloads": lambda r: r.downloads,
    "likes": lambda r: r.likes,
    "createdAt": lambda r: _micros(r.created_at),
    "lastModified": lambda r: _micros(r.last_modified),
    "trendingScore": trending_score,
}
#: The order of a listing without `sort`. The Hub does not document its default order, so the sim
#: uses one that moves under the reader: a crawler relying on the default order is caught.
DEFAULT_SORT = "trendingScore"


@dataclass(frozen=True)
class Keyset:
    """Where a page ended: the sort key and the `_id` of its last model."""

    key: int
    oid: str

    def encode(self) -> str:
        """The cursor as the Hub sends it: base64 of a small JSON document.

        >>> Keyset.decode(Keyset(294, "621ffdc136468d709f179a12").encode())
        Keyset(key=294, oid='621ffdc136468d709f179a12')
        """
        return base64.b64encode(json.dumps({"k": self.key, "i": self.oid}, separators=(",", ":")).encode()).decode()

    @classmethod
    def decode(cls, cursor: str) -> Keyset:
        """Parse a cursor; `ValueError` when it is not one this server made."""
        try:
            data = json.loads(base64.b64decode(cursor.encode(), validate=True))
        except (binascii.Error, ValueError, UnicodeError) as err:
            raise ValueError(f"bad cursor {cursor[:40]!r}") from err
        if (
            not isinstance(data, dict)
            or type(data.get("k")) is not int
            or not isinstance(data.get("i"), str)
            or set(data) != {"k", "i"}
        ):
            raise ValueError(f"bad cursor {cursor[:40]!r}")
        return cls(data["k"], data["i"])


@dataclass(frozen=True)
class SortedListing:
    """One listing's models at one world version, in the Hub's order: key descending, `_id` ascending."""

    #: The negated sort keys, ascending (so the Hub's descending order is `bisect`-able).
    neg_keys: list[int]
    oids: list[str]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, after: Keyset | None) -> int:
        """The index of the first model after the cursor: key < k, or key == k and `_id` > i."""
        if after is None:
            return 0
        low = bisect_left(self.neg_keys, -after.key)
        high = bisect_right(self.neg_keys, -after.key, low)
        return bisect_right(self.oids, after.oid, low, high)

    def page(self, after: Keyset | None, limit: int) -> tuple[list[str], Keyset | None]:
        """The ids of the page after `after`, and the cursor of the next page (None on the last)."""
        start = self.position(after)
        end = min(start + limit, len(self.ids))
        following = Keyset(-self.neg_keys[end - 1], self.oids[end - 1]) if end < len(self.ids) else None
        return self.ids[start:end], following


class ListingIndex:
    """Computes listings of a world and keeps the recent ones until the world changes.

    A listing is keyed by everything that selects and orders it; a change of `world.version`
    drops every kept listing (they are never asked for again). Changes made without bumping the
    version (assigning `world.models[x].downloads` directly) are seen only at the next bump.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self._cache: OrderedDict[tuple[object, ...], SortedListing] = OrderedDict()
        self._version = -1
        self._lock = threading.Lock()

    def listing(
        self, filters: tuple[str, ...], author: str | None, search: str | None, sort: str | None
    ) -> SortedListing:
        """The live models with every tag of `filters`, by `author`, whose id contains `search`."""
        sort = sort or DEFAULT_SORT
        cache_key = (filters, author, search, sort)
        world = self.world
        with self._lock:
            if self._version == world.version and cache_key in self._cache:
                self._cache.move_to_end(cache_key)
                return self._cache[cache_key]
        with world.lock:
            version = world.version
            if filters:
                sets = sorted((world.with_tag(f) for f in filters), key=len)
                found = set(sets[0]).intersection(*sets[1:])
                repos = [r for r in (world.models.get(i) for i in found) if r is not None and not r.deleted]
            else:
                repos = list(world.live_models())
            if author:
                repos = [r for r in repos if r.author == author]
            if search:
                needle = search.lower()
                repos = [r for r in repos if needle in r.repo_id.lower()]
            sort_key = SORT_KEYS[sort]
            rows = sorted((-sort_key(r), r.object_id, r.repo_id) for r in repos)
        listing = SortedListing([row[0] for row in rows], [row[1] for row in rows], [row[2] for row in rows])
        with self._lock:
            if version > self._version:
                self._cache.clear()
                self._version = version
            if version == self._version:
                self._cache[cache_key] = listing
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return listing
