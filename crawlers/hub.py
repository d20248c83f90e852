"""The Hub's HTTP API through huggingface_hub's own HTTP stack, with a request meter.

Listing goes through `huggingface_hub.utils.http_backoff` (the function `HfApi.list_models` uses):
429s wait as the server asks (`RateLimit` reset, else `Retry-After`), 5xx, timeouts and dropped
connections retry with exponential backoff. Pages are followed through the `Link` header one at a
time, so a caller that stops early spends no request on the pages it did not want, and each page
arrives as the Hub's raw JSON (new Hub fields are never lost).

Every request huggingface_hub sends in this process (retries included) is counted by a hook on its
shared HTTP client: requests are the scarce resource (500 to 2,500 per 5 minutes) and every crawl
reports what it spent. The token is never read here: huggingface_hub adds it from HF_TOKEN or its
token file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

from auditor.config import HubSettings
from auditor.errors import HubError, HubUnavailableError
from auditor.hubfiles import token_for


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

        base_factory = _http._GLOBAL_CLIENT_FACTORY

        def counting_factory() -> Any:
            client = base_factory()
            hooks = dict(client.event_hooks)
            hooks["request"] = [*hooks.get("request", []), self]
            client.event_hooks = hooks
            return client

        _http.set_client_factory(counting_factory)


METER = RequestMeter()


class HubClient:
    """Raw-JSON access to the parts of the Hub API the crawler needs."""

    def __init__(self, settings: HubSettings) -> None:
        METER.install()
        self.settings = settings
        self.endpoint = settings.endpoint
        self._start = METER.count

    @property
    def requests(self) -> int:
        """Requests sent since this client was made (retries included)."""
        return METER.count - self._start

    def model(self, repo_id: str, fields: Sequence[str]) -> dict[str, Any] | None:
        """One model's JSON, or None when the Hub says it does not exist."""
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
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of `GET /api/models`, fetched lazily one at a time."""
        params: list[tuple[str, Any]] = [("filter", f) for f in filters]
        if sort:
            params.append(("sort", sort))
        if limit:
            params.append(("limit", limit))
        params.extend(("expand", f) for f in fields)
        url: str | None = f"{self.endpoint}/api/models"
        first = True
        while url is not None:
            page, url = self._get(url, params if first else None)
            first = False
            if not isinstance(page, list):
                raise HubError(f"the Hub sent a {type(page).__name__} for a model listing, expected a list")
            yield page

    def _get(self, url: str, params: list[tuple[str, Any]] | None) -> tuple[Any, str | None]:
        """GET `url` and decode its JSON: (data, the next page's URL from the Link header)."""
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

        settings = self.settings
        try:
            response = http_backoff(
                "GET",
                url,
                params=params,
                headers=build_hf_headers(token=token_for(self.endpoint)),
                timeout=settings.timeout_s,
                max_retries=settings.max_retries,
                base_wait_time=settings.backoff_s,
                max_wait_time=max(settings.backoff_s * 8, settings.backoff_s),
            )
            hf_raise_for_status(response)
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
            raise HubError(f"the Hub refused {what}: HTTP {status}", hint="check the model id and your token") from None
        except (httpx2.TransportError, httpx2.StreamError, ValueError) as err:
            raise HubUnavailableError(
                f"no usable answer from {self.endpoint} for {_describe(url)}: {type(err).__name__}: {err}",
                hint="check the network and HF_ENDPOINT; the crawl resumes where it stopped when run again",
            ) from None


def _describe(url: str) -> str:
    path = url.split("://", 1)[-1].split("/", 1)[-1]
    return "/" + path.split("?")[0]
