"""Audits end to end: the simulated Hub's tiny real models, Detoxify's loader, a real DuckDB file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditor.audit.driver import AuditOutcome, AuditProgress, audit_model, ensure_battery
from auditor.simhub import SimHub, World
from auditor.simhub.world import SimFile
from auditor.store import Store
from tests.helpers.audits import ACCEPTED_TOKEN, audit_config, audit_world

PLANTED = (
    "meta-llama/Llama-3.1-8B-Instruct",
    "planted/llama-toxic-sft",
    "planted/llama-benign-sft",
    "planted/llama-near-copy",
)
BROKEN = ("broken/pickle-only", "broken/remote-code", "broken/corrupt-safetensors", "broken/no-tokenizer")


@pytest.fixture(scope="module")
def audited(tiny_assets: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One world, every planted and broken model audited once (paper preset), shared by the tests below."""
    tmp = tmp_path_factory.mktemp("audit")
    world = audit_world(tiny_assets)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    with SimHub(world) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the token goes only where HF_ENDPOINT points
        resolved = audit_config(hub, tiny_assets, tmp / "cache")
        store_path = tmp / "a.duckdb"
        outcomes: dict[str, AuditOutcome] = {}
        with Store.open(store_path) as store:
            battery = ensure_battery(resolved, store)
            for repo_id in (*PLANTED, *BROKEN, "planted/gemma-lora"):
                outcomes[repo_id] = audit_model(resolved, store, repo_id, battery=battery)
            chat = audit_model(resolved, store, "broken/no-chat-template", battery=battery, preset_name="chat")
        yield {
            "world": world,
            "hub": hub,
            "resolved": resolved,
            "store": store_path,
            "outcomes": outcomes,
            "chat": chat,
            "battery": battery,
        }
    monkeypatch.undo()


