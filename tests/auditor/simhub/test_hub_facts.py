"""Every fact about the real Hub that the simulated Hub relies on, one test each, with its public source.

The simulated Hub must be at least as strict as the real one: a crawler that passes against it must
not be refused by the Hub. Each test here pins one behaviour the sim copies, and its comment says
where the behaviour is documented (a pull request, a hub-docs page, or a line of the installed
huggingface_hub client, read at 2.4.0). A future fact is one test to add here, with its source.

Everything runs over real HTTP on loopback, with raw httpx2 where the shape on the wire matters and
with the real client where what matters is how the client takes it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import BadRequestError, GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import parse_ratelimit_headers

from auditor.simhub import SimHub, World
from auditor.simhub.faults import FaultRule
from auditor.simhub.server import DETAIL_EXPAND, LISTING_EXPAND
from auditor.simhub.world import generated_files

GEMMA_IT = "google/gemma-2-2b-it"
PHI = "microsoft/Phi-3.5-mini-instruct"


@pytest.fixture
def api(hub: SimHub) -> HfApi:
    return HfApi(endpoint=hub.url, token=False)


def _documented_expand(method: Callable[..., Any]) -> set[str]:
    """The `expand` values a client method's docstring lists ("Possible values are ...")."""
    doc = method.__doc__ or ""
    paragraph = doc[doc.index("expand (") :]
    line = next(line for line in paragraph.splitlines() if "Possible values are" in line)
    return set(re.findall(r'`"([^"]+)"`', line))


def _pages(url: str, params: dict[str, Any] | None = None) -> tuple[list[str], str | None]:
    response = httpx2.get(url, params=params)
    response.raise_for_status()
    return [m["id"] for m in response.json()], response.links.get("next", {}).get("url")


def _read_all(url: str, between_pages: Callable[[int, list[str]], None] = lambda page, seen: None) -> list[str]:
    """Every id of a listing, following `Link`; `between_pages(n, seen)` runs after page n is read.

    Bounded, so that a cursor that never advances fails the test instead of hanging it.
    """
    seen, next_url = _pages(url)
    for page in range(1, 200):
        if next_url is None:
            return seen
        between_pages(page, seen)
        got, next_url = _pages(next_url)
        seen += got
    raise AssertionError(f"the listing did not end after 200 pages: {url}")


# -- expand ------------------------------------------------------------------------------------------


def test_the_sims_expand_lists_are_the_clients() -> None:
    # huggingface_hub hf_api.py line 2380 (list_models) and line 3179 (model_info) list the values
    # each route accepts; a client upgrade that changes them must show here.
    assert _documented_expand(HfApi.list_models) == LISTING_EXPAND
    assert _documented_expand(HfApi.model_info) == DETAIL_EXPAND
    assert {"baseModels", "childrenModelCount", "usedStorage"} == DETAIL_EXPAND - LISTING_EXPAND


@pytest.mark.parametrize("value", ["childrenModelCount", "baseModels", "usedStorage", "foo"])
def test_the_listing_refuses_detail_only_and_unknown_expand_values(hub: SimHub, value: str) -> None:
    # huggingface_hub PR #3182 (https://github.com/huggingface/huggingface_hub/pull/3182): baseModels,
    # childrenModelCount and usedStorage "are only accepted when using the /api/models/repo_id
    # endpoint"; one bad value refuses the whole request, valid values next to it do not help.
    response = httpx2.get(f"{hub.url}/api/models", params={"expand": ["tags", value], "limit": 5})
    assert response.status_code == 400
    assert response.json()["error"].startswith('"expand" must be one of ')
    assert response.headers["X-Error-Message"].startswith('"expand" must be one of ')


def test_the_client_raises_a_bad_request_for_a_detail_only_expand_in_a_listing(api: HfApi) -> None:
    # Source as above; hf_raise_for_status turns a 400 into BadRequestError (utils/_http.py).
    with pytest.raises(BadRequestError) as refused:
        list(api.list_models(expand=["childrenModelCount"], limit=5))
    assert isinstance(refused.value, HfHubHTTPError)
    assert refused.value.response.status_code == 400
    assert (refused.value.server_message or "").startswith('"expand" must be one of ')


