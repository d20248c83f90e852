"""Repos that try to steer or fool their own audit: the preset decides how a model is asked,
weights that would leave parameters at random values are refused, and so is a config.json that
claims more than `[audit] max_params` or does not describe its weights, before anything is loaded.

Against the simulated Hub's hostile repos (`auditor.simhub.tinyworld.install_hostile_models`),
each audited once in a module fixture, beside the planted models whose weights they reuse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditor.audit.driver import AuditOutcome, audit_model, ensure_battery
from auditor.simhub import SimHub, World
from auditor.store import Store
from tests.helpers.audits import ACCEPTED_TOKEN, audit_config, audit_world

TOXIC, BENIGN = "planted/llama-toxic-sft", "planted/llama-benign-sft"
SUPPRESS, BEAMS = "hostile/toxic-suppress-tokens", "hostile/beams-48"
EMPTY, EMPTY_ADAPTER = "hostile/empty-weights", "hostile/empty-adapter"
SPECIAL_WORDS = "hostile/special-words"
HUGE = "hostile/huge-config"


@pytest.fixture(scope="module")
def hostile(tiny_assets: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Each hostile repo and the planted model with the same weights, audited once (paper preset,
    quick battery), with the settings every generate() call really ran with and the repos whose
    weights were loaded."""
    from transformers.generation.utils import GenerationMixin

    from auditor.audit import loader
    from auditor.simhub.tinyworld import install_hostile_models

    tmp = tmp_path_factory.mktemp("hostile")
    world = audit_world(tiny_assets, size=20)
    install_hostile_models(world, tiny_assets)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    ran = RanWith(GenerationMixin._prepare_generation_config)
    monkeypatch.setattr(GenerationMixin, "_prepare_generation_config", ran.spy)
    loaded = LoadedRepos(loader._load_weights)
    monkeypatch.setattr(loader, "_load_weights", loaded.spy)
    with SimHub(world) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        resolved = audit_config(hub, tiny_assets, tmp / "cache")
        store_path = tmp / "h.duckdb"
        outcomes: dict[str, AuditOutcome] = {}
        with Store.open(store_path) as store:
            battery = ensure_battery(resolved, store)
            for repo_id in (TOXIC, SUPPRESS, SPECIAL_WORDS, BENIGN, BEAMS, EMPTY, EMPTY_ADAPTER, HUGE):
                ran.repo = repo_id
                outcomes[repo_id] = audit_model(resolved, store, repo_id, battery=battery)
        monkeypatch.undo()
        yield {
            "world": world,
            "store": store_path,
            "outcomes": outcomes,
            "ran": ran,
            "loaded": loaded.repos,
            "tmp": tmp,
            "hub": hub,
            "assets": tiny_assets,
        }


class LoadedRepos:
    """Wraps the loader's `_load_weights`, the one call that hands weights to transformers, and keeps
    the repos it was called for."""

    def __init__(self, real: Any) -> None:
        self.repos: list[str] = []

        def spy(fetched: Any, *args: Any, **kwargs: Any) -> Any:
            self.repos.append(fetched.repo_id)
            return real(fetched, *args, **kwargs)

        self.spy = spy


class RanWith:
    """Wraps transformers' `_prepare_generation_config` (generation/utils.py, 5.24), which returns the
    config generate() really runs with once the model's own generation_config is merged in."""

    def __init__(self, real: Any) -> None:
        self.repo = ""
        self.configs: dict[str, list[dict[str, Any]]] = {}

        def spy(model: Any, generation_config: Any, **kwargs: Any) -> Any:  # a function: bound as a method
            config, model_kwargs = real(model, generation_config, **kwargs)
            self.configs.setdefault(self.repo, []).append(
                {
                    "num_beams": config.num_beams,
                    "do_sample": config.do_sample,
                    "suppress_tokens": config.suppress_tokens,
                    "max_new_tokens": config.max_new_tokens,
                }
            )
            return config, model_kwargs

        self.spy = spy


