"""The Hub's HTTP API through huggingface_hub's own HTTP stack, with a request meter and pacing.

Every request goes through `huggingface_hub.utils.http_backoff` (the function `HfApi.list_models`
pages with, utils/_pagination.py): 429s wait for the reset the `RateLimit` header announces
(utils/_http.py lines 527-560), 5xx, timeouts and dropped connections retry with exponential
backoff. Before each request the client waits, if need be, for the Hub's rate-limit window to reset
(`crawlers.quota`), so a crawl slows down instead of running into 429s. Pages are followed through
the `Link` header one at a time, so a caller that stops early spends no request on the pages it did
not want, and each page arrives as the Hub's raw JSON (new Hub fields are never lost). A `Link`
to another host is refused: the token goes only where the endpoint is (`auditor.hub.token`).

What fails becomes a `HubError`, or a `HubUnavailableError` that stops the crawl, through the table
of `auditor.hub.failures`, which the audit's Hub calls read too.

Every request huggingface_hub sends in this process (retries included) is counted by a hook on its
shared HTTP client, and every response's rate-limit headers are read there: requests are the scarce
resource (500 to 2,500 per 5 minutes) and every crawl reports what it spent. The token is never
read here: huggingface_hub adds it from HF_TOKEN or its token file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from auditor.config import CrawlSettings, HubSettings
from auditor.errors import HubError
from auditor.hub.backoff import RATE_LIMITS, Backoff, origin_of, watch_rate_limits
from auditor.hub.failures import HubCall, to_hub_error
from auditor.hub.token import token_for


class RequestMeter:
    """A process-wide count of the HTTP requests huggingface_hub sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._installed = False

    def __call__(self, request: Any) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def install(self) -> None:
        """Add the counting hook to huggingface_hub's shared client (once per process)."""
        with self._lock:
            if self._installed:
                return
            self._installed = True
        from huggingface_hub.utils import _http

        watch_rate_limits()  # RATE_LIMITS' hooks, once per process (the audit's Hub calls add them too)
        base_factory = _http._GLOBAL_CLIENT_FACTORY

        def counting_factory() -> Any:
            client = base_factory()
            hooks = dict(client.event_hooks)
            hooks["request"] = [*hooks.get("request", []), self]
            client.event_hooks = hooks
            return client

        _http.set_client_factory(counting_factory)


METER = RequestMeter()


@dataclass(frozen=True)
class Page:
    """One page of a listing, and where the next one is (None on the last page)."""

    items: list[dict[str, Any]]
    next_url: str | None


