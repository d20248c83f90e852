"""The Hub's rate limits, read from its own headers, and pacing within them.

The Hub sets `RateLimit: "api";r=<remaining>;t=<seconds to reset>` and
`RateLimit-Policy: "fixed window";"api";q=<quota>;w=<window seconds>` on every response
(hub-docs, docs/hub/rate-limits.md; huggingface_hub's `hf_raise_for_status`: "Headers are set on
every response", utils/_http.py line 971). Quotas are per 5-minute fixed window: 500 API calls
anonymous, 1,000 free, 2,500 PRO. A 429 need not carry `Retry-After`.

Every response huggingface_hub receives in this process is read here (a hook on its shared HTTP
client, parsed with its own `parse_ratelimit_headers`, utils/_http.py line 85). Before each API
request, the crawler asks `RateLimits.wait_for_room`: when what is left of the window is down to
the requests that may be in flight at once, it waits for the window to reset instead of running
into a 429. The quota is shared with whatever else this token does, so the count comes from the
Hub's headers, never from our own tally alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from auditor.errors import StopRequested

#: Seconds between two checks of a stop request while waiting for a window to reset.
_WAIT_SLICE_S = 0.25


@dataclass
class _Bucket:
    """What the Hub last said of one rate-limit bucket (`api`, `resolvers`, ...)."""

    #: Requests left in the current window; None when unknown (no answer yet, or a new window).
    remaining: int | None = None
    #: time.monotonic() at which the current window resets.
    resets_at: float = 0.0
    quota: int | None = None
    window_s: int | None = None
    #: Requests sent since `remaining` was read: they may have spent it already.
    sent_since: int = 0


@dataclass(frozen=True)
class QuotaUsage:
    """What a crawl spent of the Hub's quota, for its summary."""

    bucket: str
    #: The window's quota and length, as the Hub announced them (None if it never did).
    quota: int | None
    window_s: int | None
    #: The least the Hub said was left in a window while the crawl ran.
    lowest_remaining: int | None
    #: Times the crawl paused for a window to reset, and for how long in all.
    pauses: int
    paused_s: float
    #: Answers 429 (Too Many Requests) received.
    rate_limited: int

    def as_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "quota": self.quota,
            "window_s": self.window_s,
            "lowest_remaining": self.lowest_remaining,
            "pauses": self.pauses,
            "paused_s": round(self.paused_s, 1),
            "rate_limited": self.rate_limited,
        }


@dataclass
class _Counters:
    lowest_remaining: int | None = None
    pauses: int = 0
    paused_s: float = 0.0
    rate_limited: int = 0


#: (the endpoint's origin, the bucket): quotas are per Hub and per bucket.
_Key = tuple[str, str]


@dataclass
class RateLimits:
    """The process-wide view of the rate limits of every Hub this process talks to. Thread-safe."""

    _buckets: dict[_Key, _Bucket] = field(default_factory=dict)
    _counters: dict[_Key, _Counters] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- fed by every request and response ------------------------------------------------------

    def on_request(self, request: Any) -> None:
        """Count a request against its bucket (an httpx request hook)."""
        url = str(request.url)
        with self._lock:
            self._buckets.setdefault((origin_of(url), bucket_of(url)), _Bucket()).sent_since += 1

    def on_response(self, response: Any) -> None:
        """Read the Hub's RateLimit headers (an httpx response hook)."""
        from huggingface_hub.utils import parse_ratelimit_headers

        info = parse_ratelimit_headers(response.headers)
        status = getattr(response, "status_code", None)
        url = str(response.request.url)
        if info is None:
            if status == 429:
                with self._lock:
                    self._counters.setdefault((origin_of(url), bucket_of(url)), _Counters()).rate_limited += 1
            return
        now = time.monotonic()
        key = (origin_of(url), info.resource_type)
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket())
            # The latest answer speaks for the window. One that overtook another (requests run in
            # parallel) is off by the requests in flight at most: `wait_for_room` keeps those in
            # reserve.
            bucket.remaining, bucket.resets_at = info.remaining, now + info.reset_in_seconds
            bucket.sent_since = 0
            bucket.quota = info.limit if info.limit is not None else bucket.quota
            bucket.window_s = info.window_seconds if info.window_seconds is not None else bucket.window_s
            counters = self._counters.setdefault(key, _Counters())
            if counters.lowest_remaining is None or info.remaining < counters.lowest_remaining:
                counters.lowest_remaining = info.remaining
            if status == 429:
                counters.rate_limited += 1

    # -- used before each request ---------------------------------------------------------------

    def wait_for_room(
        self, origin: str, bucket: str = "api", *, reserve: int = 1, should_stop: Callable[[], bool] | None = None
    ) -> float:
        """Wait, if needed, until the window of `bucket` at the Hub `origin` (`http://host:port`) has more
        than `reserve` requests left; return the wait.

        `reserve` is the number of requests that may be in flight at once: each may spend one of
        what is left before its answer says so.
        """
        key = (origin.lower(), bucket)
        with self._lock:
            state = self._buckets.get(key)
            now = time.monotonic()
            if state is None or state.remaining is None or now >= state.resets_at:
                return 0.0
            if state.remaining - state.sent_since > reserve:
                return 0.0
            wait_until = state.resets_at
            counters = self._counters.setdefault(key, _Counters())
            counters.pauses += 1
        waited = 0.0
        while True:
            left = wait_until - time.monotonic()
            if left <= 0:
                break
            if should_stop is not None and should_stop():
                raise StopRequested("the crawl was asked to stop while it waited for the Hub's rate limit to reset")
            step = min(_WAIT_SLICE_S, left)
            time.sleep(step)
            waited += step
        with self._lock:
            state = self._buckets[key]
            if state.resets_at <= time.monotonic():
                state.remaining = None  # a fresh window: unknown until the next answer says
            self._counters[key].paused_s += waited
        return waited

    # -- reporting ------------------------------------------------------------------------------

    def mark(self, origin: str) -> None:
        """Start counting afresh for the Hub `origin` (a crawl's usage is counted from its start)."""
        with self._lock:
            for key in [k for k in self._counters if k[0] == origin.lower()]:
                del self._counters[key]

    def usage(self, origin: str, bucket: str = "api") -> QuotaUsage:
        key = (origin.lower(), bucket)
        with self._lock:
            state = self._buckets.get(key, _Bucket())
            counters = self._counters.get(key, _Counters())
            return QuotaUsage(
                bucket=bucket,
                quota=state.quota,
                window_s=state.window_s,
                lowest_remaining=counters.lowest_remaining,
                pauses=counters.pauses,
                paused_s=counters.paused_s,
                rate_limited=counters.rate_limited,
            )


def origin_of(url: str) -> str:
    """`scheme://host:port` of a URL, lower-cased: whose quota a request counts against."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def bucket_of(url: str) -> str:
    """The Hub's rate-limit bucket of a request: file downloads are `resolvers`, the rest `api`."""
    return "resolvers" if "/resolve/" in url else "api"


RATE_LIMITS = RateLimits()
