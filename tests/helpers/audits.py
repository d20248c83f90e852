"""Audits against a simulated world whose roots and planted models are real tiny models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditor.config import ResolvedConfig, load_config
from auditor.simhub import SimHub, World
from auditor.store import Store
from tests.helpers.crawls import fresh_world

ACCEPTED_TOKEN = "hf_test_accepted_all"

# Where the session-scoped `tiny_assets` fixture keeps its assets (it fills this in), so that
# `audit_config` can rebuild them from the cache when a test passes no `tiny_assets`.
TINY_CACHE: list[Path] = []


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
        # In this process, so that tests can watch and patch the job (a spy on generate(), a batch
        # that runs out of memory); tests/auditor/test_worker.py runs audits in their worker.
        "audit.isolation": "inline",
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
        # A worker process costs each `auditor` process a second interpreter that imports torch;
        # the tests of the worker's own paths (a kill, a stop, hostile repos) ask for it.
        "AUDITOR_AUDIT_ISOLATION": "inline",
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
