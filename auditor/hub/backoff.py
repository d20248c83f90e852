"""Waiting on the Hub: pacing within its rate-limit windows, and retrying what failed for a while.

Shared by the crawler (`crawlers.client`) and the audit's own Hub calls (`auditor.hub.files`: repo
info, file trees, downloads, the prompt dataset), so that both spend the same quota the same way.

**The Hub's rate limits.** The Hub sets `RateLimit: "api";r=<remaining>;t=<seconds to reset>` and
`RateLimit-Policy: "fixed window";"api";q=<quota>;w=<window seconds>` on every response
(hub-docs, docs/hub/rate-limits.md; huggingface_hub's `hf_raise_for_status`: "Headers are set on
every response", utils/_http.py line 971). Quotas are per 5-minute fixed window: 500 API calls
anonymous, 1,000 free, 2,500 PRO; file downloads ("resolvers") have their own bucket. A 429 need
not carry `Retry-After`. Every response huggingface_hub receives in this process is read here (a
hook on its shared HTTP client, parsed with its own `parse_ratelimit_headers`, utils/_http.py line
85). Before each request, a caller asks `RateLimits.wait_for_room`: when what is left of the window
is down to the requests that may be in flight at once, it waits for the window to reset instead
of running into a 429. The quota is shared with whatever else this token does, so the count comes
from the Hub's headers, never from our own tally alone.

**Backoff.** A request that fails for a while (429, 408, 5xx, a timeout, a dropped connection) is
tried again, `Backoff.max_retries` times at most. The rule is huggingface_hub's `http_backoff`
(utils/_http.py `_http_backoff_base`, lines 469-569), which the crawler calls with
`Backoff.http_backoff_kwargs()`: a 429 whose `RateLimit` says `r=0` waits `t` + 1 seconds, an
answer with `Retry-After: n` waits n + 1 seconds, anything else waits `base_wait_s`, doubling up
to `max_wait_s`. `call_with_backoff` applies the same rule around a whole huggingface_hub call
(`HfApi.repo_info`, `list_repo_tree`, `hf_hub_download`) whose failures arrive as typed errors,
so that the audit keeps the client's errors, cache and `HF_ENDPOINT`/`HF_TOKEN` handling.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from auditor.errors import StopRequested

if TYPE_CHECKING:
    from auditor.config import HubSettings

T = TypeVar("T")

#: Seconds between two checks of a stop request while waiting for a window to reset.
_WAIT_SLICE_S = 0.25

#: The answers worth trying again: huggingface_hub's `_DEFAULT_RETRY_ON_STATUS_CODES`
#: (utils/_http.py line 466), so the audit retries what the crawler's `http_backoff` retries.
RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})


# -- the Hub's rate-limit windows --------------------------------------------------------------------


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

_watching = False
_watch_lock = threading.Lock()


def watch_rate_limits() -> None:
    """Feed `RATE_LIMITS` from every request and response of huggingface_hub's shared HTTP client,
    once per process."""
    global _watching
    with _watch_lock:
        if not _watching:
            add_client_hooks(request=[RATE_LIMITS.on_request], response=[RATE_LIMITS.on_response])
            _watching = True


def add_client_hooks(
    *, request: Sequence[Callable[..., Any]] = (), response: Sequence[Callable[..., Any]] = ()
) -> None:
    """Add event hooks to huggingface_hub's shared HTTP client.

    The hooks go into the client factory huggingface_hub builds its one shared client with
    (`set_client_factory`, utils/_http.py line 372, which also closes the current client so the
    next request builds one with them), wrapping whatever factory is set, so other hooks (the
    crawler's request meter, the token guard of `auditor.hub.token`, a user's) keep theirs. Callers
    add theirs once per process.
    """
    from huggingface_hub.utils import _http

    base_factory = _http._GLOBAL_CLIENT_FACTORY

    def hooked_factory() -> Any:
        client = base_factory()
        hooks = dict(client.event_hooks)
        hooks["request"] = [*hooks.get("request", []), *request]
        hooks["response"] = [*hooks.get("response", []), *response]
        client.event_hooks = hooks
        return client

    _http.set_client_factory(hooked_factory)


# -- backoff -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """How often and how long to try a failing Hub request again.

    The defaults are those of `[hub]` in the config (`max_retries = 5`, `backoff_s = 1.0`), which
    are also huggingface_hub's own (`http_backoff(max_retries=5, base_wait_time=1, max_wait_time=8)`).

    >>> Backoff(max_retries=3, base_wait_s=0.5).wait_s(3)
    2.0
    >>> Backoff().wait_s(1, 429, {"RateLimit": '"api";r=0;t=55'})
    56.0
    """

    max_retries: int = 5
    base_wait_s: float = 1.0
    max_wait_s: float = 8.0

    @classmethod
    def from_settings(cls, settings: HubSettings) -> Backoff:
        """The `[hub]` section's policy: `backoff_s` doubling up to eight times itself."""
        return cls(settings.max_retries, settings.backoff_s, max(settings.backoff_s * 8, settings.backoff_s))

    def http_backoff_kwargs(self) -> dict[str, Any]:
        """The same policy as keyword arguments of huggingface_hub's `http_backoff`."""
        return {"max_retries": self.max_retries, "base_wait_time": self.base_wait_s, "max_wait_time": self.max_wait_s}

    def wait_s(self, retry: int, status: int | None = None, headers: Mapping[str, str] | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first), after an answer `status`
        with `headers` (None after a transport error)."""
        asked = asked_wait_s(status, headers or {})
        if asked is not None:
            return asked + 1.0  # as http_backoff: "+1s to avoid rounding issues"
        return float(min(self.max_wait_s, self.base_wait_s * 2 ** (retry - 1)))


def asked_wait_s(status: int | None, headers: Mapping[str, str]) -> int | None:
    """The seconds the Hub asked a client to wait: `t` of a 429 whose `RateLimit` says `r=0`, else
    `Retry-After` (seconds; a date is not used), else None: http_backoff's reading of both."""
    from huggingface_hub.utils import parse_ratelimit_headers

    if status == 429:
        info = parse_ratelimit_headers(headers)
        if info is not None and info.remaining == 0:
            return info.reset_in_seconds
    for name, value in headers.items():
        if name.lower() == "retry-after" and value.strip().isdigit():
            return int(value.strip())
    return None


