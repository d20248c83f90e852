"""The token goes to the Hub's endpoint and nowhere else, whatever the Hub's answers point to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditor.errors import AuditorError
from auditor.simhub import SimHub
from tests.helpers.crawls import fresh_world, run_crawl

TOKEN = "hf_must_stay_at_the_endpoint"


@pytest.mark.parametrize("strategy", ["walk", "scan"])
def test_a_next_page_link_to_another_host_is_not_followed_with_the_token(
    strategy: str,
    other_host: tuple[str, list[tuple[str, str | None]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    origin, seen = other_host
    with SimHub(fresh_world(size=300, seed=4)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the endpoint the token is for (auditor.hub.token.token_for)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        authorized: list[str] = []
        original = hub._server.RequestHandlerClass.parse_request

        def spy(handler: Any) -> bool:
            ok = original(handler)
            authorized.append(handler.headers.get("Authorization", ""))
            return bool(ok)

        monkeypatch.setattr(hub._server.RequestHandlerClass, "parse_request", spy)
        hub.link_origin = origin  # every listing's next page is on the other host
        failure: AuditorError | None = None
        try:
            # Pages of 20 models: the listings (the scan's, and the roots' children in a walk) have a next page.
            run_crawl(hub, tmp_path / "s.duckdb", **{"crawl.strategy": strategy, "crawl.page_size": 20})
        except AuditorError as err:
            failure = err
    # The endpoint got the token (so it was there to leak); the other host got no request at all.
    assert f"Bearer {TOKEN}" in authorized
    assert seen == [], f"requests to {origin} (path, Authorization): {seen}"
    # The crawl says where the link pointed (a scan stops there; a walk reports the listings it lost).
    assert failure is not None and f"next-page link points to {origin}" in str(failure)
