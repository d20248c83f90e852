"""`auditor demo`: one whole night on a laptop CPU, with no token and no network.

The tiny real models (Gemma, Llama and Phi architectures, with a planted toxic finetune, a benign
one, a near-copy and an adapter), the prompt dataset and a tiny Detoxify checkpoint are trained on
first use and cached (`~/.cache/hub-auditor`). The simulated Hub serves them on loopback inside a
small generated world (with its lineage defects and broken repos), and one nightly cycle runs
against it into a fresh store: crawl, plan, audits with the nightly preset, drift statistics.

The demo's settings are its own: it reads no `auditor.toml` and no `AUDITOR_*` variable, and sends
no token anywhere.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.audit.driver import AuditOutcome
from auditor.config import ResolvedConfig, load_config
from auditor.errors import AuditorError
from schedules.cycle import CycleResult, run_cycle

DEMO_ROOTS = ("google/gemma-2-2b-it", "meta-llama/Llama-3.1-8B-Instruct", "microsoft/Phi-3.5-mini-instruct")
#: The family whose tree the demo shows: it holds the planted derivatives.
DEMO_FAMILY_ROOT = "meta-llama/Llama-3.1-8B-Instruct"
DEMO_WORLD = "size=20,seed=1"


@dataclass(frozen=True)
class DemoResult:
    store_path: Path
    hub_models: int
    cycle: CycleResult
    drift: list[Any]  # DriftRow, most drifted first
    not_compared: list[Any]
    tree: Any  # TreeNode of DEMO_FAMILY_ROOT
    assets_s: float  # training the tiny models (0 once cached)
    seconds: float
    threshold: float


def run_demo(
    store_path: Path | None = None,
    *,
    on_stage: Callable[[str], None] | None = None,
    on_outcome: Callable[[AuditOutcome], None] | None = None,
) -> DemoResult:
    """Run the demo night into `store_path` (default: a new temporary folder) and read its results.

    >>> result = run_demo()                                   # doctest: +SKIP
    >>> result.drift[0].child
    'planted/llama-toxic-sft'
    """
    from auditor.analysis.drift import drift_rows, not_compared
    from auditor.analysis.summaries import tree_view
    from auditor.simhub import SimHub, WorldSpec, build_world
    from auditor.simhub.tinyworld import build_tiny_assets, default_cache, install_tiny_models
    from auditor.store import Store

    started = time.monotonic()
    stage = on_stage or (lambda _: None)
    if store_path is None:
        store_path = Path(tempfile.mkdtemp(prefix="auditor-demo-")) / "demo.duckdb"
    elif store_path.exists():
        raise AuditorError(
            f"{store_path} already exists; the demo writes a fresh store",
            hint="remove it, or give --store a new path (the default is a new temporary folder)",
        )
    cache = default_cache()
    stage(f"tiny models, dataset and Detoxify checkpoint: {cache} (trained on first use, about 20 s)")
    assets = build_tiny_assets(cache)
    assets_s = time.monotonic() - started

    world = build_world(WorldSpec.parse(DEMO_WORLD))
    install_tiny_models(world, assets)
    for root in DEMO_ROOTS:  # open to all, as the demo has no token (other gated repos stay gated)
        world.models[root].gated = False
    with SimHub(world) as hub:
        stage(f"simulated Hub at {hub.url}: {len(world.models)} models; store {store_path}")
        resolved = demo_config(hub.url, assets, store_path)
        stage("one nightly cycle: crawl, plan, audit (nightly preset), drift statistics")
        cycle = run_cycle(resolved, on_outcome=on_outcome)
    scoring = resolved.config.scoring
    threshold = scoring.threshold
    with Store.open(store_path, read_only=True) as store:
        rows = drift_rows(store, threshold=threshold, alpha=scoring.alpha, min_effect=scoring.min_effect)
        skipped = not_compared(store)
        tree = tree_view(
            store, DEMO_FAMILY_ROOT, threshold=threshold, alpha=scoring.alpha, min_effect=scoring.min_effect
        )
    return DemoResult(
        store_path, len(world.models), cycle, rows, skipped, tree, assets_s, time.monotonic() - started, threshold
    )


def demo_config(endpoint: str, assets: Any, store_path: Path) -> ResolvedConfig:
    """The demo's own settings: nothing from the user's config file or environment."""
    return load_config(
        environ={},
        read_default_file=False,
        flags={
            "hub.endpoint": endpoint,
            "hub.backoff_s": 0.05,
            "store.path": store_path,
            "crawl.roots": DEMO_ROOTS,
            "audit.preset": "nightly",
            "audit.quantization": "none",
            "audit.device": "cpu",
            "audit.cache_dir": store_path.parent / "models",
            "scoring.checkpoint": assets.detoxify_checkpoint,
            "scoring.config_dir": assets.detoxify_config,
            "cycle.max_models": 100,
        },
    )