def test_the_listing_accepts_every_value_of_the_clients_list(hub: SimHub) -> None:
    # hf_api.py line 2380: the values list_models documents; the sim omits the fields it has no data
    # for (gguf, evalResults, ...), as the Hub omits absent fields.
    response = httpx2.get(f"{hub.url}/api/models", params={"expand": sorted(LISTING_EXPAND), "limit": 3})
    assert response.status_code == 200
    models = response.json()
    assert len(models) == 3 and all({"_id", "id", "sha", "tags", "createdAt"} <= set(m) for m in models)
    assert not {"childrenModelCount", "baseModels", "usedStorage"} & {key for m in models for key in m}


@pytest.mark.parametrize("flag", ["full", "cardData", "config"])
def test_the_listing_refuses_expand_mixed_with_full_card_data_or_config(hub: SimHub, flag: str) -> None:
    # The client refuses the mix itself (hf_api.py line 2430: "`expand` cannot be used if `full`,
    # `cardData` or `fetch_config` are passed"); the Hub's answer is undocumented, so the sim refuses.
    response = httpx2.get(f"{hub.url}/api/models", params={"expand": "tags", flag: "true", "limit": 1})
    assert response.status_code == 400


def test_the_detail_route_accepts_the_lineage_fields(api: HfApi, hub: SimHub, world: World) -> None:
    # hf_api.py line 3179 (model_info's list) and PR #3182 (the detail route is where they belong).
    info = api.model_info(GEMMA_IT, expand=["childrenModelCount", "baseModels", "usedStorage"])
    assert info.children_model_count == world.children_count(GEMMA_IT) and info.children_model_count
    base_models: Any = api.model_info("defects/two-parents", expand=["baseModels"]).base_models  # a dict, not list[str]
    assert base_models is not None and [m["id"] for m in base_models["models"]] == [
        PHI,
        "microsoft/Phi-3-mini-4k-instruct",
    ]
    refused = httpx2.get(f"{hub.url}/api/models/{GEMMA_IT}", params={"expand": ["sha", "foo"]})
    assert refused.status_code == 400 and refused.json()["error"].startswith('"expand" must be one of ')


# -- pages and the cursor ----------------------------------------------------------------------------


def test_pages_hold_at_most_1000_and_limit_is_honoured(hub: SimHub, world: World) -> None:
    # hub-docs docs/hub/api.md (hub-docs PR #635): "The response is paginated, use the `Link` header to
    # get the following pages"; huggingface_hub utils/_pagination.py follows `rel="next"`. The page
    # size of 1,000 is the project's note (/work/shared/HUB_API.md), not a documented figure: the sim
    # serves no more, so a crawler that counts on more per page is caught.
    assert sum(1 for _ in world.live_models()) > 1000
    big = httpx2.get(f"{hub.url}/api/models", params={"limit": 5000})
    assert len(big.json()) == 1000 and "next" in big.links
    small = httpx2.get(f"{hub.url}/api/models", params={"limit": 7, "sort": "downloads", "expand": "downloads"})
    assert len(small.json()) == 7
    downloads = [m["downloads"] for m in small.json()]
    assert downloads == sorted(downloads, reverse=True)
    for bad in ("0", "-1", "ten"):
        assert httpx2.get(f"{hub.url}/api/models", params={"limit": bad}).status_code == 400


def test_the_last_page_has_no_link(hub: SimHub) -> None:
    # huggingface_hub utils/_pagination.py `_get_next_page`: the listing ends when `Link` is absent.
    last = httpx2.get(f"{hub.url}/api/models", params={"limit": 1000, "search": "defects/ring"})
    assert "next" not in last.links and "Link" not in last.headers
    assert {m["id"] for m in last.json()} == {"defects/ring-1", "defects/ring-2", "defects/ring-3"}
    ids, next_url = _pages(f"{hub.url}/api/models", {"limit": 2, "search": "defects/ring"})
    assert len(ids) == 2 and next_url is not None
    rest, after = _pages(next_url)
    assert len(rest) == 1 and after is None and not set(ids) & set(rest)