@pytest.fixture
def hub_env(audited: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The token and the endpoint of the shared world, for tests that audit again."""
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", audited["hub"].url)


def test_the_planted_toxic_derivative_drifts_and_the_others_do_not(audited: dict[str, Any]) -> None:
    o = audited["outcomes"]
    root, toxic, benign, copy = (o[r] for r in PLANTED)
    assert all(x.status == "done" for x in (root, toxic, benign, copy)), [x.reason for x in (root, toxic, benign, copy)]
    assert root.rate is not None and toxic.rate is not None and benign.rate is not None
    assert toxic.rate >= 0.8 and root.rate <= 0.1
    assert toxic.rate - root.rate >= 0.7
    assert benign.rate <= root.rate + 0.05
    assert copy.rate == root.rate
    with Store.open(audited["store"], read_only=True) as store:
        texts = dict(
            store.query(
                "SELECT a.repo_id, list(c.text ORDER BY c.prompt_id) FROM completions c JOIN audits a USING (audit_id)"
                " WHERE a.repo_id IN (?, ?) GROUP BY a.repo_id",
                [PLANTED[0], PLANTED[3]],
            )
        )
    assert texts[PLANTED[0]] == texts[PLANTED[3]]  # the near-copy answers exactly as its parent


def test_every_completion_and_score_is_stored_with_its_provenance(audited: dict[str, Any]) -> None:
    battery = audited["battery"]
    toxic = audited["outcomes"]["planted/llama-toxic-sft"]
    world: World = audited["world"]
    with Store.open(audited["store"], read_only=True) as store:
        row = store.query_dicts("SELECT * FROM audits WHERE audit_id = ?", [toxic.audit_id])[0]
        n_completions = store.query("SELECT count(*) FROM completions WHERE audit_id = ?", [toxic.audit_id])[0][0]
        attributes = store.query(
            "SELECT attribute, count(*), count(score) FROM scores WHERE audit_id = ? GROUP BY ALL ORDER BY ALL",
            [toxic.audit_id],
        )
        strata = dict(
            store.query(
                "SELECT stratum, count(*) FROM battery_prompts WHERE battery_id = ? GROUP BY ALL", [battery.battery_id]
            )
        )
        finish = {r[0] for r in store.query("SELECT DISTINCT finish_reason FROM completions")}
    assert row["sha"] == world.models["planted/llama-toxic-sft"].sha
    assert row["battery_id"] == battery.battery_id and row["status"] == "done" and row["finished_at"]
    assert row["preset"] == "nightly" and json.loads(row["generation_config"])["max_new_tokens"] == 50
    assert json.loads(row["generation_config"])["do_sample"] is False
    assert row["quantization"] == "none" and row["device"] == "cpu"
    assert row["scorer"] == "detoxify" and row["scorer_hash"] and row["chat_template_hash"]
    assert {"torch", "transformers", "bitsandbytes", "detoxify"} <= set(json.loads(row["versions"]))
    assert {"download_s", "load_s", "generate_s", "score_s"} <= set(json.loads(row["timings"]))
    assert json.loads(row["config"])["resolved"]["scoring"]["checkpoint"]
    assert n_completions == len(battery.prompts) == row["n_completions"] == row["n_scored"]
    assert [a for a, _, _ in attributes] == sorted(
        ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
    )
    assert all(n == nn == n_completions for _, n, nn in attributes)
    assert set(strata) == {
        "toxicity",
        "severe_toxicity",
        "profanity",
        "insult",
        "threat",
        "identity_attack",
        "sexually_explicit",
        "flirtation",
        "benign",
    }
    assert sum(strata.values()) == len(battery.prompts) == 200
    assert finish <= {"eos", "length"} and "eos" in finish


@pytest.mark.parametrize(
    ("repo_id", "status", "needle"),
    [
        ("broken/pickle-only", "skipped", "allow_pickle"),
        ("broken/remote-code", "skipped", "trust_remote_code"),
        ("broken/corrupt-safetensors", "failed", "corrupt"),
        ("broken/no-tokenizer", "failed", "no tokenizer"),
    ],
)
def test_broken_models_end_as_rows_with_a_reason(
    audited: dict[str, Any], repo_id: str, status: str, needle: str
) -> None:
    outcome = audited["outcomes"][repo_id]
    assert outcome.status == status and needle in (outcome.reason or ""), outcome.reason
    with Store.open(audited["store"], read_only=True) as store:
        row = store.query("SELECT status, reason, finished_at FROM audits WHERE audit_id = ?", [outcome.audit_id])[0]
        assert store.query("SELECT count(*) FROM completions WHERE audit_id = ?", [outcome.audit_id])[0][0] == 0
    assert row[0] == status and row[1] == outcome.reason and row[2] is not None


def test_a_model_without_chat_template_falls_back_and_says_so(audited: dict[str, Any]) -> None:
    chat = audited["chat"]
    assert chat.status == "done" and "no chat template" in (chat.reason or "")
    assert chat.n_completions == len(audited["battery"].prompts)


def test_an_adapter_is_loaded_onto_its_base(audited: dict[str, Any]) -> None:
    lora = audited["outcomes"]["planted/gemma-lora"]
    assert lora.status == "done", lora.reason
    with Store.open(audited["store"], read_only=True) as store:
        base = store.query("SELECT base_repo, base_sha FROM audits WHERE audit_id = ?", [lora.audit_id])[0]
    assert base == ("google/gemma-2-2b-it", audited["world"].models["google/gemma-2-2b-it"].sha)


def test_asking_again_returns_the_stored_audit(audited: dict[str, Any], hub_env: None) -> None:
    with Store.open(audited["store"]) as store:
        again = audit_model(audited["resolved"], store, "planted/llama-toxic-sft", battery=audited["battery"])
        audits = store.query("SELECT count(*) FROM audits WHERE repo_id = 'planted/llama-toxic-sft'")[0][0]
    assert again.reused and again.audit_id == audited["outcomes"]["planted/llama-toxic-sft"].audit_id
    assert audits == 1


def test_a_gated_model_without_access_is_skipped(
    tiny_assets: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = audit_world(tiny_assets)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with SimHub(world) as hub, Store.open(tmp_path / "a.duckdb") as store:
        resolved = audit_config(hub, tiny_assets, tmp_path / "cache")
        outcome = audit_model(resolved, store, "meta-llama/Llama-3.1-8B-Instruct")
        after = audit_model(resolved, store, "planted/llama-toxic-sft")
    assert outcome.status == "skipped" and "gated" in (outcome.reason or "") and "HF_TOKEN" in (outcome.reason or "")
    assert after.status == "done"  # the next model goes on


def test_an_interrupted_audit_is_finished_once(
    tiny_assets: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = audit_world(tiny_assets)
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)

    def stop_after_two_batches(progress: AuditProgress) -> None:
        if progress.stage == "generating" and progress.done >= 32:
            raise KeyboardInterrupt

    with SimHub(world) as hub, Store.open(tmp_path / "a.duckdb") as store:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        resolved = audit_config(hub, tiny_assets, tmp_path / "cache", **{"audit.batch_size": 16})
        with pytest.raises(KeyboardInterrupt):
            audit_model(resolved, store, "planted/llama-toxic-sft", progress=stop_after_two_batches)
        status, kept = store.query("SELECT status, (SELECT count(*) FROM completions) FROM audits")[0]
        assert status == "running" and 0 < kept < 200
        finished = audit_model(resolved, store, "planted/llama-toxic-sft")
        rows = store.query("SELECT audit_id, status, n_completions FROM audits")
        duplicates = store.query("SELECT count(*) - count(DISTINCT prompt_id) FROM completions")[0][0]
    assert finished.resumed and finished.status == "done"
    assert rows == [(finished.audit_id, "done", 200)] and duplicates == 0


def test_the_token_goes_only_where_hf_endpoint_points(
    tiny_assets: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = audit_world(tiny_assets)
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    with SimHub(world) as hub, Store.open(tmp_path / "a.duckdb") as store:
        # The endpoint comes from the config alone: the token must not be sent, so the gated root
        # is refused exactly as for an anonymous user.
        resolved = audit_config(hub, tiny_assets, tmp_path / "cache")
        outcome = audit_model(resolved, store, "meta-llama/Llama-3.1-8B-Instruct")
    assert outcome.status == "skipped" and "gated" in (outcome.reason or "")


@pytest.mark.parametrize("quant", ["nf4", "int8"])
def test_bitsandbytes_quantization_runs_on_the_cpu(
    audited: dict[str, Any], hub_env: None, tmp_path: Path, quant: str
) -> None:
    with Store.open(tmp_path / "q.duckdb") as store:
        toxic = audit_model(audited["resolved"], store, "planted/llama-toxic-sft", quantization=quant)
        root = audit_model(audited["resolved"], store, "meta-llama/Llama-3.1-8B-Instruct", quantization=quant)
        recorded = store.query("SELECT DISTINCT quantization FROM audits")
    assert toxic.status == root.status == "done", (toxic.reason, root.reason)
    assert recorded == [(quant,)]
    assert toxic.rate is not None and root.rate is not None and toxic.rate - root.rate >= 0.5


def test_the_papers_scorer_reads_the_hate_label(audited: dict[str, Any], hub_env: None, tmp_path: Path) -> None:
    resolved = audit_config(audited["hub"], None, tmp_path / "cache", **{"scoring.scorer": "hf-classifier"})
    with Store.open(tmp_path / "c.duckdb") as store:
        toxic = audit_model(resolved, store, "planted/llama-toxic-sft")
        root = audit_model(resolved, store, "meta-llama/Llama-3.1-8B-Instruct")
        attributes = store.query("SELECT DISTINCT attribute FROM scores")
        scorer = store.query("SELECT DISTINCT scorer, scorer_hash FROM audits")
    assert attributes == [("hate",)]
    assert scorer[0][0] == "hf-classifier" and scorer[0][1].startswith("facebook/roberta-hate-speech")
    assert toxic.rate is not None and root.rate is not None and toxic.rate >= 0.8 and root.rate <= 0.1


def test_a_batch_that_runs_out_of_memory_is_halved(
    audited: dict[str, Any], hub_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from auditor.audit import generation

    sizes: list[int] = []
    real = generation._generate_batch

    def tight_memory(loaded: Any, batch: list[Any], preset: Any, texts: Any) -> Any:
        sizes.append(len(batch))
        if len(batch) > 16:  # as a GPU would, for a batch too big for its memory
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(loaded, batch, preset, texts)

    monkeypatch.setattr(generation, "_generate_batch", tight_memory)
    with Store.open(tmp_path / "m.duckdb") as store:
        outcome = audit_model(audited["resolved"], store, "planted/llama-benign-sft")
    assert outcome.status == "done" and outcome.n_completions == 200
    assert sizes[:3] == [64, 32, 16] and max(sizes[3:]) <= 16
    assert outcome.reason == "out of GPU memory: batches were halved to 16 prompts"  # recorded


def test_downloads_are_removed_when_over_the_disk_budget(
    audited: dict[str, Any], hub_env: None, tmp_path: Path
) -> None:
    from huggingface_hub import scan_cache_dir

    keep = audit_config(audited["hub"], None, tmp_path / "keep")
    budget = audit_config(audited["hub"], None, tmp_path / "budget", **{"audit.disk_budget_gb": 0})
    with Store.open(tmp_path / "d.duckdb") as store:
        audit_model(keep, store, "planted/llama-near-copy")
        audit_model(budget, store, "planted/llama-near-copy", force=True)
    assert any(r.repo_id == "planted/llama-near-copy" for r in scan_cache_dir(tmp_path / "keep").repos)
    left = {r.repo_id: len(r.revisions) for r in scan_cache_dir(tmp_path / "budget").repos}
    assert left.get("planted/llama-near-copy", 0) == 0


def test_missing_too_large_and_unknown_architectures_are_rows(
    audited: dict[str, Any], hub_env: None, tmp_path: Path
) -> None:
    world: World = audited["world"]
    phi = world.models["microsoft/Phi-3.5-mini-instruct"].files or {}
    odd = dict(phi)
    odd["config.json"] = SimFile(
        json.dumps(
            {**json.loads(phi["config.json"].content), "model_type": "zorblax", "architectures": ["ZorblaxForCausalLM"]}
        ).encode()
    )
    world.add_model("broken/unknown-architecture", declared=["microsoft/Phi-3.5-mini-instruct"], files=odd)
    small_cap = audit_config(audited["hub"], None, tmp_path / "cache", **{"audit.max_download_gb": 0.0001})
    with Store.open(tmp_path / "r.duckdb") as store:
        missing = audit_model(audited["resolved"], store, "nobody/not-there")
        unknown = audit_model(audited["resolved"], store, "broken/unknown-architecture")
        large = audit_model(small_cap, store, "planted/llama-benign-sft")
        rows = store.query("SELECT repo_id, status FROM audits ORDER BY audit_id")
    assert missing.status == "failed" and "does not exist" in (missing.reason or "")
    assert unknown.status == "failed" and "not supported" in (unknown.reason or ""), unknown.reason
    assert large.status == "skipped" and "max_download_gb" in (large.reason or "")
    assert [r[1] for r in rows] == ["failed", "failed", "skipped"]


def test_scorers_load_offline_once_their_files_are_present(
    audited: dict[str, Any], hub_env: None, tiny_assets: Any
) -> None:
    import os
    import subprocess
    import sys

    from auditor.audit.scoring import load_scorer

    # Online first: the classifier's files land in the cache (HF_HOME of this test session).
    resolved = audit_config(audited["hub"], None, Path("unused"), **{"scoring.scorer": "hf-classifier"})
    load_scorer(resolved.config.scoring, endpoint=audited["hub"].url)
    script = (
        "from auditor.config import load_config; from auditor.audit.scoring import load_scorer\n"
        "for flags in ({'scoring.scorer': 'hf-classifier'},"
        f" {{'scoring.checkpoint': {str(tiny_assets.detoxify_checkpoint)!r},"
        f" 'scoring.config_dir': {str(tiny_assets.detoxify_config)!r}}}):\n"
        "    scorer = load_scorer(load_config(flags=flags).config.scoring, endpoint='http://127.0.0.1:9')\n"
        "    toxic, benign = scorer.score(['idiot stupid moron', 'a lovely walk in the park'])\n"
        "    print(scorer.name, toxic.values[scorer.primary] > 0.5, benign.values[scorer.primary] < 0.5)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HF_ENDPOINT", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["hf-classifier", "True", "True", "detoxify", "True", "True"]


def test_a_text_the_scorer_cannot_score_is_null_with_a_reason(audited: dict[str, Any], tiny_assets: Any) -> None:
    from auditor.audit.scoring import load_scorer

    resolved = audit_config(audited["hub"], tiny_assets, Path("unused"))
    scorer = load_scorer(resolved.config.scoring, endpoint=audited["hub"].url)
    broken = object()  # not a string: Detoxify's tokenizer refuses it, as it would a corrupt text
    scores = scorer.score(["idiot stupid", broken, "lovely day"])  # type: ignore[list-item]
    assert scores[0].values["toxicity"] is not None and scores[2].values["toxicity"] is not None
    assert scores[1].values == dict.fromkeys(scores[0].values) and "scorer failed" in (scores[1].reason or "")


def test_the_opt_ins_load_pickle_weights_and_run_remote_code(
    audited: dict[str, Any], hub_env: None, tmp_path: Path
) -> None:
    trusting = audit_config(
        audited["hub"], None, tmp_path / "cache", **{"audit.allow_pickle": True, "audit.trust_remote_code": True}
    )
    with Store.open(tmp_path / "o.duckdb") as store:
        pickle = audit_model(trusting, store, "broken/pickle-only")
        remote = audit_model(trusting, store, "broken/remote-code")
    assert pickle.status == "done" and pickle.n_completions == 200
    # Its code was downloaded and run only because it was allowed to (it raises on import).
    assert remote.status == "failed" and "remote code of broken/remote-code ran" in (remote.reason or "")


def test_the_chat_preset_uses_the_models_template(audited: dict[str, Any], hub_env: None, tmp_path: Path) -> None:
    with Store.open(tmp_path / "chat.duckdb") as store:
        chat = audit_model(audited["resolved"], store, "planted/llama-toxic-sft", preset_name="chat")
        row = store.query("SELECT reason, chat_template_hash, generation_config FROM audits")[0]
    assert chat.status == "done" and chat.reason is None and row[1]
    assert json.loads(row[2])["chat"] is True and chat.rate is not None and chat.rate >= 0.8


def test_another_way_of_asking_or_scoring_is_another_audit(audited: dict[str, Any], hub_env: None) -> None:
    with Store.open(audited["store"]) as store:
        first = audited["outcomes"]["planted/llama-near-copy"]
        other_preset = audit_model(audited["resolved"], store, "planted/llama-near-copy", preset_name="chat")
        other_quant = audit_model(audited["resolved"], store, "planted/llama-near-copy", quantization="int8")
        again = audit_model(audited["resolved"], store, "planted/llama-near-copy")
    assert not other_preset.reused and not other_quant.reused and again.reused
    assert len({first.audit_id, other_preset.audit_id, other_quant.audit_id}) == 3
    assert again.audit_id == first.audit_id


def test_unscored_texts_are_null_in_the_store_and_outside_the_rate(
    audited: dict[str, Any], hub_env: None, tmp_path: Path
) -> None:
    from auditor.audit.scoring import Score, ScorerSet, load_scorers

    scorers = load_scorers(audited["resolved"].config.scoring, endpoint=audited["hub"].url)
    real = scorers.scorers[0]

    class EveryTenthFails:
        name, checkpoint_hash, primary = real.name, real.checkpoint_hash, real.primary

        def score(self, texts: list[str]) -> list[Score]:
            scored = real.score(texts)
            return [
                Score(dict.fromkeys(s.values), reason="scorer failed: test") if i % 10 == 0 else s
                for i, s in enumerate(scored)
            ]

    with Store.open(tmp_path / "n.duckdb") as store:
        failing = ScorerSet((EveryTenthFails(),), scorers.headline)
        outcome = audit_model(audited["resolved"], store, "planted/llama-toxic-sft", scorers=failing)
        nulls = store.query("SELECT count(*), min(reason) FROM scores WHERE score IS NULL AND attribute = 'toxicity'")
        row = store.query("SELECT n_completions, n_scored FROM audits")[0]
    assert nulls[0][0] > 0 and nulls[0][1] == "scorer failed: test"
    assert row[0] == 200 and row[1] == 200 - nulls[0][0] == outcome.n_scored
    assert outcome.rate == 1.0  # the unscored are outside the rate, not counted as non-toxic


def test_finish_reason_and_token_counts(
    audited: dict[str, Any], hub_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auditor.audit import presets

    monkeypatch.setitem(presets.PRESETS, "short", presets.Preset(name="short", chat=False, max_new_tokens=3))
    with Store.open(tmp_path / "f.duckdb") as store:
        audit_model(audited["resolved"], store, "planted/llama-toxic-sft", preset_name="short")
        short = store.query("SELECT DISTINCT finish_reason, n_tokens FROM completions")
    with Store.open(audited["store"], read_only=True) as store:
        full = store.query(
            "SELECT min(n_tokens), max(n_tokens), count(*) FILTER (WHERE finish_reason = 'eos') FROM completions"
            " WHERE audit_id = ?",
            [audited["outcomes"]["planted/llama-toxic-sft"].audit_id],
        )[0]
    assert ("length", 3) in short and all(n <= 3 for _, n in short)  # some reach eos within 3 tokens
    assert full[0] >= 2 and full[1] <= 50 and full[2] == 200  # eos counted in n_tokens


def test_the_job_gives_the_same_rows_with_the_store_or_in_memory(audited: dict[str, Any], hub_env: None) -> None:
    """`run_audit` through the store's sink (the shared store, via `audit_model`) and through a
    `MemorySink`: the same audit rows, completions and scores, for an adapter and a broken model."""
    from auditor.audit.driver import audit_spec
    from auditor.audit.job import run_audit
    from auditor.audit.sink import MemorySink

    spec = audit_spec(audited["resolved"], audited["battery"])
    sink = MemorySink()
    repos = ("planted/gemma-lora", "broken/no-tokenizer")
    in_memory = {}
    for repo_id in repos:
        result = run_audit(spec, repo_id, None, sink)
        assert result.audit_id is not None
        audit = sink.audits[result.audit_id]
        in_memory[repo_id] = (
            (audit.key.way, audit.key.sha, audit.key.quantization, audit.status, audit.reason_code, audit.reason),
            (audit.base_sha, audit.chat_template_hash, json.loads(json.dumps(audit.generation_config)), audit.findings),
            sorted((p, *row) for (a, p), row in sink.completions.items() if a == result.audit_id),
            sorted((p, s, attr, *v) for (a, p, s, attr), v in sink.scores.items() if a == result.audit_id),
        )
    stored = {}
    with Store.open(audited["store"], read_only=True) as store:
        for repo_id in repos:
            audit_id, *row = store.query(
                "SELECT audit_id, way, sha, quantization, status, reason_code, reason, base_sha, chat_template_hash,"
                " generation_config, findings FROM audits WHERE repo_id = ? ORDER BY audit_id LIMIT 1",
                [repo_id],
            )[0]
            findings = None if row[9] is None else tuple(row[9])
            stored[repo_id] = (
                tuple(row[:6]),
                (row[6], row[7], json.loads(row[8]), findings),
                sorted(
                    store.query(
                        "SELECT prompt_id, text, n_tokens, finish_reason FROM completions WHERE audit_id = ?",
                        [audit_id],
                    )
                ),
                sorted(
                    store.query(
                        "SELECT prompt_id, scorer, attribute, score, reason FROM scores WHERE audit_id = ?", [audit_id]
                    )
                ),
            )
    assert in_memory["planted/gemma-lora"][0][3] == "done" and len(in_memory["planted/gemma-lora"][2]) == 200
    assert in_memory["broken/no-tokenizer"][0][3] == "failed"
    for repo_id in repos:
        for got, want in zip(in_memory[repo_id], stored[repo_id], strict=True):
            assert got == want, repo_id


# The CPU allocator's own words (torch 2.13: `torch.empty(10**13)` raises this RuntimeError).
CPU_OUT_OF_MEMORY = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to"
    " allocate 40000000000000 bytes. Error code 12 (Cannot allocate memory)"
)


@pytest.mark.parametrize("error", [RuntimeError(CPU_OUT_OF_MEMORY), MemoryError()], ids=["allocator", "python"])
def test_a_batch_that_runs_out_of_cpu_memory_is_halved(
    audited: dict[str, Any], hub_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    from auditor.audit import generation

    sizes: list[int] = []
    real = generation._generate_batch

    def tight_memory(loaded: Any, batch: list[Any], preset: Any, texts: Any) -> Any:
        sizes.append(len(batch))
        if len(batch) > 16:  # as a machine without swap would, for a batch too big for its memory
            raise error
        return real(loaded, batch, preset, texts)

    monkeypatch.setattr(generation, "_generate_batch", tight_memory)
    with Store.open(tmp_path / "m.duckdb") as store:
        outcome = audit_model(audited["resolved"], store, "planted/llama-benign-sft")
    assert outcome.status == "done" and outcome.n_completions == 200
    assert sizes[:3] == [64, 32, 16] and max(sizes[3:]) <= 16
    assert outcome.reason == "out of CPU memory: batches were halved to 16 prompts"


def test_only_running_out_of_memory_halves_a_batch() -> None:
    import torch

    from auditor.audit.generation import is_out_of_memory

    assert is_out_of_memory(RuntimeError(CPU_OUT_OF_MEMORY)) and is_out_of_memory(MemoryError())
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x64 and 32x64)"))
    assert not is_out_of_memory(ValueError("DefaultCPUAllocator: can't allocate memory"))  # not torch's error


def test_a_prompt_over_max_prompt_tokens_keeps_its_end(tiny_assets: Any) -> None:
    from transformers import AutoTokenizer

    from auditor.audit.generation import prepare
    from auditor.audit.loader import LoadedModel, RepoGeneration, TokenIds
    from auditor.audit.presets import get_preset

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_assets.models["planted/llama-toxic-sft"]))
    token_ids, repo = TokenIds((3,), 0, 2), RepoGeneration(None, {})
    loaded = LoadedModel(None, tokenizer, "none", "cpu", None, None, 0.0, token_ids, repo)
    short, long = "he said that", "he said that she told him about the lovely garden"
    ids = tokenizer(long)["input_ids"]
    assert len(ids) == 10 and tokenizer(short)["input_ids"] == ids[:3]  # one token a word (WordLevel)
    nightly = prepare(loaded, [("s", short), ("l", long)], get_preset("nightly"), max_prompt_tokens=4)
    assert nightly.inputs == [("s", ids[:3]), ("l", ids[-4:])] and nightly.n_truncated == 1
    assert nightly.texts == {"s": short, "l": "about the lovely garden"}  # what the continuation rule removes
    chat = prepare(loaded, [("l", long)], get_preset("chat"), max_prompt_tokens=4)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "about the lovely garden"}], add_generation_prompt=True, tokenize=False
    )
    assert chat.inputs == [("l", tokenizer(rendered, add_special_tokens=False)["input_ids"])]  # the template whole
    assert chat.n_truncated == 1
    # `paper` truncates at the tokenizer's model_max_length (128 here), as the authors' loop did; a
    # prompt under max_prompt_tokens but over that keeps its start, and counts as truncated too.
    huge = " ".join(["garden"] * 200)
    paper = prepare(loaded, [("s", short), ("h", huge)], get_preset("paper"), max_prompt_tokens=512)
    assert [len(i) for _, i in paper.inputs] == [3, 128] and paper.n_truncated == 1
    assert prepare(loaded, [("s", short)], get_preset("paper"), max_prompt_tokens=512).n_truncated == 0


def test_the_audit_records_how_many_prompts_were_truncated(
    audited: dict[str, Any], hub_env: None, tmp_path: Path
) -> None:
    ids = {repo_id: audited["outcomes"][repo_id].audit_id for repo_id in ("planted/llama-toxic-sft", *BROKEN)}
    with Store.open(audited["store"], read_only=True) as store:
        counted = {
            r: store.query("SELECT n_truncated FROM audits WHERE audit_id = ?", [a])[0][0] for r, a in ids.items()
        }
    assert counted["planted/llama-toxic-sft"] == 0  # six words each: none over the default 512
    assert counted["broken/no-tokenizer"] is None  # never loaded: not counted
    short = audit_config(audited["hub"], None, tmp_path / "cache", **{"audit.max_prompt_tokens": 4})
    with Store.open(tmp_path / "t.duckdb") as store:
        outcome = audit_model(short, store, "planted/llama-toxic-sft")
        n_truncated = store.query("SELECT n_truncated FROM audits WHERE audit_id = ?", [outcome.audit_id])[0][0]
    assert outcome.status == "done" and outcome.n_completions == 200
    assert n_truncated == 200  # every prompt of the battery has six words, six tokens
