"""Shared fixtures: an isolated Hugging Face environment, simulated Hubs and stores.

Everything runs offline: the real huggingface_hub client talks HTTP to a simulated Hub on
loopback, and stores are real DuckDB files in a temporary directory.

Only fixtures live here; the helpers and constants tests import are in `tests/helpers/`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from auditor.simhub import SimHub, World
from tests.helpers.audits import TINY_CACHE
from tests.helpers.crawls import fresh_world
from tests.helpers.env import HF_HOME  # importing it isolates HF_HOME before huggingface_hub is imported
from tests.helpers.hosts import RecordingHandler


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


@pytest.fixture
def world() -> World:
    return fresh_world()


@pytest.fixture
def hub(world: World) -> Iterator[SimHub]:
    with SimHub(world) as running:
        yield running


@pytest.fixture(scope="session")
def tiny_assets(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny models, dataset and Detoxify checkpoint: trained once, cached across sessions."""
    from auditor.simhub.tinyworld import build_tiny_assets

    store = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache = Path(store.mkdir("tiny-assets")) if store is not None else tmp_path_factory.mktemp("tiny-assets")
    TINY_CACHE[:] = [cache]
    return build_tiny_assets(cache)


@pytest.fixture
def other_host() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """(its origin, the requests it received)."""
    seen: list[tuple[str, str | None]] = []
    handler = type("Recorder", (RecordingHandler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