@dataclass(frozen=True)
class TransientFailure:
    """A failure worth trying again: its HTTP status and headers, when an answer came."""

    status: int | None
    headers: Mapping[str, str]


def transient_failure(error: BaseException) -> TransientFailure | None:
    """What `http_backoff` would retry: a 408, 429 or 5xx answer (as huggingface_hub's typed
    `HfHubHTTPError`), or a timeout, network error or protocol error (its
    `_DEFAULT_RETRY_ON_EXCEPTIONS`, utils/_http.py line 461). None for anything else."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        response = error.response
        status = getattr(response, "status_code", None)
        if status in RETRY_STATUSES:
            return TransientFailure(status, dict(response.headers))
        return None
    if isinstance(error, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)):
        return TransientFailure(None, {})
    return None


def call_with_backoff(
    call: Callable[[], T],
    *,
    backoff: Backoff,
    origin: str,
    bucket: str = "api",
    retried_inside: Callable[[BaseException], bool] | None = None,
    reserve: int = 1,
    should_stop: Callable[[], bool] | None = None,
) -> T:
    """Run `call` (one huggingface_hub call to the Hub at `origin`), paced by `RATE_LIMITS` and tried
    again on transient failures under `backoff`; the last failure is raised as the client raised it.

    Some client calls retry by themselves, with `http_backoff` (the same rule, its default counts):
    `retried_inside(error)` says which failures they already retried, and those are raised at once,
    so that retries never multiply (5 of ours around 5 of the client's would be 36 requests).

    >>> info = call_with_backoff(lambda: api.repo_info("gpt2"), backoff=Backoff(), origin=api.endpoint)
    ... # doctest: +SKIP
    """
    watch_rate_limits()
    retry = 0
    while True:
        RATE_LIMITS.wait_for_room(origin, bucket, reserve=reserve, should_stop=should_stop)
        try:
            return call()
        except Exception as error:
            failure = transient_failure(error)
            if failure is None or retry >= backoff.max_retries:
                raise
            if retried_inside is not None and retried_inside(error):
                raise
            retry += 1
            wait = backoff.wait_s(retry, failure.status, failure.headers)
        _sleep(wait, should_stop)


def _sleep(seconds: float, should_stop: Callable[[], bool] | None) -> None:
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if should_stop is not None and should_stop():
            raise StopRequested("asked to stop while waiting to try a Hub request again")
        time.sleep(min(_WAIT_SLICE_S, left))
