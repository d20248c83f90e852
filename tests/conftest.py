"""Shared fixtures: an isolated Hugging Face environment, simulated Hubs and stores.

Everything runs offline: the real huggingface_hub client talks HTTP to a simulated Hub on
loopback, and stores are real DuckDB files in a temporary directory.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from auditor.config import ResolvedConfig, load_config
from auditor.simhub import SimHub, World, WorldSpec, build_world
from auditor.store import Store, tree_digest
from crawlers import CrawlOptions, CrawlProgress, CrawlResult, crawl_lineage

# huggingface_hub reads HF_HOME once, when it is imported: set it before any test imports it, so
# that no download of the test session lands in (or comes from) the machine's own cache.
HF_HOME = tempfile.mkdtemp(prefix="auditor-tests-hf-home-")
atexit.register(shutil.rmtree, HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = HF_HOME
for _name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def isolated_hf(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token, no cache and no config from the machine leak into a test."""
    monkeypatch.setenv("HF_HOME", HF_HOME)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("AUDITOR_"):
            monkeypatch.delenv(name)


def fresh_world(size: int = 1500, seed: int = 11) -> World:
    """A new world (worlds are mutable, so every test that changes one builds its own)."""
    return build_world(WorldSpec(size=size, seed=seed))


@pytest.fixture
def world() -> World:
    return fresh_world()


@pytest.fixture
def hub(world: World) -> Iterator[SimHub]:
    with SimHub(world) as running:
        yield running


def sim_config(hub: SimHub, **flags: Any) -> ResolvedConfig:
    """Config pointing at `hub`, with fast retries (the backoff policy itself is the client's).

    `auto` is told the simulated Hub's true size (a real Hub's is learned by the first scan).
    """
    base: dict[str, Any] = {
        "hub.endpoint": hub.url,
        "hub.backoff_s": 0.01,
        "crawl.concurrency": 4,
        "crawl.hub_models": max(1, len(hub.world.models)),
    }
    base.update(flags)
    return load_config(flags=base)


def run_crawl(hub: SimHub, store_path: Path, *, full: bool = False, **flags: Any) -> CrawlResult:
    with Store.open(store_path) as store:
        return crawl_lineage(sim_config(hub, **flags), store, CrawlOptions(full=full))


def interrupt_after(reports: int) -> Callable[[CrawlProgress], None]:
    """A crawl's progress callback that presses Ctrl-C (raises KeyboardInterrupt) at its `reports`-th call."""
    calls = 0

    def interrupt(progress: CrawlProgress) -> None:
        nonlocal calls
        calls += 1
        if calls == reports:
            raise KeyboardInterrupt

    return interrupt


def interrupt_once_the_feed_is_read(progress: CrawlProgress) -> None:
    """A crawl's progress callback that presses Ctrl-C at the first report after the change feed."""
    if progress.stage != "reading the change feed":
        raise KeyboardInterrupt


def stored_lineage(store_path: Path) -> tuple[set[str], set[tuple[str, str, str]], dict[str, str]]:
    """(models in the tree, their edges, their shas) as the store holds them."""
    with Store.open(store_path, read_only=True) as store:
        rows = store.query("SELECT repo_id, sha FROM models WHERE removed_at IS NULL")
        edges = store.query(
            "SELECT l.child, l.parent, l.relation FROM lineage l JOIN models m ON m.repo_id = l.child"
            " WHERE m.removed_at IS NULL"
        )
    return {r[0] for r in rows}, {(c, p, r) for c, p, r in edges}, {r[0]: r[1] for r in rows}


def store_digest(store_path: Path) -> str:
    """The digest of a store's `models` and `lineage` tables (`auditor.store.tree_digest`)."""
    with Store.open(store_path, read_only=True) as store:
        return tree_digest(store)


def assert_matches_truth(store_path: Path, world: World) -> None:
    truth = world.truth()
    nodes, edges, shas = stored_lineage(store_path)
    assert sorted(nodes - truth.nodes) == [], "models stored that are not in the tree"
    assert sorted(truth.nodes - nodes) == [], "models of the tree missing from the store"
    assert sorted(edges - truth.edges) == [], "edges stored that were not declared"
    assert sorted(truth.edges - edges) == [], "declared edges missing from the store"
    assert shas == dict(truth.shas)


@pytest.fixture(scope="session")
def tiny_assets(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny models, dataset and Detoxify checkpoint: trained once, cached across sessions."""
    from auditor.simhub.tinyworld import build_tiny_assets

    store = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache = Path(store.mkdir("tiny-assets")) if store is not None else tmp_path_factory.mktemp("tiny-assets")
    TINY_CACHE[:] = [cache]
    return build_tiny_assets(cache)


TINY_CACHE: list[Path] = []


ACCEPTED_TOKEN = "hf_test_accepted_all"


def audit_world(tiny_assets: Any, *, size: int = 40, seed: int = 1) -> World:
    """A small generated world whose roots and planted models are real tiny models."""
    from auditor.simhub.tinyworld import install_tiny_models

    world = fresh_world(size=size, seed=seed)
    install_tiny_models(world, tiny_assets)
    world.tokens[ACCEPTED_TOKEN] = {"*"}
    return world


def audit_config(hub: SimHub, tiny_assets: Any, cache_dir: Path, **flags: Any) -> ResolvedConfig:
    """Config for audits against `hub`: the tiny Detoxify checkpoint, a private download cache."""
    from auditor.simhub.tinyworld import build_tiny_assets

    tiny_assets = tiny_assets or build_tiny_assets(TINY_CACHE[0])
    base: dict[str, Any] = {
        "hub.endpoint": hub.url,
        "hub.backoff_s": 0.01,
        "scoring.checkpoint": tiny_assets.detoxify_checkpoint,
        "scoring.config_dir": tiny_assets.detoxify_config,
        "audit.cache_dir": cache_dir,
        "audit.batch_size": 64,
    }
    base.update(flags)
    return load_config(flags=base)


def audit_env(hub: SimHub, tiny_assets: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for an `auditor` process auditing against `hub` (store and cache in `tmp_path`)."""
    return {
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": ACCEPTED_TOKEN,
        "AUDITOR_SCORING_CHECKPOINT": str(tiny_assets.detoxify_checkpoint),
        "AUDITOR_SCORING_CONFIG_DIR": str(tiny_assets.detoxify_config),
        "AUDITOR_AUDIT_CACHE_DIR": str(tmp_path / "cache"),
        "AUDITOR_STORE_PATH": str(tmp_path / "s.duckdb"),
        **extra,
    }


def running_audit(store_path: Path) -> int | None:
    """An audit that is running and has stored at least one batch, read while a cycle writes."""
    if not store_path.exists():
        return None
    with Store.open(store_path, read_only=True, busy_timeout_s=10) as store:
        rows = store.query(
            "SELECT a.audit_id FROM audits a WHERE a.status = 'running'"
            " AND (SELECT count(*) FROM completions c WHERE c.audit_id = a.audit_id) > 0"
        )
    return rows[0][0] if rows else None


class _Recorder(BaseHTTPRequestHandler):
    """A second host on loopback that notes every request and the Authorization it carried."""

    seen: list[tuple[str, str | None]]

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def other_host() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """(its origin, the requests it received)."""
    seen: list[tuple[str, str | None]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