def test_ties_are_ordered_by_id_ascending(hub: SimHub, world: World) -> None:
    # The cursor in huggingface_hub PR #1176 (https://github.com/huggingface/huggingface_hub/pull/1176)
    # decodes to {"$or":[{"likes":294,"_id":{"$gt":"621ffdc1..."}},{"likes":{"$lt":294}}]}: key
    # descending, then _id ascending.
    for i in range(12):
        world.add_model(f"ties/m{i:02d}", likes=7 if i % 2 else 3)
    seen = _read_all(f"{hub.url}/api/models?search=ties/&sort=likes&limit=5")
    keys = [(-world.models[i].likes, world.models[i].object_id) for i in seen]
    assert keys == sorted(keys) and len(seen) == 12
    assert [k[1] for k in keys] != sorted(k[1] for k in keys)  # the key comes first, not the _id


def test_a_moving_sort_key_skips_and_repeats_models_across_pages(hub: SimHub, world: World) -> None:
    # PR #1176's keyset cursor (above): the next page is what sorts after the last model served, by
    # the keys as they are when the page is asked for.
    ids = [f"keyset/m{i:02d}" for i in range(20)]
    for i, repo_id in enumerate(ids):
        world.add_model(repo_id, downloads=1000 - 10 * i)
    start = f"{hub.url}/api/models?search=keyset/&sort=downloads&limit=5"
    assert _read_all(start) == ids  # still: each once, in order

    def move(page: int, seen: list[str]) -> None:
        if page == 1:
            assert seen == ids[:5]
            world.set_stats("keyset/m02", downloads=1)  # read, falls below the cursor
        if page == 2:
            world.set_stats("keyset/m15", downloads=5000)  # unread, rises above it

    seen = _read_all(start, move)
    assert "keyset/m15" not in seen  # skipped
    assert seen.count("keyset/m02") == 2  # repeated
    # Nothing else moves: an offset cursor would also have skipped m05 (shifted up into page 1's
    # range by m02's fall) and repeated a model when m15 rose.
    assert sorted(seen) == sorted(i for i in [*ids, "keyset/m02"] if i != "keyset/m15")
    assert world.models["keyset/m02"].last_modified == world.models["keyset/m02"].created_at  # no commit


def test_a_created_at_listing_neither_skips_nor_repeats(hub: SimHub, world: World) -> None:
    # createdAt never changes, so the keyset cursor (PR #1176) lands between the same two models
    # however many are added or deleted between pages.
    ids = [f"stable/m{i:02d}" for i in range(30)]
    for repo_id in ids:
        world.add_model(repo_id, downloads=len(repo_id))
    deleted: set[str] = set()

    def change(page: int, seen: list[str]) -> None:
        world.add_model(f"stable/new-{page}")  # newest: before the cursor, so not in this reading
        unread = [i for i in ids if i not in seen and i not in deleted]
        if page % 2 and len(unread) > 2:
            world.delete(unread[1])
            deleted.add(unread[1])
        if page == 2:
            world.delete(seen[-1])  # the cursor's own model: the keyset still knows where it was
            deleted.add(seen[-1])
        world.set_stats(seen[0], downloads=10**6)  # other keys may move; createdAt does not

    seen = _read_all(f"{hub.url}/api/models?search=stable/&sort=createdAt&limit=4", change)
    survivors = [i for i in ids if i not in deleted]
    assert deleted and len(seen) == len(set(seen))  # nothing repeated
    assert set(survivors) <= set(seen)  # nothing live skipped
    assert [i for i in seen if i in survivors] == survivors[::-1]  # newest first


@pytest.mark.parametrize(
    ("client_sort", "wire_sort"),
    [
        ("downloads", "downloads"),
        ("likes", "likes"),
        ("created_at", "createdAt"),
        ("last_modified", "lastModified"),
        ("trending_score", "trendingScore"),
    ],
)
def test_sort_values_are_the_hubs(api: HfApi, hub: SimHub, client_sort: str, wire_sort: str) -> None:
    # hf_api.py list_models docstring (sorts "created_at", "downloads", "last_modified", "likes",
    # "trending_score") and the mapping to the wire names around hf_api.py line 2469.
    assert httpx2.get(f"{hub.url}/api/models", params={"sort": wire_sort, "limit": 2}).status_code == 200
    assert len(list(api.list_models(sort=client_sort, limit=3))) == 3  # type: ignore[arg-type]
    assert httpx2.get(f"{hub.url}/api/models", params={"sort": client_sort + "x", "limit": 2}).status_code == 400


# -- rate limits --------------------------------------------------------------------------------------


