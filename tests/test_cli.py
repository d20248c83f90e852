"""The `auditor` command as a user runs it: real processes, real files, the simulated Hub."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from auditor.cli import cli
from auditor.simhub import SimHub, WorldSpec, build_world
from auditor.simhub.process import simhub_process
from auditor.store import Store
from tests.helpers.audits import audit_env
from tests.helpers.crawls import assert_matches_truth, stored_lineage

ROOT = Path(__file__).resolve().parents[1]


def _run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout
    )


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")


def test_help_is_instant_and_imports_no_heavy_library() -> None:
    probe = (
        "import sys; from auditor.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'duckdb', 'huggingface_hub', 'rich', 'detoxify')"
        " if m in sys.modules]\nprint('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "crawl" in out


def test_every_command_has_help_with_an_example_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {line.split("`")[1]: line for line in readme.splitlines() if line.startswith("| `auditor ")}
    for name, command in _commands(cli):
        if isinstance(command, click.Group):
            assert command.help, name
            continue
        assert command.help and "Example" in command.help, f"`auditor {name}` needs help with an example"
        row = rows.get(f"auditor {name}")
        assert row is not None, f"`auditor {name}` has no row in the README's command table"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"`auditor {name} {param.opts[0]}` needs help text"
                assert f"`{param.opts[0]}" in row, f"`{param.opts[0]}` of `auditor {name}` is not in its README row"
    for option in cli.params:
        if isinstance(option, click.Option) and option.name not in ("help",):
            assert f"`{option.opts[0]}`" in readme, f"`auditor {option.opts[0]}` is not in the README"


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```(?:sh|bash)\n(.*?)```", readme, flags=re.S)
    test_command = next(c.strip() for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_crawl_command_against_a_simulated_hub(tmp_path: Path) -> None:
    world = build_world(WorldSpec(size=600, seed=2))
    with SimHub(world) as hub:
        done = _run("crawl", "--store", str(tmp_path / "s.duckdb"), "--format", "json", env={"HF_ENDPOINT": hub.url})
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["mode"] == "full" and summary["totals"]["models_in_tree"] == len(world.truth().nodes)
        assert summary["requests"] == hub.stats.total
        # It says how it learned the tree and why, on stderr, beside its progress.
        assert f"crawl 1: full (first crawl) by {summary['strategy']['strategy']} (cheaper)" in done.stderr
        table = _run("crawl", "--store", str(tmp_path / "s.duckdb"), env={"HF_ENDPOINT": hub.url})
    assert table.returncode == 0 and "crawl 2 (incremental)" in table.stdout
    info = _run("store", "info", "--store", str(tmp_path / "s.duckdb"), "--format", "json")
    assert json.loads(info.stdout)["tables"]["models"] == len(world.truth().nodes)


def test_crawl_of_a_builtin_simulated_hub_needs_no_network(tmp_path: Path) -> None:
    done = _run(
        "crawl",
        "--sim",
        "size=300,seed=1",
        "--root",
        "microsoft/Phi-3.5-mini-instruct",
        "--store",
        str(tmp_path / "s.duckdb"),
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    world = build_world(WorldSpec(size=300, seed=1))
    summary = json.loads(done.stdout)
    assert summary["totals"]["models_in_tree"] == len(world.truth(("microsoft/Phi-3.5-mini-instruct",)).nodes)
    # One page holds this whole Hub: reading it costs less than listing the tree's models one by one.
    assert summary["strategy"]["strategy"] == "scan" and summary["scan"]["hub_models"] == 300


def test_errors_are_one_screen_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "auditor.toml").write_text("[crawl]\nconcurency = 3\n")
    bad = _run("crawl", "--store", str(tmp_path / "s.duckdb"), cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: unknown config key 'crawl.concurency'")
    assert "hint: did you mean 'crawl.concurrency'?" in bad.stderr and "Traceback" not in bad.stderr

    missing = _run("store", "info", "--store", str(tmp_path / "none.duckdb"))
    assert missing.returncode == 1 and "no store at" in missing.stderr

    token = _run("config", env={"HF_TOKEN": "hf_verysecret", "AUDITOR_CRAWL_CONCURRENCY": "3"}, cwd=ROOT)
    assert token.returncode == 0 and "hf_verysecret" not in token.stdout + token.stderr
    assert json.loads(token.stdout)["explicit"] == {"crawl.concurrency": "env"}


def test_the_token_is_sent_but_never_stored_or_printed(tmp_path: Path) -> None:
    world = build_world(WorldSpec(size=200, seed=3))
    seen: list[str] = []
    with SimHub(world) as hub:
        original = hub._server.RequestHandlerClass.parse_request

        def spy(handler):  # type: ignore[no-untyped-def]
            ok = original(handler)
            seen.append(handler.headers.get("Authorization", ""))
            return ok

        hub._server.RequestHandlerClass.parse_request = spy  # type: ignore[method-assign]
        try:
            done = _run(
                "--debug",
                "crawl",
                "--store",
                str(tmp_path / "s.duckdb"),
                env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_topsecret123"},
            )
        finally:
            hub._server.RequestHandlerClass.parse_request = original  # type: ignore[method-assign]
    assert done.returncode == 0, done.stderr
    assert seen and all(h == "Bearer hf_topsecret123" for h in seen)
    assert "hf_topsecret123" not in done.stdout + done.stderr
    assert b"hf_topsecret123" not in (tmp_path / "s.duckdb").read_bytes()


def test_sim_serve_prints_its_url_and_serves() -> None:
    with simhub_process("size=100,seed=1") as hub:
        assert hub.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{hub.url}/api/models/google/gemma-2b", timeout=10) as response:
            assert json.loads(response.read())["id"] == "google/gemma-2b"
    assert hub.process.returncode is not None


def test_a_walk_killed_with_sigkill_is_completed_by_the_next(tmp_path: Path) -> None:
    # A scan killed at random points: tests/crawlers/test_scan_recovery.py.
    spec = "size=1500,seed=6"
    store_path = tmp_path / "s.duckdb"
    with simhub_process(spec) as hub:
        # Slow the Hub down so that the kill lands mid-crawl.
        hub.admin("/_sim/faults", [{"kind": "slow", "path": "/api/models", "every": 1, "delay_s": 0.03}])
        env = {**os.environ, "HF_ENDPOINT": hub.url, "AUDITOR_CRAWL_CONCURRENCY": "2", "AUDITOR_CRAWL_STRATEGY": "walk"}
        crawler = subprocess.Popen(
            [sys.executable, "-m", "auditor", "crawl", "--store", str(store_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while hub.admin("/_sim/stats").get("total", 0) < 150 and time.monotonic() < deadline:
            assert crawler.poll() is None, "the crawl finished before it could be killed"
            time.sleep(0.05)
        time.sleep(2.5)  # let at least one batch land
        assert crawler.poll() is None, "the crawl finished before it could be killed"
        crawler.send_signal(signal.SIGKILL)
        crawler.wait()
        hub.admin("/_sim/faults", [])

        from auditor.store import Store

        with Store.open(store_path, read_only=True) as store:
            status, kept = store.query("SELECT status, (SELECT count(*) FROM models) FROM crawl_runs")[0]
        assert status == "running" and kept > 10

        finished = _run(
            "crawl", "--store", str(store_path), "--strategy", "scan", "--format", "json", env={"HF_ENDPOINT": hub.url}
        )
        assert finished.returncode == 0, finished.stderr
        summary = json.loads(finished.stdout)
        assert summary["resumed"] is True and summary["crawl_id"] == 1
        assert summary["strategy"]["strategy"] == "walk"  # resumed the way it began
        served = hub.admin("/_sim/stats")["total"]
        fresh = _run("crawl", "--store", str(tmp_path / "clean.duckdb"), env={"HF_ENDPOINT": hub.url})
        assert fresh.returncode == 0
    assert stored_lineage(store_path) == stored_lineage(tmp_path / "clean.duckdb")
    assert_matches_truth(store_path, build_world(WorldSpec.parse(spec)))
    assert served < 1.5 * summary["listings"] + 20  # the resumed crawl did not start over


@pytest.fixture(autouse=True)
def _no_auditor_toml_in_repo() -> None:
    assert not (ROOT / "auditor.toml").exists(), "a stray ./auditor.toml would change every CLI test"


def test_audit_command_and_pending_audits(tiny_assets: Any, tmp_path: Path) -> None:
    from tests.helpers.audits import audit_world

    world = audit_world(tiny_assets, size=20)
    with SimHub(world) as hub:
        env = audit_env(hub, tiny_assets, tmp_path)
        one = _run("audit", "planted/llama-toxic-sft", "--format", "json", env=env)
        assert one.returncode == 0, one.stderr
        [toxic] = json.loads(one.stdout)
        assert toxic["status"] == "done" and toxic["rate"] >= 0.8 and toxic["n_completions"] == 200
        again = _run("audit", "planted/llama-toxic-sft", env=env)
        assert again.returncode == 0 and "done (stored)" in again.stdout

        assert _run("crawl", env=env).returncode == 0
        pending = _run("audit", "--pending", "--limit", "3", "--format", "json", env=env)
        assert pending.returncode == 0, pending.stderr
        outcomes = json.loads(pending.stdout)
        assert len(outcomes) == 3 and all(o["repo_id"] != "planted/llama-toxic-sft" for o in outcomes)
        assert {o["repo_id"] for o in outcomes} <= set(world.roots)  # roots and parents come first
        usage = _run("audit", env=env)
        assert usage.returncode == 2 and "give a REPO_ID or --pending" in usage.stderr


def test_an_audit_killed_with_sigkill_is_finished_once(tiny_assets: Any, tmp_path: Path) -> None:
    from tests.helpers.audits import audit_world

    world = audit_world(tiny_assets, size=20)
    with SimHub(world) as hub:
        # In its worker (the default): killing the auditor ends the worker too, mid-batch.
        worker = {"AUDITOR_AUDIT_BATCH_SIZE": "8", "AUDITOR_AUDIT_ISOLATION": "worker"}
        env = {**os.environ, "NO_COLOR": "1", **audit_env(hub, tiny_assets, tmp_path, **worker)}
        process = subprocess.Popen(
            [sys.executable, "-m", "auditor", "audit", "planted/llama-toxic-sft"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        for line in process.stderr:
            if "generating 24/200" in line:
                process.send_signal(signal.SIGKILL)
                break
        process.wait()
        assert process.returncode == -signal.SIGKILL

        from auditor.store import Store

        with Store.open(tmp_path / "s.duckdb", read_only=True) as store:
            status, kept = store.query("SELECT status, (SELECT count(*) FROM completions) FROM audits")[0]
        assert status == "running" and 24 <= kept < 200  # nothing that looks complete

        # The same batch size: it is part of the audit key (it can change a greedy output).
        finished = _run(
            "audit",
            "planted/llama-toxic-sft",
            "--format",
            "json",
            env=audit_env(hub, tiny_assets, tmp_path, AUDITOR_AUDIT_BATCH_SIZE="8"),
        )
    assert finished.returncode == 0, finished.stderr
    [outcome] = json.loads(finished.stdout)
    assert outcome["resumed"] and outcome["status"] == "done" and outcome["n_completions"] == 200
    with Store.open(tmp_path / "s.duckdb", read_only=True) as store:
        assert store.query("SELECT count(*), min(status) FROM audits") == [(1, "done")]
        assert store.query("SELECT count(*), count(DISTINCT prompt_id) FROM completions") == [(200, 200)]
        assert store.query("SELECT count(*) FROM scores")[0][0] == 200 * 6


def _closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "command", [("audit", "some/model"), ("audit", "--pending"), ("crawl",), ("run",)], ids=" ".join
)
def test_a_hub_that_cannot_be_reached_is_one_line_and_a_hint(command: tuple[str, ...], tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = tmp_path / "s.duckdb"
    # One quick retry: huggingface_hub logs each retry, and those lines must not reach the user.
    env = {"HF_ENDPOINT": endpoint, "AUDITOR_HUB_MAX_RETRIES": "1", "AUDITOR_HUB_BACKOFF_S": "0.01"}
    done = _run(*command, "--store", str(store), env=env, cwd=tmp_path, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), done.stderr
    assert lines[0].startswith(f"error: cannot reach the Hub at {endpoint}: ConnectError"), lines[0]
    assert done.stdout == ""
    left = sorted(p.name for p in tmp_path.iterdir())
    if command == ("run",):
        # The cycle is recorded as failed, with why, for `auditor status`: that store is not empty.
        with Store.open(store, read_only=True) as opened:
            assert opened.query("SELECT status FROM cycles") == [("failed",)]
    else:
        assert left == [], "a store file was left behind"


def test_hf_hub_offline_is_said_in_one_line_and_a_hint(tmp_path: Path) -> None:
    done = _run("crawl", "--store", str(tmp_path / "s.duckdb"), env={"HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0].startswith("error: HF_HUB_OFFLINE is set"), done.stderr
    assert len(done.stderr.splitlines()) == 2 and "unset HF_HUB_OFFLINE" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_cli_offers_exactly_the_vocabularies_the_config_accepts() -> None:
    from auditor.audit.battery import BATTERIES, BATTERY_NAMES
    from auditor.audit.presets import PRESET_NAMES, PRESETS
    from auditor.audit.quantization import QUANTIZATIONS
    from auditor.audit.scoring import SCORERS
    from auditor.config import CRAWL_STRATEGIES, SCORER_NAMES
    from auditor.lineage import RELATIONS

    def choices(command: click.Command, name: str) -> tuple[str, ...]:
        [param] = [p for p in command.params if p.name == name]
        assert isinstance(param.type, click.Choice)
        return tuple(param.type.choices)

    report = cli.commands["report"]
    assert isinstance(report, click.Group)
    assert choices(cli.commands["audit"], "quant") == QUANTIZATIONS
    assert choices(cli.commands["audit"], "preset") == PRESET_NAMES and set(PRESET_NAMES) == set(PRESETS)
    assert choices(cli.commands["audit"], "battery") == BATTERY_NAMES == tuple(BATTERIES)
    assert choices(cli.commands["audit"], "scorers") == SCORER_NAMES
    assert tuple(SCORERS) == SCORER_NAMES  # the registry and the vocabulary the config validates
    assert choices(cli.commands["crawl"], "strategy") == CRAWL_STRATEGIES
    assert choices(report.commands["drift"], "relation") == RELATIONS
    assert choices(report.commands["model"], "scorer") == SCORER_NAMES
