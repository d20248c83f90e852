"""Failure injection for the simulated Hub, and a counter of what it served.

Rules are checked in order for every request outside `/_sim/`; the first that fires decides the
failure. A request matches a rule when its path starts with `path`, contains `contains`, its
decoded query contains `query`, its route is `route` (`list`, `info`, `tree`, `resolve`; datasets'
alike) and its method is `method` (each empty: any). A rule fires on every `every`-th matching
request, or with `probability` (from a seeded generator, so a test run is repeatable), at most
`times` times, sparing the first `after`.

    kind        what the client sees
    rate_limit  429 whose RateLimit header says the window is spent (`"api";r=0;t=<retry_after>`),
                with no Retry-After, as the Hub's 429s (the client waits t + 1 seconds)
    server      a 5xx status (`status`, 500 by default)
    drop        the connection closes before any response is sent
    truncate    headers announce the full body, half of it arrives, the connection closes (the
                client sees a broken response and may resume with a Range request)
    short       the body is sent without a length, half of it, then the connection closes: a clean
                end as far as HTTP can tell (as when a proxy cuts a download); only the size the
                Hub announced (`X-Linked-Size`, the HEAD's `Content-Length`) shows it is short
    slow        the response is delayed by `delay_s` seconds, then served normally
    xet         a file answer (resolve) says the file is stored with Xet (`X-Xet-Hash` and a
                `Link: <...xet-read-token...>; rel="xet-auth"`), so huggingface_hub downloads it
                with hf_xet, from a Xet storage that refuses every request: the download fails
                the way hf_xet fails (a RuntimeError), not with an HTTP error; with `location`,
                the xet-auth link points to that origin instead of the Hub
    redirect    a file answer (resolve) is a 302 to the same path under `location` (a CDN on
                another origin), with the file's headers, as the Hub answers for large files
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal["rate_limit", "server", "drop", "truncate", "short", "slow", "xet", "redirect"]
FAULT_KINDS: tuple[str, ...] = ("rate_limit", "server", "drop", "truncate", "short", "slow", "xet", "redirect")
ROUTES: tuple[str, ...] = ("list", "info", "tree", "resolve")


@dataclass
class FaultRule:
    kind: FaultKind
    #: Only requests whose path starts with this prefix are candidates.
    path: str = "/"
    #: ... whose path contains this (e.g. `/resolve/`, or a file name) ...
    contains: str = ""
    #: ... whose decoded query string contains this (e.g. `filter=base_model:org/name`) ...
    query: str = ""
    #: ... on this route (`list`, `info`, `tree`, `resolve`; empty: any) ...
    route: str = ""
    #: ... and with this method (`GET`, `HEAD`; empty: any).
    method: str = ""
    every: int = 0
    probability: float = 0.0
    #: The first `after` matching requests are spared.
    after: int = 0
    times: int | None = None
    status: int = 500
    retry_after: int = 0
    delay_s: float = 0.5
    #: For `redirect`: the base URL (`http://host:port`) the file is sent to.
    location: str = ""
    fired: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        unknown = set(data) - set(cls.__dataclass_fields__) - {"fired"}
        if unknown:
            raise ValueError(f"unknown fault rule keys: {sorted(unknown)}")
        rule = cls(**{k: v for k, v in data.items() if k != "fired"})
        if rule.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {rule.kind!r}")
        if rule.route and rule.route not in ROUTES:
            raise ValueError(f"unknown route {rule.route!r}: use one of {', '.join(ROUTES)}")
        if rule.kind == "redirect" and not rule.location.startswith(("http://", "https://")):
            raise ValueError("a redirect rule needs a location (http://host:port)")
        return rule

    def matches(self, path: str, query: str, route: str, method: str) -> bool:
        return (
            path.startswith(self.path)
            and self.contains in path
            and self.query in query
            and (not self.route or self.route == route)
            and (not self.method or self.method.upper() == method.upper())
        )


@dataclass
class FaultPlan:
    rules: list[FaultRule] = field(default_factory=list)
    seed: int = 0
    _matched: Counter[int] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def set(self, rules: list[FaultRule], seed: int = 0) -> None:
        with self._lock:
            self.rules = list(rules)
            self._matched.clear()
            self._rng = random.Random(seed)

    def clear(self) -> None:
        self.set([])

    def pick(self, path: str, query: str = "", *, route: str = "", method: str = "GET") -> FaultRule | None:
        """The rule that fires for this request, if any (and count it). `query` is the decoded query."""
        with self._lock:
            for index, rule in enumerate(self.rules):
                if not rule.matches(path, query, route, method):
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                self._matched[index] += 1
                if self._matched[index] <= rule.after:
                    continue
                fires = (rule.every > 0 and self._matched[index] % rule.every == 0) or (
                    rule.probability > 0 and self._rng.random() < rule.probability
                )
                if fires:
                    rule.fired += 1
                    return rule
            return None


@dataclass
class RequestStats:
    """What the simulated Hub served: totals by route and status, faults fired."""

    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, route: str, status: int | str) -> None:
        with self._lock:
            self.counts["total"] += 1
            self.counts[f"route:{route}"] += 1
            self.counts[f"status:{status}"] += 1

    def add_bytes(self, route: str, n: int) -> None:
        """Body bytes sent on `route` (`bytes:resolve` is what downloads took)."""
        with self._lock:
            self.counts[f"bytes:{route}"] += n

    def note(self, key: str) -> None:
        """Count something else about the requests (`authorization`: requests that carried a token)."""
        with self._lock:
            self.counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    @property
    def total(self) -> int:
        return self.counts["total"]