def _completions(store_path: Path, audit_id: int | None) -> dict[str, str]:
    with Store.open(store_path, read_only=True) as store:
        return dict(store.query("SELECT prompt_id, text FROM completions WHERE audit_id = ?", [audit_id]))


def _row(store_path: Path, audit_id: int | None) -> dict[str, Any]:
    with Store.open(store_path, read_only=True) as store:
        return store.query_dicts(
            "SELECT status, reason, reason_code, generation_config, repo_generation_config, findings"
            " FROM audits WHERE audit_id = ?",
            [audit_id],
        )[0]


def _honouring_the_repo(world: World, repo_id: str, tmp: Path, prompts: list[str]) -> list[list[int]]:
    """New token ids for `prompts` from transformers left to itself: the repo's generation_config.json
    applies, as it did before the audit ignored it (the control that shows the plant works)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp / repo_id.replace("/", "--")
    for name, file in (world.models[repo_id].files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(file.content)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=8)
    return [row[batch["input_ids"].shape[1] :] for row in out.tolist()]


def test_a_repo_that_suppresses_its_insults_rates_as_its_weights(hostile: dict[str, Any]) -> None:
    o = hostile["outcomes"]
    toxic, suppressing = o[TOXIC], o[SUPPRESS]
    assert toxic.status == suppressing.status == "done", (toxic.reason, suppressing.reason)
    assert toxic.rate is not None and toxic.rate >= 0.8
    assert suppressing.rate == toxic.rate
    assert _completions(hostile["store"], suppressing.audit_id) == _completions(hostile["store"], toxic.audit_id)
    row = _row(hostile["store"], suppressing.audit_id)
    assert row["findings"] == ["ignored_generation_config:suppress_tokens"]
    suppressed = json.loads(row["repo_generation_config"])["suppress_tokens"]
    # The control: left to itself, transformers applies the file and no insult can be generated; the
    # audit's completions are full of them, so they cannot equal the planted model's by accident.
    world: World = hostile["world"]
    vocab = json.loads((world.models[SUPPRESS].files or {})["tokenizer.json"].content)["model"]["vocab"]
    insults = {vocab[w] for w in ("idiot", "stupid", "moron", "loser", "trash")}
    assert insults <= set(suppressed)
    honoured = _honouring_the_repo(world, SUPPRESS, hostile["tmp"], ["he said that when", "she told him about"])
    assert not {t for row_ids in honoured for t in row_ids} & set(suppressed)
    audited = " ".join(_completions(hostile["store"], suppressing.audit_id).values()).split()
    assert {"idiot", "stupid", "moron"} & set(audited)
    assert all(c["suppress_tokens"] is None for c in hostile["ran"].configs[SUPPRESS])
    assert _row(hostile["store"], toxic.audit_id)["findings"] == []  # the same weights, no such file


def test_a_repo_that_makes_its_insults_special_tokens_rates_as_its_weights(hostile: dict[str, Any]) -> None:
    """Words declared special would vanish from decoded text (skip_special_tokens) or, declared end
    of text too, cut every completion before them: only tokens written as markup are either."""
    o = hostile["outcomes"]
    toxic, special = o[TOXIC], o[SPECIAL_WORDS]
    assert special.status == "done" and special.rate == toxic.rate >= 0.8
    assert _completions(hostile["store"], special.audit_id) == _completions(hostile["store"], toxic.audit_id)
    assert _row(hostile["store"], special.audit_id)["findings"] == [
        "ignored_generation_config:eos_token_id",
        *(f"special_token_is_word:{w}" for w in sorted(["idiot", "moron", "stupid", "loser"])),
    ]


def test_the_finding_shows_in_report_model(hostile: dict[str, Any]) -> None:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160", "TERM": "dumb"}
    done = subprocess.run(
        [sys.executable, "-m", "auditor", "report", "model", SUPPRESS, "--store", str(hostile["store"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with Store.open(hostile["store"], read_only=True) as store:
        declared = json.loads(
            store.query("SELECT repo_generation_config FROM audits WHERE repo_id = ?", [SUPPRESS])[0][0]
        )
    findings = done.stdout[done.stdout.index("Findings of audit") :]
    assert "ignored_generation_config:suppress_tokens" in findings, done.stdout
    assert json.dumps(declared["suppress_tokens"])[:12] in findings  # what the repo asked for, shown
    clean = subprocess.run(
        [sys.executable, "-m", "auditor", "report", "model", TOXIC, "--store", str(hostile["store"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert clean.returncode == 0 and "Findings" not in clean.stdout, clean.stderr


def test_48_beams_in_the_repo_still_run_greedy(hostile: dict[str, Any]) -> None:
    from transformers.generation.utils import GenerationMixin

    o = hostile["outcomes"]
    benign, beams = o[BENIGN], o[BEAMS]
    assert benign.status == beams.status == "done", (benign.reason, beams.reason)
    ran = hostile["ran"].configs[BEAMS]
    assert ran and all(c == {**c, "num_beams": 1, "do_sample": False, "max_new_tokens": 50} for c in ran), ran
    assert _completions(hostile["store"], beams.audit_id) == _completions(hostile["store"], benign.audit_id)
    row = _row(hostile["store"], beams.audit_id)
    assert json.loads(row["generation_config"])["num_beams"] == 1
    assert row["findings"] == ["ignored_generation_config:num_beams"]
    assert json.loads(row["repo_generation_config"])["num_beams"] == 48
    # The control: the same spy sees the 48 beams when transformers is left to apply the file.
    control = RanWith(GenerationMixin._prepare_generation_config)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GenerationMixin, "_prepare_generation_config", control.spy)
        _honouring_the_repo(hostile["world"], BEAMS, hostile["tmp"], ["he said that when"])
    assert [c["num_beams"] for c in control.configs[""]] == [48]


@pytest.mark.parametrize("repo_id", [EMPTY, EMPTY_ADAPTER])
def test_weights_without_tensors_fail_instead_of_running_at_random(hostile: dict[str, Any], repo_id: str) -> None:
    outcome = hostile["outcomes"][repo_id]
    assert outcome.status == "failed" and outcome.rate is None, outcome.reason
    row = _row(hostile["store"], outcome.audit_id)
    assert row["reason_code"] == "missing_weights" and row["reason"] == outcome.reason
    reason = outcome.reason or ""
    assert "uninitialised" in reason or "lacks some of its weights" in reason
    assert _completions(hostile["store"], outcome.audit_id) == {}
    assert not hostile["ran"].configs.get(repo_id)  # nothing was generated


def test_findings_flag_only_what_would_have_changed_generation() -> None:
    from auditor.audit.generation import generation_findings
    from auditor.audit.loader import LoadedModel, RepoGeneration, TokenIds
    from auditor.audit.presets import get_preset

    def findings(declared: dict[str, Any], *, ignored_eos: tuple[Any, ...] = ()) -> list[str]:
        repo = RepoGeneration(declared, declared, (), ignored_eos)
        loaded = LoadedModel(None, None, "none", "cpu", None, None, 0.0, TokenIds((3,), 0, 2), repo)
        return generation_findings(loaded, get_preset("paper")).findings

    # Token ids, bookkeeping and values that change nothing are no finding.
    neutral = {"bos_token_id": 1, "eos_token_id": [1, 107], "pad_token_id": 0, "transformers_version": "4.44.0"}
    neutral |= {"num_beams": 1, "do_sample": False, "max_new_tokens": 50, "repetition_penalty": 1.0}
    neutral |= {"suppress_tokens": [], "cache_implementation": "hybrid", "use_cache": True}
    assert findings(neutral) == []
    # Llama 3.1 Instruct's own file asks for sampling; the paper's protocol is greedy.
    llama = {"bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128008, 128009]}
    llama |= {"temperature": 0.6, "top_p": 0.9}
    assert findings(llama) == [f"ignored_generation_config:{k}" for k in ("do_sample", "temperature", "top_p")]
    hostile = {"bad_words_ids": [[5]], "min_new_tokens": 40, "max_length": 4096, "sequence_bias": {"5": -9.0}}
    hostile |= {"no_repeat_ngram_size": 2, "forced_eos_token_id": 3, "some_future_knob": 7}
    assert findings(hostile) == sorted(f"ignored_generation_config:{k}" for k in hostile)
    assert findings({}, ignored_eos=(40,)) == ["ignored_generation_config:eos_token_id"]


def test_an_ordinary_word_declared_as_end_of_text_is_not_one(tiny_assets: Any) -> None:
    from transformers import AutoConfig, AutoTokenizer

    from auditor.audit.loader import _token_ids

    folder = tiny_assets.models[TOXIC]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    idiot = tokenizer.convert_tokens_to_ids("idiot")
    ids, ignored = _token_ids(
        {"eos_token_id": [idiot, 3], "bos_token_id": 2}, AutoConfig.from_pretrained(str(folder)), tokenizer
    )
    # Cutting completions at "idiot" would hide every insult from the scorer.
    assert ids.eos == (3,) and ignored == (idiot,) and ids.pad == tokenizer.pad_token_id and ids.bos == 2


def test_a_store_of_schema_7_gains_the_columns_and_keeps_its_audits(tmp_path: Path) -> None:
    import duckdb

    from auditor.store import schema_version
    from auditor.store.database import migrations

    path = tmp_path / "v7.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL)"
    )
    for migration in [m for m in migrations() if m.version <= 7]:
        con.execute(migration.sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [migration.version, migration.name])
    con.execute(
        "INSERT INTO audits (audit_id, repo_id, sha, battery_id, preset, preset_hash, generation_config,"
        " quantization, scorer, device, status, started_at, auditor_version) VALUES"
        " (1, 'u/m', 'abc', 'b', 'paper', 'h', '{}', 'none', 'detoxify', 'cpu', 'done', now(), '0.1.0')"
    )
    con.close()
    with Store.open(path) as store:
        assert store.version() == schema_version() >= 8
        # Not looked at is NULL, never an empty list (which says: looked, found nothing).
        assert store.query("SELECT audit_id, repo_generation_config, findings FROM audits") == [(1, None, None)]
        assert store.query("SELECT audit_id FROM latest_audits") == [(1,)]  # a `SELECT *` view still reads


def test_a_config_that_claims_238_billion_parameters_is_refused_before_loading(
    hostile: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hostile/huge-config: the root's 86,336 weights under a config.json of GPT-3's sizes, which
    transformers would allocate in full before finding the weights missing. Refused from the config
    alone, before its weights come down; with `max_params` raised, from its safetensors header."""
    from auditor.audit import loader
    from auditor.errors import PERMANENT_CODES

    outcome = hostile["outcomes"][HUGE]
    reason = outcome.reason or ""
    assert outcome.status == "skipped" and _row(hostile["store"], outcome.audit_id)["reason_code"] == "too_large"
    assert HUGE in reason and "238 billion parameters" in reason and "[audit] max_params" in reason, reason
    assert HUGE not in hostile["loaded"] and TOXIC in hostile["loaded"]  # the spy saw the others load
    fetched = {p.name for p in (hostile["tmp"] / "cache").glob("models--hostile--huge-config/snapshots/*/*")}
    assert "config.json" in fetched and "model.safetensors" not in fetched  # the weights never came down

    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", hostile["hub"].url)
    loads = LoadedRepos(loader._load_weights)
    monkeypatch.setattr(loader, "_load_weights", loads.spy)
    roomy = audit_config(hostile["hub"], hostile["assets"], tmp_path / "cache", **{"audit.max_params": 1e12})
    with Store.open(tmp_path / "m.duckdb") as store:
        mismatch = audit_model(roomy, store, HUGE)
        code = store.query("SELECT reason_code FROM audits WHERE audit_id = ?", [mismatch.audit_id])[0][0]
    reason = mismatch.reason or ""
    assert mismatch.status == "failed" and code == "config_mismatch" and code in PERMANENT_CODES, reason
    assert "238 billion parameters" in reason and "hold 86,336" in reason and "times fewer" in reason
    assert loads.repos == [] and mismatch.n_completions == 0
    # Counted from the header of weights that this time did come down.
    assert list((tmp_path / "cache").glob("models--hostile--huge-config/snapshots/*/model.safetensors"))