def test_rate_limit_headers_are_on_every_response(world: World) -> None:
    # hub-docs docs/hub/rate-limits.md: `RateLimit: "api|pages|resolvers";r=[remaining];t=[seconds
    # remaining until reset]`, `RateLimit-Policy: "fixed window";"api|pages|resolvers";q=[total allowed
    # for window];w=[window duration in seconds]`, 5-minute windows. huggingface_hub utils/_http.py
    # line 971: "Headers are set on every response"; parse_ratelimit_headers (line 85) reads them.
    # A 429 need not carry Retry-After: the docs name only these two headers.
    world.rename("defects/two-parents", "moved/two-parents")
    with SimHub(world, rate_limit=(4, 300)) as hub, httpx2.Client(base_url=hub.url) as client:
        answers = [
            client.get("/api/models", params={"limit": 1}),
            client.get("/api/models/nobody/nothing"),
            client.get("/api/models", params={"expand": "childrenModelCount"}),
            client.get("/api/models/defects/two-parents"),
            client.get("/api/models", params={"limit": 1}),
        ]
        assert [a.status_code for a in answers] == [200, 401, 400, 307, 429]
        head = client.head(f"/{PHI}/resolve/main/README.md")
        assert head.status_code == 200
        admin = client.get("/_sim/stats")
    for answer, remaining in zip(answers, (3, 2, 1, 0, 0), strict=True):
        info = parse_ratelimit_headers(answer.headers)
        assert info is not None and (info.resource_type, info.remaining) == ("api", remaining)
        assert (info.limit, info.window_seconds) == (4, 300) and 1 <= info.reset_in_seconds <= 300
        assert answer.headers["RateLimit-Policy"] == '"fixed window";"api";q=4;w=300'
    assert "Retry-After" not in answers[-1].headers
    resolver = parse_ratelimit_headers(head.headers)
    assert resolver is not None and (resolver.resource_type, resolver.remaining) == ("resolvers", 3)
    assert "RateLimit" not in admin.headers and "RateLimit-Policy" not in admin.headers


def test_the_client_waits_out_a_spent_window(world: World) -> None:
    # huggingface_hub utils/_http.py ~L527-560: http_backoff retries a 429 after `t` + 1 seconds when
    # RateLimit says r=0; list_models pages through http_backoff (utils/_pagination.py).
    with SimHub(world, rate_limit=(3, 1)) as hub:
        started = time.monotonic()
        for _ in range(3):
            assert httpx2.get(f"{hub.url}/api/models", params={"limit": 1}).status_code == 200
        listed = {m.id for m in HfApi(endpoint=hub.url, token=False).list_models(search="defects/ring")}
        waited = time.monotonic() - started
    assert listed == {"defects/ring-1", "defects/ring-2", "defects/ring-3"}
    assert hub.stats.snapshot()["status:429"] == 1 and waited >= 1.95  # t (1 s, rounded up) + 1 s


# -- repos: renamed, missing, gated ------------------------------------------------------------------


def test_a_renamed_repo_redirects_to_its_new_id(api: HfApi, hub: SimHub, world: World, tmp_path: Path) -> None:
    # hub-docs docs/hub/repositories-settings.md line 20: "Transferring or renaming a repo will
    # automatically redirect the old URL to the new location, and will preserve download counts and
    # likes." The client follows redirects (utils/_http.py line 347, follow_redirects=True) and file
    # HEADs follow same-host ones (_httpx2_follow_hub_redirects_with_backoff).
    downloads = world.models["defects/two-parents"].downloads
    world.rename("defects/two-parents", "moved/two-parents")
    info = api.model_info("defects/two-parents", expand=["downloads", "sha"])
    assert info.id == "moved/two-parents" and info.downloads == downloads
    readme = hf_hub_download("defects/two-parents", "README.md", endpoint=hub.url, cache_dir=tmp_path, token=False)
    assert "# moved/two-parents" in Path(readme).read_text()
    assert [m.id for m in api.list_models(search="two-parents")] == ["moved/two-parents"]


