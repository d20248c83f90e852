"""The audit's own Hub calls: repo info, file trees, downloads and the prompt dataset, under the Hub's faults.

Everything runs the real huggingface_hub client (and hf_xet) over HTTP against the simulated Hub.
Rate-limit faults say `t=0`, so each 429 costs the one second that huggingface_hub's rule (and
ours, `auditor.hub.backoff`) adds to the reset time.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from auditor.audit.driver import AuditOutcome, audit_model, ensure_battery
from auditor.audit.loader import fetch_model
from auditor.config import HubSettings
from auditor.errors import PERMANENT_CODES, HubUnavailableError, ModelFailed
from auditor.hub.backoff import Backoff
from auditor.hub.files import fetch_files, list_repo_files
from auditor.hub.token import keep_token_on_hub
from auditor.simhub import SimHub, World
from auditor.simhub.faults import FaultRule
from auditor.simhub.world import SimFile
from auditor.store import Store
from tests.helpers.audits import ACCEPTED_TOKEN, audit_config, audit_world
from tests.helpers.crawls import fresh_world

DATASET = "allenai/real-toxicity-prompts"
ROOT = "meta-llama/Llama-3.1-8B-Instruct"  # gated: the token must reach the Hub
TOXIC = "planted/llama-toxic-sft"
NIGHT = (ROOT, TOXIC)

#: One 429 (`t=0`) on each kind of request of a night: the dataset's info, a model's info, a
#: model's tree, a file's HEAD, the dataset's file and a model's weights.
RATE_LIMITED = [
    FaultRule("rate_limit", route="info", contains=DATASET, every=1, times=1),
    FaultRule("rate_limit", route="info", contains=TOXIC, every=1, times=1),
    FaultRule("rate_limit", route="tree", contains=ROOT, every=1, times=1),
    FaultRule("rate_limit", route="resolve", method="HEAD", contains=TOXIC, every=1, times=1),
    FaultRule("rate_limit", route="resolve", method="GET", contains=DATASET, every=1, times=1),
    FaultRule("rate_limit", route="resolve", method="GET", contains="model.safetensors", every=1, times=1),
]


def _night(resolved: Any, store_path: Path) -> dict[str, AuditOutcome]:
    with Store.open(store_path) as store:
        battery = ensure_battery(resolved, store)
        return {repo_id: audit_model(resolved, store, repo_id, battery=battery) for repo_id in NIGHT}


def _rows(store_path: Path, outcomes: dict[str, AuditOutcome]) -> dict[str, Any]:
    """Per model: status, sha, completions, and every score of its audit."""
    with Store.open(store_path, read_only=True) as store:
        rows = {}
        for repo_id, outcome in outcomes.items():
            scores = store.query(
                "SELECT prompt_id, attribute, score FROM scores WHERE audit_id = ? ORDER BY ALL", [outcome.audit_id]
            )
            rows[repo_id] = (outcome.status, outcome.sha, outcome.n_completions, scores)
    return rows


@pytest.fixture(scope="module")
def night(tiny_assets: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A world, its simulated Hub, and a clean night of audits of `NIGHT` to compare others with."""
    tmp = tmp_path_factory.mktemp("hub-calls")
    world = audit_world(tiny_assets)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    with SimHub(world) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        clean = _night(audit_config(hub, tiny_assets, tmp / "clean-cache"), tmp / "clean.duckdb")
        yield {"world": world, "hub": hub, "rows": _rows(tmp / "clean.duckdb", clean), "assets": tiny_assets}
    monkeypatch.undo()


