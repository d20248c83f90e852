"""The token policy: the user's Hub token goes to the Hub and nowhere else.

huggingface_hub finds the token itself (`HF_TOKEN`, or its token file) and adds it to the requests
it sends; this module decides, in one place, where that may happen. `token_for` says whether an
endpoint may get it; `keep_token_on_hub` adds two hooks to huggingface_hub's shared HTTP client
that keep it on the Hub whatever the Hub's answers point to: `drop_foreign_token` (a request hook)
and `refuse_foreign_xet_refresh` (a response hook). Both the audit's Hub calls (`auditor.hub.files`)
and the crawler (`crawlers.client`) follow it.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from auditor.errors import ModelFailed
from auditor.hub.backoff import add_client_hooks, origin_of

OFFICIAL_ENDPOINT = "https://huggingface.co"


def token_for(endpoint: str) -> bool | None:
    """Whether the user's Hub token may go to `endpoint`.

    huggingface_hub sends the token to the official Hub or to whatever `HF_ENDPOINT` names; the
    auditor keeps that rule when its endpoint comes from a config file or a flag, so that a typo or
    a hostile config never ships the token to another host. Returns None (huggingface_hub finds the
    token itself) or False (send none).

    Past the endpoint, huggingface_hub keeps the token on the Hub. A file's `HEAD` follows
    redirects only to the same or another Hub host (`_httpx2_follow_hub_redirects_with_backoff`,
    utils/_http.py line 735, "the auth header must not leave the Hub"); when the file lives on a CDN
    the download drops `authorization` before fetching it (`_get_metadata_or_catch_error`,
    file_download.py line 1821; PRs huggingface/huggingface_hub#1269 and #1345), and httpx strips
    `Authorization` from any redirect to another origin (httpx `_client.py` `_redirect_headers`;
    encode/httpx#3334). Xet storage gets a short-lived Xet token instead (`xet_headers_without_auth`,
    utils/_xet.py line 316). tests/auditor/test_hub_calls.py pins the CDN case.

    >>> token_for("https://huggingface.co/"), token_for("https://elsewhere.example")  # doctest: +SKIP
    (None, False)
    """
    trusted = {OFFICIAL_ENDPOINT, os.environ.get("HF_ENDPOINT", "").rstrip("/")}
    return None if endpoint.rstrip("/") in trusted else False


def trusted_origins() -> set[str]:
    """The origins the user's token may go to: the official Hub's and `HF_ENDPOINT`'s.

    >>> "https://huggingface.co" in trusted_origins()
    True
    """
    return {origin_of(e) for e in (OFFICIAL_ENDPOINT, os.environ.get("HF_ENDPOINT", "")) if e}


def drop_foreign_token(request: Any) -> None:
    """A request hook: no `Authorization` header to an origin the token is not for.

    The Hub's answers name other URLs that huggingface_hub follows with the same headers, token
    included: a listing's `Link: <...>; rel="next"` (utils/_pagination.py `_paginate_pages`, which
    `HfApi.list_repo_tree` pages through) and a file's `Link rel="xet-auth"`. A hostile or broken
    answer could point them anywhere; this keeps the token on the Hub whatever they say. httpx2
    runs request hooks before every send, each redirect included (httpx `_client.py`, `_send_handling_redirects`).
    """
    if "authorization" in request.headers and origin_of(str(request.url)) not in trusted_origins():
        del request.headers["authorization"]


_guard_lock = threading.Lock()
_guarded = False


def refuse_foreign_xet_refresh(response: Any) -> None:
    """A response hook: refuse a Xet-backed file whose token-refresh URL is on an origin the token
    is not for, when the request carried the token.

    huggingface_hub hands hf_xet the refresh URL the Hub's answer names (`Link rel="xet-auth"`, else
    `X-Xet-Refresh-Route`: utils/_xet.py `parse_xet_file_data_from_response`) together with the
    request's headers, token included (file_download.py `xet_get`, `token_refresh_headers=headers`),
    and hf_xet refreshes from Rust, where no hook of ours sees the request. So the answer is refused
    before any of that starts; the download fails, and the audit is a `download` row.
    """
    if "authorization" not in response.request.headers:
        return
    route = (response.links.get("xet-auth") or {}).get("url") or response.headers.get("X-Xet-Refresh-Route")
    if not route or "://" not in route:  # absent, or a path on the origin that answered
        return
    if origin_of(route) not in trusted_origins():
        raise ModelFailed(
            f"the Hub's answer for {response.request.url.path} names a Xet token endpoint on another host"
            f" ({origin_of(route)}), which would receive the Hub token",
            hint="check HF_ENDPOINT; the file is not downloaded",
            code="download",
        )


def keep_token_on_hub() -> None:
    """Add `drop_foreign_token` and `refuse_foreign_xet_refresh` to huggingface_hub's shared HTTP
    client, once per process.

    >>> keep_token_on_hub()  # before the first huggingface_hub call  # doctest: +SKIP
    """
    global _guarded
    with _guard_lock:
        if not _guarded:
            add_client_hooks(request=[drop_foreign_token], response=[refuse_foreign_xet_refresh])
            _guarded = True