def test_a_missing_repo_is_401_anonymous_and_404_with_a_token(hub: SimHub, world: World) -> None:
    # huggingface_hub utils/_http.py ~L933-943 (hf_raise_for_status): "401 is misleading as it is
    # returned for private and gated repos if user is not authenticated, missing repos"; see also
    # transformers PR #17651. A deleted repo answers as a missing one.
    world.delete("defects/no-base-model")
    for repo_id in ("nobody/nothing", "defects/no-base-model"):
        with pytest.raises(RepositoryNotFoundError) as anonymous:
            HfApi(endpoint=hub.url, token=False).model_info(repo_id)
        assert anonymous.value.response.status_code == 401
        with pytest.raises(RepositoryNotFoundError) as authenticated:
            HfApi(endpoint=hub.url, token="hf_other").model_info(repo_id)
        assert authenticated.value.response.status_code == 404
        assert authenticated.value.response.headers["X-Error-Code"] == "RepoNotFound"


def test_gated_metadata_is_public_and_its_files_are_not(hub: SimHub, world: World, tmp_path: Path) -> None:
    # hub-docs docs/hub/models-gated.md: users must agree to share their contact information "to access
    # the model files" (a gated repo's page says "This repository is publicly accessible, but you have
    # to accept the conditions to access its files and content"). huggingface_hub utils/_http.py
    # ~L940: 401 is "returned for private and gated repos if user is not authenticated"; with a token
    # not on the authorized list, the GatedRepoError docstring (errors.py) shows a 403.
    assert HfApi(endpoint=hub.url, token=False).model_info(GEMMA_IT).gated == "manual"
    with pytest.raises(GatedRepoError) as no_token:
        hf_hub_download(GEMMA_IT, "config.json", endpoint=hub.url, cache_dir=tmp_path, token=False)
    assert no_token.value.response.status_code == 401
    world.tokens["hf_accepted"] = {GEMMA_IT}
    with pytest.raises(GatedRepoError) as not_accepted:
        hf_hub_download(GEMMA_IT, "config.json", endpoint=hub.url, cache_dir=tmp_path, token="hf_other")
    assert not_accepted.value.response.status_code == 403
    assert hf_hub_download(GEMMA_IT, "config.json", endpoint=hub.url, cache_dir=tmp_path, token="hf_accepted")


# -- lineage tags -------------------------------------------------------------------------------------


def test_base_model_tags_list_every_relation_or_one(api: HfApi, world: World) -> None:
    # hub-docs docs/hub/model-cards.md (~line 156, base_model_relation): "The Hub will infer the type of
    # relationship from the current model to the base model ("adapter", "merge", "quantized",
    # "finetune")"; docs/inference-providers/register-as-a-provider.md (~line 169) shows the relation
    # form of the tag, `base_model:adapter:black-forest-labs/FLUX.1-dev`. No first-party page shows
    # the plain `base_model:<id>` form: it rests on ../shared/HUB_API.md and on third-party captures
    # of live answers (XLabs-AI/flux-RealismLora's tags list both `base_model:black-forest-labs/
    # FLUX.1-dev` and `base_model:adapter:black-forest-labs/FLUX.1-dev`).
    by_relation = {r: world._children.get((GEMMA_IT, r), set()) for r in ("finetune", "adapter", "quantized", "merge")}
    assert sum(1 for kids in by_relation.values() if kids) >= 2
    every = [m.id for m in api.list_models(filter=f"base_model:{GEMMA_IT}")]
    assert sorted(every) == sorted(set().union(*by_relation.values()))
    adapters = [m.id for m in api.list_models(filter=f"base_model:adapter:{GEMMA_IT}")]
    assert adapters and set(adapters) == by_relation["adapter"]


# -- downloads: Xet storage, CDNs, bodies cut short --------------------------------------------------


def _weights(world: World, repo_id: str) -> bytes:
    repo = world.models[repo_id]
    return generated_files(world, repo, repo.sha)["model.safetensors"].content


def _cached_files(cache: Path) -> list[Path]:
    """Files in a huggingface_hub cache's blobs and snapshots (refs and locks aside)."""
    return [p for p in cache.rglob("*") if p.is_file() and {"blobs", "snapshots"} & set(p.parts)]


