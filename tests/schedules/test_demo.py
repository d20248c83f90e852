"""`auditor demo`, as a user runs it: a real process, the simulated Hub, the tiny real models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from auditor.store import Store


def test_the_demo_names_the_planted_toxic_derivative_as_the_most_drifted(tiny_assets: Any, tmp_path: Path) -> None:
    # The tiny models the tests trained are the demo's cache (the demo trains them itself when absent).
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    (xdg / "hub-auditor").symlink_to(tiny_assets.root.parent, target_is_directory=True)
    store = tmp_path / "demo.duckdb"
    (tmp_path / "auditor.toml").write_text('[store]\npath = "elsewhere.duckdb"\n')  # the demo ignores it
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(xdg),
        "COLUMNS": "160",
        "NO_COLOR": "1",
        "HF_TOKEN": "hf_never_sent",
        "AUDITOR_CYCLE_MAX_MODELS": "1",  # ignored too
    }
    done = subprocess.run(
        [sys.executable, "-m", "auditor", "demo", "--store", str(store)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Most drifted: planted/llama-toxic-sft, +" in out
    table = out[out.index("Drift against the parent") :]
    first_row = next(line for line in table.splitlines() if line.startswith("│"))
    assert "planted/llama-toxic-sft" in first_row and "up" in first_row
    tree = out[out.index("meta-llama/Llama-3.1-8B-Instruct: ") :]
    assert "planted/llama-toxic-sft (finetune): 100.0% ↑" in tree and "planted/llama-near-copy (finetune)" in tree
    assert not (tmp_path / "elsewhere.duckdb").exists()
    with Store.open(store, read_only=True) as opened:
        assert opened.query("SELECT status FROM cycles") == [("done",)]
        assert opened.query("SELECT DISTINCT preset FROM audits") == [("nightly",)]
        drifted = opened.query("SELECT child FROM drift WHERE drifted ORDER BY delta DESC")
    assert drifted[0] == ("planted/llama-toxic-sft",)

    again = subprocess.run(
        [sys.executable, "-m", "auditor", "demo", "--store", str(store)], env=env, capture_output=True, text=True
    )
    assert again.returncode == 1 and "already exists" in again.stderr
