"""The Hub's HTTP API through huggingface_hub's own HTTP stack, with a request meter and pacing.

Every request goes through `huggingface_hub.utils.http_backoff` (the function `HfApi.list_models`
pages with, utils/_pagination.py): 429s wait for the reset the `RateLimit` header announces
(utils/_http.py lines 527-560), 5xx, timeouts and dropped connections retry with exponential
backoff. Before each request the client waits, if need be, for the Hub's rate-limit window to reset
(`crawlers.quota`), so a crawl slows down instead of running into 429s. Pages are followed through
the `Link` header one at a time, so a caller that stops early spends no request on the pages it did
not want, and each page arrives as the Hub's raw JSON (new Hub fields are never lost). A `Link`
to another host is refused: the token goes only where the endpoint is.

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
from urllib.parse import quote

from auditor.config import HubSettings
from auditor.errors import HubError, HubUnavailableError, hub_unreachable
from auditor.hub.backoff import RATE_LIMITS, Backoff, origin_of, watch_rate_limits
from auditor.hub.files import token_for
from auditor.textsafety import strip_control


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
    a window to reset.
    """

    def __init__(
        self, settings: HubSettings, *, in_flight: int = 1, should_stop: Callable[[], bool] | None = None
    ) -> None:
        METER.install()
        self.settings = settings
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
        try:
            data, _ = self._get(url, [("expand", f) for f in fields])
        except RepositoryNotFoundError:
            return None
        if not isinstance(data, dict):
            raise HubError(f"the Hub sent a {type(data).__name__} for model {repo_id}, expected an object")
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
        everything, the cursor included); the other arguments are then ignored.
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
            page, next_url = self._get(url, params)
            params = None  # the next page's URL carries the query
            if not isinstance(page, list):
                raise HubError(f"the Hub sent a {type(page).__name__} for a model listing, expected a list")
            followed.add(url)
            if next_url in followed:
                raise HubError(
                    f"the Hub's next-page link for {_describe(url)} leads back to a page already read",
                    hint="the listing would never end; run the crawl again later",
                )
            yield Page(page, next_url)
            url = next_url

    def _get(self, url: str, params: list[tuple[str, Any]] | None) -> tuple[Any, str | None]:
        """GET `url` and decode its JSON: (data, the next page's URL from the Link header)."""
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
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
        except RepositoryNotFoundError:
            raise
        except HfHubHTTPError as err:
            status = err.response.status_code if err.response is not None else None
            what = _describe(url)
            if status is not None and (status == 429 or status >= 500):
                raise HubUnavailableError(
                    f"the Hub kept failing for {what} (HTTP {status} after {settings.max_retries} retries)",
                    hint="the Hub may be down or rate-limiting this client; run the same command again later:"
                    " it resumes where it stopped",
                ) from None
            said = strip_control(err.server_message or "").strip()[:300]
            raise HubError(
                f"the Hub refused {what}: HTTP {status}" + (f" ({said})" if said else ""),
                hint="check the model id and your token",
            ) from None
        except (httpx2.StreamError, ValueError) as err:  # an answer whose body does not decode
            raise HubUnavailableError(
                f"no usable answer from {self.endpoint} for {_describe(url)}: {type(err).__name__}: {err}",
                hint="check the network and HF_ENDPOINT; the crawl resumes where it stopped when run again",
            ) from None
        except Exception as err:
            unreachable = hub_unreachable(err)  # refused, dropped, timed out, or HF_HUB_OFFLINE
            if unreachable is None:
                raise
            raise unreachable from None


def _describe(url: str) -> str:
    path = url.split("://", 1)[-1].split("/", 1)[-1]
    return "/" + path.split("?")[0]