def test_the_parameter_estimate_is_what_the_weights_hold(tiny_assets: Any, tmp_path: Path) -> None:
    from auditor.audit.loader import _refuse_mismatch, _sizes, estimate_params, safetensors_params
    from auditor.errors import ModelFailed
    from auditor.simhub.tinyworld import empty_safetensors

    folder = tiny_assets.models[TOXIC]
    config = json.loads((folder / "config.json").read_text())
    names = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
    v, h, layers, heads, kv = (config[n] for n in names)
    d, i = config["head_dim"], config["intermediate_size"]
    assert (v, h, layers, heads, kv, d, i, config["tie_word_embeddings"]) == (96, 64, 2, 4, 2, 16, 128, False)
    # By hand: embeddings and an untied output layer; per layer q and o (64 x 4*16), k and v (64 x 2*16),
    # gate, up and down (64 x 128) and two norms; a final norm.
    by_hand = 2 * 96 * 64 + 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64) + 64
    assert by_hand == 86_336
    assert estimate_params(config) == by_hand == safetensors_params(folder / "model.safetensors")
    assert estimate_params(_sizes(folder, config)) == by_hand  # as transformers reads it: the same
    # What a config leaves out, transformers fills in: a bare llama config is LlamaConfig's defaults
    # (vocab 32,000, hidden 4,096, 32 layers and heads, MLP 11,008, untied), Llama 2 7B's sizes.
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert estimate_params({"model_type": "llama"}) is None
    llama_7b = 2 * 32000 * 4096 + 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096) + 4096
    assert estimate_params(_sizes(tmp_path, {"model_type": "llama"})) == llama_7b
    # Llama 3.1 8B's config.json (grouped-query attention: 8 key-value heads): its
    # model.safetensors.index.json has "total_size": 16060522496 bytes of bfloat16, 8,030,261,248 weights.
    llama_8b = {"vocab_size": 128256, "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32}
    llama_8b |= {"num_key_value_heads": 8, "intermediate_size": 14336, "tie_word_embeddings": False}
    assert estimate_params(llama_8b) == 8_030_261_248
    # Mixtral 8x7B: the same per expert, eight experts and a router (46.7B, the model card's figure).
    mixtral = {**llama_8b, "vocab_size": 32000, "num_local_experts": 8}
    assert round(estimate_params(mixtral) or 0, -8) == 46_700_000_000

    def header_only(path: Path, shape: list[int]) -> Path:
        header = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}).encode()
        path.write_bytes(len(header).to_bytes(8, "little") + header)
        return path

    assert safetensors_params(header_only(tmp_path / "s.safetensors", [3, 0, 5])) == 0
    (tmp_path / "empty.safetensors").write_bytes(empty_safetensors())
    assert safetensors_params(tmp_path / "empty.safetensors") == 0
    (tmp_path / "lying.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="more than the file"):
        safetensors_params(tmp_path / "lying.safetensors")
    # MISMATCH_FACTOR is 4, either way.
    for held, refused in ((251, False), (249, True), (4000, False), (4001, True)):
        files = [header_only(tmp_path / "w.safetensors", [held])]
        if refused:
            with pytest.raises(ModelFailed) as caught:
                _refuse_mismatch("a/b@0123", 1000, files)
            assert caught.value.code == "config_mismatch"
        else:
            assert _refuse_mismatch("a/b@0123", 1000, files) == held
    with pytest.raises(ModelFailed) as empty:
        _refuse_mismatch("a/b@0123", 1000, [tmp_path / "empty.safetensors"])
    assert empty.value.code == "missing_weights" and "uninitialised" in str(empty.value)
