"""The simulated Hub speaks the Hub API as the real huggingface_hub client expects it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import RemoteEntryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import parse_ratelimit_headers

from auditor.simhub import FaultRule, SimHub, World
from auditor.simhub.world import SimFile, object_id

GEMMA_IT = "google/gemma-2-2b-it"
PHI = "microsoft/Phi-3.5-mini-instruct"


@pytest.fixture
def api(hub: SimHub) -> HfApi:
    return HfApi(endpoint=hub.url, token=False)


def test_model_info_expands_lineage_fields(api: HfApi, world: World) -> None:
    info = api.model_info(GEMMA_IT, expand=["baseModels", "childrenModelCount", "sha", "gated", "downloads"])
    assert info.sha == world.models[GEMMA_IT].sha
    assert info.gated == "manual"
    assert info.children_model_count == world.children_count(GEMMA_IT)
    assert set(info.children_model_count) <= {"finetune", "adapter", "quantized", "merge"}

    child = api.model_info("defects/merge-with-ghost")
    assert child.base_models == {
        "relation": "merge",
        "models": [
            {"_id": child.base_models["models"][0]["_id"], "id": "meta-llama/Llama-3.1-8B-Instruct"},
            {"_id": child.base_models["models"][1]["_id"], "id": "ghost/deleted-model"},
        ],
    }
    assert "base_model:merge:ghost/deleted-model" in child.tags
    assert child.card_data["base_model"] == ["meta-llama/Llama-3.1-8B-Instruct", "ghost/deleted-model"]
    assert child.siblings and any(s.rfilename == "README.md" for s in child.siblings)


def test_listing_filters_are_anded_and_follow_link_pages(api: HfApi, world: World) -> None:
    children = {c for (p, r), kids in world._children.items() if p == GEMMA_IT and r == "finetune" for c in kids}
    listed = [m.id for m in api.list_models(filter=f"base_model:finetune:{GEMMA_IT}")]
    assert set(listed) == children and len(listed) == len(children)

    both = {m.id for m in api.list_models(filter=[f"base_model:finetune:{GEMMA_IT}", "license:apache-2.0"])}
    assert both and both < children


def test_hfapi_follows_link_pages_to_the_end(api: HfApi, hub: SimHub, world: World) -> None:
    hub.stats.reset()
    everything = [m.id for m in api.list_models()]
    live = [m.repo_id for m in world.live_models()]
    assert len(live) > 1000  # more than one page of 1000
    assert len(everything) == len(set(everything)) == len(live) and set(everything) == set(live)
    assert hub.stats.snapshot()["route:list"] == -(-len(live) // 1000)


def test_card_data_config_blobs_and_legacy_ids(api: HfApi, world: World) -> None:
    listed = next(iter(api.list_models(search="defects/two-parents", cardData=True, fetch_config=True)))
    assert listed.card_data is not None and listed.card_data.base_model == [PHI, "microsoft/Phi-3-mini-4k-instruct"]
    assert listed.config == {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3"}
    world.add_model("gpt2", files={"config.json": b"{}", "model.safetensors": SimFile(b"w" * 300, lfs=True)})
    info = api.model_info("gpt2", files_metadata=True)
    sizes = {s.rfilename: (s.size, s.lfs.size if s.lfs else None) for s in info.siblings or []}
    assert sizes == {"config.json": (2, None), "model.safetensors": (300, 300)}


def test_search_author_sort_and_expand(api: HfApi) -> None:
    by_author = list(api.list_models(author="defects", expand=["lastModified", "sha"]))
    assert by_author and all(m.id.startswith("defects/") for m in by_author)
    assert all(m.sha is not None and m.downloads is None for m in by_author)  # expand returns only what was asked
    newest = list(api.list_models(sort="last_modified", limit=5))
    assert len(newest) == 5
    found = list(api.list_models(search="cross-family"))
    assert [m.id for m in found] == ["defects/cross-family-merge"]


def test_snapshot_download_of_a_model_and_a_dataset(api: HfApi, hub: SimHub, world: World, tmp_path: Path) -> None:
    world.add_model(
        "acme/tiny",
        declared=[PHI],
        relation="finetune",
        family="phi",
        files={"config.json": b'{"model_type": "phi3"}', "weights/model.safetensors": b"\x00" * 4096},
    )
    world.add_dataset("allenai/real-toxicity-prompts", {"prompts.jsonl": b'{"prompt": {"text": "Hi"}}\n'})

    path = Path(snapshot_download("acme/tiny", endpoint=hub.url, cache_dir=tmp_path, token=False))
    assert (path / "weights" / "model.safetensors").read_bytes() == b"\x00" * 4096
    assert path.name == world.models["acme/tiny"].sha

    data = Path(
        snapshot_download(
            "allenai/real-toxicity-prompts", repo_type="dataset", endpoint=hub.url, cache_dir=tmp_path, token=False
        )
    )
    assert json.loads((data / "prompts.jsonl").read_text())["prompt"]["text"] == "Hi"

    tree = list(api.list_repo_tree("acme/tiny", recursive=True))
    lfs = [f for f in tree if getattr(f, "lfs", None)]
    assert [f.path for f in lfs] == ["weights/model.safetensors"] and lfs[0].lfs.size == 4096


def test_a_pinned_revision_stays_downloadable_after_a_repush(hub: SimHub, world: World, tmp_path: Path) -> None:
    world.add_model("acme/pinned", files={"config.json": b'{"v": 1}'})
    old = world.models["acme/pinned"].sha
    world.repush("acme/pinned", files={"config.json": b'{"v": 2}'})

    at_old = hf_hub_download(
        "acme/pinned", "config.json", revision=old, endpoint=hub.url, cache_dir=tmp_path, token=False
    )
    at_main = hf_hub_download("acme/pinned", "config.json", endpoint=hub.url, cache_dir=tmp_path, token=False)
    assert json.loads(Path(at_old).read_text()) == {"v": 1}
    assert json.loads(Path(at_main).read_text()) == {"v": 2}
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(
            "acme/pinned", "config.json", revision="0" * 40, endpoint=hub.url, cache_dir=tmp_path, token=False
        )
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("acme/pinned", "nope.json", endpoint=hub.url, cache_dir=tmp_path, token=False)


def test_rate_limit_answers_carry_the_hubs_headers(hub: SimHub) -> None:
    # The injected 429 says what the Hub's say: r=0 and the reset in RateLimit, and no Retry-After
    # (the Hub's rate-limit docs name only RateLimit and RateLimit-Policy; see test_hub_facts.py).
    hub.faults.set([FaultRule(kind="rate_limit", path="/api/models", every=1, times=1, retry_after=7)])
    response = httpx2.get(f"{hub.url}/api/models", params={"limit": 1})
    assert response.status_code == 429
    assert "Retry-After" not in response.headers
    assert response.headers["RateLimit"] == '"api";r=0;t=7'
    info = parse_ratelimit_headers(response.headers)
    assert info is not None and info.remaining == 0 and info.reset_in_seconds == 7
    assert (info.limit, info.window_seconds) == hub.rate_limit == (100_000, 300)
    after = httpx2.get(f"{hub.url}/api/models", params={"limit": 1})
    assert after.status_code == 200
    info = parse_ratelimit_headers(after.headers)
    assert info is not None and info.remaining == 100_000 - 2  # the injected 429 was let in, so counted


def test_the_client_survives_drops_truncations_and_5xx(api: HfApi, hub: SimHub, world: World) -> None:
    hub.faults.set(
        [
            FaultRule(kind="drop", path="/api/models", every=1, times=1),
            FaultRule(kind="truncate", path="/api/models", every=1, times=1),
            FaultRule(kind="server", path="/api/models", every=1, times=1, status=502),
        ]
    )
    listed = [m.id for m in api.list_models(filter=f"base_model:adapter:{PHI}")]
    assert len(listed) == world.children_count(PHI)["adapter"]
    assert [r.fired for r in hub.faults.rules] == [1, 1, 1]
    stats = hub.stats.snapshot()
    assert stats["status:dropped"] == 1 and stats["status:502"] == 1


def test_truncated_file_is_not_cached(hub: SimHub, world: World, tmp_path: Path) -> None:
    world.add_model("acme/blob", files={"model.safetensors": SimFile(b"x" * 5000, lfs=True)})
    hub.faults.set([FaultRule(kind="truncate", path="/acme/blob/resolve", every=1, times=2)])
    # The first GET arrives cut; the client retries and gets the whole file, never half of it.
    path = Path(hf_hub_download("acme/blob", "model.safetensors", endpoint=hub.url, cache_dir=tmp_path, token=False))
    assert path.read_bytes() == b"x" * 5000
    assert hub.faults.rules[0].fired == 2


def test_admin_endpoints_are_not_counted(hub: SimHub) -> None:
    httpx2.get(f"{hub.url}/api/models/{PHI}")
    httpx2.head(f"{hub.url}/{PHI}/resolve/main/README.md")
    stats = httpx2.get(f"{hub.url}/_sim/stats")
    assert stats.json()["total"] == 2 and stats.json()["route:info"] == 1
    assert "RateLimit" not in stats.headers
    truth = httpx2.get(f"{hub.url}/_sim/truth").json()
    assert truth["nodes"] > 100 and truth["listing_lower_bound"] > 10
    changes = httpx2.post(f"{hub.url}/_sim/evolve", json={"fraction": 0.01, "seed": 2}).json()
    assert changes["new"] and changes["deleted"]
    assert httpx2.get(f"{hub.url}/_sim/stats").json()["total"] == 2
    windows = httpx2.get(f"{hub.url}/_sim/ratelimit").json()
    assert {b: w["used"] for b, w in windows.items()} == {"api": 1, "resolvers": 1, "pages": 0}
    assert windows["api"]["quota"] == 100_000 and windows["api"]["window"] == 300


def test_a_renamed_repo_answers_307_on_every_route(hub: SimHub, world: World) -> None:
    world.rename("defects/two-parents", "moved/two-parents")
    sha = world.models["moved/two-parents"].sha
    pairs: list[tuple[str, str]] = []
    with httpx2.Client(base_url=hub.url, follow_redirects=False) as client:
        for tail in (
            "?expand=sha",
            f"/revision/{sha}",
            "/tree/main?recursive=true",
        ):
            pairs.append((f"/api/models/defects/two-parents{tail}", f"/api/models/moved/two-parents{tail}"))
        pairs.append(("/defects/two-parents/resolve/main/README.md", "/moved/two-parents/resolve/main/README.md"))
        for old_path, new_path in pairs:
            moved = client.get(old_path)
            assert (moved.status_code, moved.headers["Location"]) == (307, new_path), old_path
            assert client.get(new_path).status_code == 200
        # A second rename points the first old id straight at the newest one.
        world.rename("moved/two-parents", "again/two-parents")
        assert client.get("/api/models/defects/two-parents").headers["Location"] == "/api/models/again/two-parents"
        # A new model that takes an old id over ends its redirect.
        world.add_model("defects/two-parents")
        assert client.get("/api/models/defects/two-parents").status_code == 200
        # Listed: the renamed model under its newest id, with the `_id` it was created with, and the
        # new model under the old id, with an `_id` of its own.
        listed = client.get("/api/models", params={"search": "two-parents", "expand": "sha"}).json()
        oids = {m["id"]: m["_id"] for m in listed}
        assert set(oids) == {"again/two-parents", "defects/two-parents"}
        assert oids["again/two-parents"] == object_id("defects/two-parents") != oids["defects/two-parents"]


def test_expand_values_without_data_are_accepted_and_omitted(hub: SimHub) -> None:
    response = httpx2.get(
        f"{hub.url}/api/models/{PHI}", params={"expand": ["sha", "gguf", "evalResults", "widgetData", "model-index"]}
    )
    assert response.status_code == 200 and set(response.json()) == {"_id", "id", "sha"}
    listed = httpx2.get(f"{hub.url}/api/models", params={"expand": ["inference", "mask_token"], "limit": 2}).json()
    assert [set(m) for m in listed] == [{"_id", "id"}] * 2


def test_the_default_order_moves_with_the_stats(hub: SimHub, world: World) -> None:
    # The Hub does not document its default order; the sim's moves, so a crawler relying on it is caught.
    for i in range(6):
        world.add_model(f"order/m{i}", likes=10 * i)
    listed = [m["id"] for m in httpx2.get(f"{hub.url}/api/models", params={"search": "order/"}).json()]
    assert listed == [f"order/m{i}" for i in reversed(range(6))]
    world.set_stats("order/m0", likes=1000)
    listed = [m["id"] for m in httpx2.get(f"{hub.url}/api/models", params={"search": "order/"}).json()]
    assert listed[0] == "order/m0"


def test_a_bad_cursor_is_refused(hub: SimHub) -> None:
    for cursor in ("not-base64!", "eyJvIjogNX0=", "bnVsbA=="):  # junk, {"o": 5} (an offset), null
        assert httpx2.get(f"{hub.url}/api/models", params={"cursor": cursor}).status_code == 400
