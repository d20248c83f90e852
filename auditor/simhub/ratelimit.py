"""The Hub's rate limits: a fixed window per bucket, announced on every response.

What the sim copies, and where it comes from:

- hub-docs `docs/hub/rate-limits.md`: three buckets, `api` (`/api/...`), `resolvers` (URLs with a
  `/resolve/` segment) and `pages` (the rest); "All quotas are calculated over 5-minute fixed
  windows"; per 5 minutes, anonymous 500 API / 3,000 resolvers, free 1,000 / 5,000, PRO
  2,500 / 12,000. Its header formats: `RateLimit: "api|pages|resolvers";r=[remaining];t=[seconds
  remaining until reset]` and `RateLimit-Policy: "fixed window";"api|pages|resolvers";q=[total
  allowed for window];w=[window duration in seconds]`. It names no `Retry-After`, so a 429 here
  carries none: a client must read `RateLimit`.
- huggingface_hub `utils/_http.py`: `hf_raise_for_status` ("Headers are set on every response: only
  use them if they are the reason for the 429"), `parse_ratelimit_headers` (what must parse them),
  and `http_backoff`, which waits `t` + 1 seconds on a 429 whose `RateLimit` says `r=0`.

Only requests let in are counted, so `r` never goes below 0; a refused one answers 429 with r=0
and the seconds left in the window. The sim's window starts with the first request after the
previous window ended (the Hub's may be aligned to the clock; a client cannot tell the difference).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: The sim's default quota: generous (no test or benchmark meets it by accident), yet enforced and
#: announced on every response, as on the Hub. The Hub's own are far lower (see above).
DEFAULT_RATE_LIMIT: tuple[int, float] = (100_000, 300.0)
BUCKETS: tuple[str, ...] = ("api", "resolvers", "pages")


def bucket_of(path: str) -> str:
    """The rate-limit bucket a request path is counted in.

    >>> bucket_of("/api/models"), bucket_of("/google/gemma-2b/resolve/main/config.json")
    ('api', 'resolvers')
    """
    if path.startswith("/api/"):
        return "api"
    if "/resolve/" in path:
        return "resolvers"
    return "pages"


@dataclass(frozen=True)
class WindowState:
    """A bucket's window as one request found it: let in or not, what is left, and when it resets."""

    bucket: str
    admitted: bool
    remaining: int
    reset_s: int
    quota: int
    window_s: float

    def headers(self) -> dict[str, str]:
        """`RateLimit` and `RateLimit-Policy`, in the Hub's formats."""
        return {
            "RateLimit": ratelimit_header(self.bucket, self.remaining, self.reset_s),
            "RateLimit-Policy": f'"fixed window";"{self.bucket}";q={self.quota};w={math.ceil(self.window_s)}',
        }


def ratelimit_header(bucket: str, remaining: int, reset_s: int) -> str:
    """`"api";r=0;t=55`: what is left in the window, and the whole seconds until it resets."""
    return f'"{bucket}";r={remaining};t={reset_s}'


class FixedWindows:
    """A fixed window of `quota` requests per `window_s` seconds, one per bucket. Thread-safe.

    >>> windows = FixedWindows(2, 60)
    >>> [windows.take("api").admitted for _ in range(3)]
    [True, True, False]
    """

    def __init__(self, quota: int, window_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if quota < 1 or window_s <= 0:
            raise ValueError(f"a rate limit needs a quota >= 1 and a window > 0 s, not ({quota}, {window_s})")
        self.quota = quota
        self.window_s = window_s
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def take(self, bucket: str) -> WindowState:
        """Count one request in `bucket` if the window has room; the window as the request left it."""
        now = self._clock()
        with self._lock:
            start, used = self._current(bucket, now)
            admitted = used < self.quota
            if admitted:
                used += 1
                self._windows[bucket] = (start, used)
        return self._state(bucket, admitted, start, used, now)

    def snapshot(self) -> dict[str, dict[str, float | int]]:
        """Per bucket: requests counted in the current window, the quota, the window, seconds to reset."""
        now = self._clock()
        with self._lock:
            current = {bucket: self._current(bucket, now) for bucket in BUCKETS}
        return {
            bucket: {
                "used": used,
                "quota": self.quota,
                "window": self.window_s,
                "reset_in": self._state(bucket, True, start, used, now).reset_s,
            }
            for bucket, (start, used) in current.items()
        }

    def _current(self, bucket: str, now: float) -> tuple[float, int]:
        start, used = self._windows.get(bucket, (now, 0))
        if now - start >= self.window_s:
            return now, 0
        return start, used

    def _state(self, bucket: str, admitted: bool, start: float, used: int, now: float) -> WindowState:
        reset_s = max(1, math.ceil(self.window_s - (now - start)))  # (not start + w - now: float error)
        return WindowState(bucket, admitted, max(0, self.quota - used), reset_s, self.quota, self.window_s)