class HubClient:
    """Raw-JSON access to the parts of the Hub API the crawler needs.

    `in_flight` is how many requests the caller may have under way at once: the client keeps that
    many requests of the rate-limit window in reserve. `should_stop` is polled while it waits for
    a window to reset. `max_pages` is where a listing is stopped as endless (`[crawl] max_pages`;
    None: that key's default).
    """

    def __init__(
        self,
        settings: HubSettings,
        *,
        in_flight: int = 1,
        should_stop: Callable[[], bool] | None = None,
        max_pages: int | None = None,
    ) -> None:
        METER.install()
        self.settings = settings
        self.max_pages = max_pages if max_pages is not None else CrawlSettings().max_pages
        self.endpoint = settings.endpoint
        self.in_flight = in_flight
        self.should_stop = should_stop
        self._aborted = threading.Event()
        self._start = METER.count
        #: `scheme://host:port` of the endpoint: where the token may go, and whose quota is spent.
        self.origin = origin_of(self.endpoint)

    def abort(self) -> None:
        """Requests of this client that wait for the rate limit give up (`StopRequested`), now and after."""
        self._aborted.set()

    def _stopping(self) -> bool:
        return self._aborted.is_set() or (self.should_stop is not None and self.should_stop())

    @property
    def requests(self) -> int:
        """Requests sent since this client was made (retries included)."""
        return METER.count - self._start

    def model(self, repo_id: str, fields: Sequence[str]) -> dict[str, Any] | None:
        """One model's JSON from its detail route, or None when the Hub says it does not exist.

        The Hub answers 404 for a missing repo, and 401 when no token is sent (as for a private
        one); huggingface_hub raises `RepositoryNotFoundError` for both (utils/_http.py lines
        933-943). A renamed repo redirects to its new id (hub-docs, docs/hub/repositories-settings.md:
        "renaming a repo will automatically redirect the old URL to the new location"), which
        huggingface_hub's client follows (`follow_redirects=True`, utils/_http.py line 347): the
        answer's `id` is then the new one. Any other failure raises: it is no evidence either way.
        """
        from huggingface_hub.errors import RepositoryNotFoundError

        url = f"{self.endpoint}/api/models/{quote(repo_id, safe='/')}"
        call = HubCall("fetching the metadata of", "model", repo_id)
        try:
            data, _ = self._get(url, [("expand", f) for f in fields], call)
        except RepositoryNotFoundError:  # gated included: both are "not found" (auditor.hub.failures)
            return None
        if not isinstance(data, dict):
            raise HubError(
                f"the Hub sent a {type(data).__name__} when {call}, expected an object",
                hint="the Hub's answer is malformed; run the same command again later",
            )
        return data

    def list_pages(
        self,
        *,
        filters: Sequence[str] = (),
        sort: str | None = None,
        fields: Sequence[str] = (),
        limit: int | None = None,
        start_url: str | None = None,
    ) -> Iterator[Page]:
        """Pages of `GET /api/models`, fetched lazily one at a time.

        `start_url` resumes a listing at a page an earlier `Page.next_url` named (its query holds
        everything, the cursor included); the other arguments are then ignored. A listing whose
        next-page link leads back to a page it read, or that would go past `max_pages` pages (counted
        from where this call started), raises a `HubError` instead of fetching another page: the
        pages already yielded stay with the caller.
        """
        query: list[tuple[str, Any]] = [("filter", f) for f in filters]
        if sort:
            query.append(("sort", sort))
        if limit:
            query.append(("limit", limit))
        query.extend(("expand", f) for f in fields)
        url: str | None = f"{self.endpoint}/api/models"
        params: list[tuple[str, Any]] | None = query
        if start_url is not None:
            url, params = start_url, None
        followed: set[str] = set()
        while url is not None:
            call = _listing(url, params)
            if len(followed) >= self.max_pages:
                raise HubError(
                    f"the listing was stopped after {len(followed)} pages ([crawl] max_pages), when {call}:"
                    " its next-page links never ended",
                    hint="the Hub may be sending an endless listing: run the crawl again later (it resumes);"
                    " if the Hub really is that large, raise [crawl] max_pages",
                )
            page, next_url = self._get(url, params, call)
            params = None  # the next page's URL carries the query
            if not isinstance(page, list):
                raise HubError(
                    f"the Hub sent a {type(page).__name__} when {call}, expected a list",
                    hint="the Hub's answer is malformed; run the same command again later",
                )
            followed.add(url)
            if next_url in followed:
                raise HubError(
                    f"the Hub's next-page link leads back to a page already read, when {call}",
                    hint="the listing would never end; run the crawl again later",
                )
            yield Page(page, next_url)
            url = next_url

    def _get(self, url: str, params: list[tuple[str, Any]] | None, call: HubCall) -> tuple[Any, str | None]:
        """GET `url` and decode its JSON: (data, the next page's URL from the Link header). `call`
        names the request in the error a failure becomes (`auditor.hub.failures`)."""
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

        settings = self.settings
        if origin_of(url) != self.origin:
            raise HubError(
                f"the Hub's next-page link points to {origin_of(url)}, not to {self.origin}",
                hint="the listing was not followed there, so no token left the endpoint; check HF_ENDPOINT",
            )
        RATE_LIMITS.wait_for_room(self.origin, "api", reserve=self.in_flight + 1, should_stop=self._stopping)
        try:
            response = http_backoff(
                "GET",
                url,
                params=params,
                headers=build_hf_headers(token=token_for(self.endpoint)),
                timeout=settings.timeout_s,
                **Backoff.from_settings(settings).http_backoff_kwargs(),  # the audit's Hub calls use the same
            )
            hf_raise_for_status(response)
            # The next page's absolute URL, in a GitHub-style `Link: <...>; rel="next"` header
            # (huggingface_hub's own pager reads it so: utils/_pagination.py `_get_next_page`).
            return response.json(), response.links.get("next", {}).get("url")
        except Exception as err:
            failure = to_hub_error(err, call, retries=settings.max_retries)
            if failure is None:  # a missing repo (the caller's answer), a bug, or ours
                raise
            raise failure from None


def _listing(url: str, params: list[tuple[str, Any]] | None) -> HubCall:
    """A listing request, as its errors name it: `listing models with base_model:acme/x`. The
    filters come from `params`, or from the URL of a later page, whose query carries them."""
    query = params if params is not None else parse_qsl(urlsplit(url).query)
    filters = [str(value) for key, value in query if key == "filter"]
    return HubCall("listing models" + (f" with {', '.join(filters)}" if filters else ""))