@pytest.fixture
def hub(night: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[SimHub]:
    """The night's Hub, with the token and endpoint set, and no fault left behind."""
    running: SimHub = night["hub"]
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", running.url)
    running.stats.reset()
    yield running
    running.faults.clear()


def test_a_night_under_rate_limits_ends_as_a_clean_night(night: dict[str, Any], hub: SimHub, tmp_path: Path) -> None:
    hub.faults.set([replace(rule) for rule in RATE_LIMITED])  # fresh counts
    outcomes = _night(audit_config(hub, night["assets"], tmp_path / "cache"), tmp_path / "s.duckdb")
    assert [rule.fired for rule in hub.faults.rules] == [1] * len(RATE_LIMITED)
    assert hub.stats.snapshot()["status:429"] == len(RATE_LIMITED)
    assert all(o.status == "done" for o in outcomes.values()), [o.reason for o in outcomes.values()]
    assert _rows(tmp_path / "s.duckdb", outcomes) == night["rows"]


@pytest.mark.parametrize("cut", ["short", "xet"])
def test_a_download_that_fails_part_way_is_a_row_a_later_run_finishes(
    night: dict[str, Any], hub: SimHub, tmp_path: Path, cut: str
) -> None:
    # `short`: the body ends half-way as if complete (only its announced size shows it); `xet`: the
    # weights are stored with Xet and hf_xet fails, with a RuntimeError.
    resolved = audit_config(hub, night["assets"], tmp_path / "cache")
    weights_of_toxic = {"path": f"/{TOXIC}/resolve/", "contains": "model.safetensors", "every": 1}
    hub.faults.set([FaultRule.from_dict({"kind": cut, "route": "resolve", **weights_of_toxic})])
    with Store.open(tmp_path / "s.duckdb") as store:
        battery = ensure_battery(resolved, store)
        failed = audit_model(resolved, store, TOXIC, battery=battery)
        code = store.query("SELECT reason_code FROM audits WHERE audit_id = ?", [failed.audit_id])[0][0]
        hub.faults.clear()
        finished = audit_model(resolved, store, TOXIC, battery=battery)
        statuses = store.query("SELECT status FROM audits WHERE repo_id = ? ORDER BY audit_id", [TOXIC])
    assert failed.status == "failed" and code == "download" and code not in PERMANENT_CODES
    assert "model.safetensors" in (failed.reason or "")
    if cut == "xet":
        assert "RuntimeError" in (failed.reason or "")
    assert statuses == [("failed",), ("done",)]
    assert _rows(tmp_path / "s.duckdb", {TOXIC: finished})[TOXIC] == night["rows"][TOXIC]
    weights = night["world"].models[TOXIC].files["model.safetensors"].content
    assert finished.download_bytes == len(weights)  # the rest came down before the failure, and stayed


def test_a_file_named_like_a_pattern_downloads_only_itself(night: dict[str, Any], hub: SimHub, tmp_path: Path) -> None:
    world: World = night["world"]
    files = dict(world.models[TOXIC].files or {})
    files["*.safetensors"] = SimFile(b"not weights", lfs=True)
    files["extra/big.safetensors"] = SimFile(bytes(3_000_000), lfs=True)  # what a glob would pull in
    world.add_model("odd/star-named", declared=[ROOT], files=files)
    wanted = sum(len(f.content) for path, f in files.items() if "/" not in path and path != "README.md")
    wanted -= len(files[".gitattributes"].content) if ".gitattributes" in files else 0
    cap_gb = (wanted + 1_000_000) / 1e9  # room for what loading needs, not for the big file
    settings = audit_config(hub, night["assets"], tmp_path / "cache", **{"audit.max_download_gb": cap_gb}).config
    fetched = fetch_model("odd/star-named", None, settings.audit, endpoint=hub.url)
    served = hub.stats.snapshot()["bytes:resolve"]
    assert fetched.download_bytes == served <= cap_gb * 1e9
    assert (fetched.path / "*.safetensors").read_bytes() == b"not weights"
    assert not (fetched.path / "extra").exists()
    assert fetch_model("odd/star-named", None, settings.audit, endpoint=hub.url).download_bytes == 0  # cached


def test_a_request_that_keeps_failing_is_a_retryable_failure_and_retries_never_multiply(
    hub: SimHub, tmp_path: Path
) -> None:
    settings = HubSettings(endpoint=hub.url, max_retries=2, backoff_s=0.01)
    hub.faults.set([FaultRule("server", route="info", contains=TOXIC, status=503, every=1)])
    with pytest.raises(ModelFailed) as down:
        list_repo_files(TOXIC, None, endpoint=hub.url, hub=settings)
    assert down.value.code == "hub" and "503" in str(down.value) and down.value.code not in PERMANENT_CODES
    assert hub.stats.snapshot()["route:info"] == 1 + settings.max_retries  # repo info: retried by us

    hub.faults.set([FaultRule("rate_limit", route="info", contains=TOXIC, every=1)])
    with pytest.raises(ModelFailed) as limited:
        list_repo_files(TOXIC, None, endpoint=hub.url, hub=settings.model_copy(update={"max_retries": 1}))
    assert limited.value.code == "rate_limited" and limited.value.code not in PERMANENT_CODES

    hub.faults.clear()
    listing = list_repo_files(TOXIC, None, endpoint=hub.url, hub=settings)
    hub.stats.reset()
    weights = FaultRule("server", route="resolve", method="GET", contains="model.safetensors", status=503, every=1)
    hub.faults.set([weights])
    with pytest.raises(ModelFailed) as broken:
        fetch_files(listing, ["model.safetensors"], endpoint=hub.url, cache_dir=tmp_path, hub=settings)
    assert broken.value.code == "download" and broken.value.code not in PERMANENT_CODES
    # A 5xx to the GET is not retried by the client: ours alone, so 1 + max_retries of each request.
    assert hub.faults.rules[0].fired == 1 + settings.max_retries
    assert hub.stats.snapshot()["route:resolve"] == 2 * (1 + settings.max_retries)  # a HEAD before each GET


def test_the_token_stays_on_the_hub_when_a_file_is_on_a_cdn(night: dict[str, Any], hub: SimHub, tmp_path: Path) -> None:
    with SimHub(night["world"]) as cdn:
        hub.faults.set(
            [FaultRule("redirect", route="resolve", contains="model.safetensors", every=1, location=cdn.url)]
        )
        listing = list_repo_files(TOXIC, None, endpoint=hub.url)
        snapshot = fetch_files(listing, ["config.json", "model.safetensors"], endpoint=hub.url, cache_dir=tmp_path)
    weights = night["world"].models[TOXIC].files["model.safetensors"].content
    assert (snapshot.folder / "model.safetensors").read_bytes() == weights
    assert snapshot.fetched_bytes == len(weights) + listing.files["config.json"]
    assert cdn.stats.snapshot()["bytes:resolve"] == len(weights)
    assert cdn.stats.snapshot().get("authorization", 0) == 0 and hub.stats.snapshot()["authorization"] >= 3


def test_the_audits_backoff_is_the_crawlers_and_the_clients() -> None:
    from huggingface_hub.utils import http_backoff

    defaults = {name: p.default for name, p in inspect.signature(http_backoff).parameters.items()}
    ours = Backoff.from_settings(HubSettings()).http_backoff_kwargs()
    assert ours == {k: defaults[k] for k in ("max_retries", "base_wait_time", "max_wait_time")}
    assert Backoff().wait_s(1, 429, {"RateLimit": '"api";r=0;t=55'}) == 56  # utils/_http.py line 560
    assert Backoff().wait_s(1, 503, {"Retry-After": "7"}) == 8
    assert [Backoff().wait_s(n) for n in range(1, 6)] == [1, 2, 4, 8, 8]


def test_a_next_page_on_another_host_gets_no_token(
    other_host: tuple[str, list[tuple[str, str | None]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub pages through `list_repo_tree` (and every listing) by following the answer's
    `Link` with the same headers (utils/_pagination.py `_paginate_pages`): the token would follow a
    link to any host, unless `keep_token_on_hub` drops it."""
    from huggingface_hub.utils._pagination import paginate

    origin, seen = other_host
    with SimHub(fresh_world(size=60, seed=2)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.link_origin = origin  # the next page of every listing is on the other host
        keep_token_on_hub()
        pages = list(paginate(f"{hub.url}/api/models", params={"limit": 20}, headers={"authorization": "Bearer x"}))
        served = hub.stats.snapshot()
    assert len(pages) == 20 and seen and seen[0][0].startswith("/api/models")  # the link was followed
    assert [auth for _, auth in seen] == [None]  # without the token
    assert served["authorization"] >= 1  # the Hub itself got it


def test_a_xet_token_endpoint_on_another_host_is_refused_before_the_token_goes_there(
    night: dict[str, Any], hub: SimHub, tmp_path: Path, other_host: tuple[str, list[tuple[str, str | None]]]
) -> None:
    """hf_xet would refresh its token at the `xet-auth` link with the request's headers, token
    included, from Rust where no request hook sees it: such an answer is refused outright."""
    origin, seen = other_host
    weights_of_toxic = {"path": f"/{TOXIC}/resolve/", "contains": "model.safetensors", "every": 1}
    hub.faults.set([FaultRule.from_dict({"kind": "xet", "route": "resolve", "location": origin, **weights_of_toxic})])
    resolved = audit_config(hub, night["assets"], tmp_path / "cache")
    with Store.open(tmp_path / "s.duckdb") as store:
        failed = audit_model(resolved, store, TOXIC, battery=ensure_battery(resolved, store))
        code = store.query("SELECT reason_code FROM audits WHERE audit_id = ?", [failed.audit_id])[0][0]
    assert failed.status == "failed" and code == "download"
    assert "Xet token endpoint on another host" in (failed.reason or "") and origin in (failed.reason or "")
    assert seen == []  # not even a request without the token


def test_a_panic_in_a_rust_download_is_a_row_not_the_end_of_the_night(
    night: dict[str, Any], hub: SimHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hf_xet is Rust: a panic there surfaces as PyO3's PanicException, a BaseException, which an
    `except Exception` would let through (docs.rs/pyo3, pyo3::panic::PanicException)."""
    import huggingface_hub

    class PanicException(BaseException):  # what pyo3_runtime.PanicException derives from
        pass

    real = huggingface_hub.hf_hub_download

    def panicking(*args: Any, **kwargs: Any) -> str:
        if str(kwargs.get("filename", args[1] if len(args) > 1 else "")).endswith(".safetensors"):
            raise PanicException("called `Option::unwrap()` on a `None` value")
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", panicking)
    resolved = audit_config(hub, night["assets"], tmp_path / "cache")
    with Store.open(tmp_path / "s.duckdb") as store:
        outcome = audit_model(resolved, store, TOXIC, battery=ensure_battery(resolved, store))
    assert outcome.status == "failed" and "PanicException" in (outcome.reason or "")
    assert "downloading model.safetensors" in (outcome.reason or "")  # a download row, retried later


def test_a_hub_that_cannot_be_reached_stops_the_loop_instead_of_failing_each_model(
    night: dict[str, Any], hub: SimHub, tmp_path: Path
) -> None:
    """Nothing listens on port 9: that says nothing about the model, so it is no row (a row would use
    up one of its attempts), and the night stops with the reason instead of failing every model."""
    resolved = audit_config(hub, night["assets"], tmp_path / "cache")
    dead = audit_config(hub, night["assets"], tmp_path / "cache", **{"hub.endpoint": "http://127.0.0.1:9"})
    with Store.open(tmp_path / "s.duckdb") as store:
        battery = ensure_battery(resolved, store)
        with pytest.raises(HubUnavailableError, match=r"cannot reach the Hub at http://127\.0\.0\.1:9"):
            audit_model(dead, store, TOXIC, battery=battery)
        assert store.query("SELECT count(*) FROM audits")[0][0] == 0