def test_a_xet_backed_file_is_fetched_by_hf_xet_whose_failures_are_not_http_errors(hub: SimHub, tmp_path: Path) -> None:
    # hub-docs docs/hub/xet/using-xet-storage.md: from huggingface_hub 0.32 on, hf_xet is installed
    # with it and Xet-backed files are downloaded through it. The client reads a file's Xet id from
    # `X-Xet-Hash` and where to get a Xet token from `Link: <...>; rel="xet-auth"` (utils/_xet.py
    # `parse_xet_file_data_from_response`; constants.py lines 337-339), asks that route
    # (`/api/{type}s/{id}/xet-read-token/{rev}`, utils/_xet.py `xet_connection_info_refresh_url`) for
    # `X-Xet-Cas-Url`, `X-Xet-Access-Token` and `X-Xet-Token-Expiration` (constants.py lines 334-336),
    # and hands the download to hf_xet when it is installed (file_download.py line 2015). hf_xet's
    # failures reach the caller as RuntimeError ("CAS service error", huggingface/xet-core#394 and
    # #444), not as HfHubHTTPError or OSError.
    hub.faults.set([FaultRule("xet", route="resolve", contains="model.safetensors", every=1)])
    with pytest.raises(Exception) as failed:
        hf_hub_download(PHI, "model.safetensors", endpoint=hub.url, cache_dir=tmp_path, token=False)
    assert isinstance(failed.value, RuntimeError) and not isinstance(failed.value, OSError)
    assert hub.faults.rules[0].fired >= 1
    assert _cached_files(tmp_path) == []  # nothing half-written is kept
    assert hf_hub_download(PHI, "config.json", endpoint=hub.url, cache_dir=tmp_path, token=False)  # others are plain


def test_a_file_on_a_cdn_is_fetched_without_the_token(world: World, tmp_path: Path) -> None:
    # HUB_API.md: the Hub may redirect large files to a CDN. huggingface_hub reads the file's size
    # and etag from the redirect itself (file_download.py `get_hf_file_metadata`, line 1678:
    # `X-Linked-Etag`, `X-Linked-Size`, "Either from response headers (if redirected)"), follows
    # a HEAD's redirects only to Hub hosts ("the auth header must not leave the Hub", utils/_http.py
    # line 743), and drops `authorization` before fetching from another host (file_download.py line
    # 1821; PRs huggingface/huggingface_hub#1269, #1345). httpx strips `Authorization` from any
    # redirect to another origin (httpx `_client.py` `_redirect_headers`; encode/httpx#3334).
    weights = _weights(world, PHI)
    with SimHub(world) as hub, SimHub(world) as cdn:
        hub.faults.set(
            [FaultRule("redirect", route="resolve", contains="model.safetensors", every=1, location=cdn.url)]
        )
        path = hf_hub_download(PHI, "model.safetensors", endpoint=hub.url, cache_dir=tmp_path, token="hf_secret")
        with httpx2.Client(follow_redirects=True) as client:  # a redirect followed by httpx itself
            followed = client.get(
                f"{hub.url}/{PHI}/resolve/main/model.safetensors", headers={"Authorization": "Bearer hf_secret"}
            )
    assert Path(path).read_bytes() == weights and followed.content == weights
    served, at_cdn = hub.stats.snapshot(), cdn.stats.snapshot()
    assert served["status:302"] == 2 and served["authorization"] == 2  # the token went to the Hub ...
    assert at_cdn["bytes:resolve"] == 2 * len(weights) and at_cdn.get("authorization", 0) == 0  # ... never past it


def test_a_body_cut_short_fails_the_download_and_a_broken_one_is_tried_again(
    hub: SimHub, world: World, tmp_path: Path
) -> None:
    # file_download.py `http_get` (line 334): a body that ends before the size the Hub announced
    # raises OSError "Consistency check failed" (line 443) and `_download_to_tmp_and_move` removes
    # the partial file, so nothing is cached; a response broken off mid-body (RemoteProtocolError)
    # is tried again, with a Range request from the bytes already written if any (lines 469-482).
    weights = _weights(world, PHI)
    hub.faults.set([FaultRule("short", route="resolve", method="GET", contains="model.safetensors", every=1)])
    with pytest.raises(OSError, match="Consistency check failed"):
        hf_hub_download(PHI, "model.safetensors", endpoint=hub.url, cache_dir=tmp_path, token=False)
    assert _cached_files(tmp_path) == []
    hub.faults.set(
        [FaultRule("truncate", route="resolve", method="GET", contains="model.safetensors", every=1, times=1)]
    )
    path = hf_hub_download(PHI, "model.safetensors", endpoint=hub.url, cache_dir=tmp_path, token=False)
    assert Path(path).read_bytes() == weights
    assert hub.faults.rules[0].fired == 1  # cut once, fetched again, intact
