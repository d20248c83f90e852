"""Fetching a model at a pinned commit and loading it, quantized, for generation.

The one home of torch, transformers, bitsandbytes and peft in the project (with generation.py).
Safety first: only safetensors weights are loaded unless `allow_pickle` is set (a pickle file can
run code when opened; even then it is read with PyTorch's weights-only unpickler, which builds
tensors and plain containers and nothing else), and repos that ship their own modelling code are
refused unless `trust_remote_code` is set. Everything a person must act on becomes a `ModelSkipped` or
`ModelFailed` with a reason, which the audit stores as a row.

A repo is hostile input. Weights that leave any parameter uninitialised (a missing tensor, an
empty safetensors file, an adapter without its tensors) fail the audit (`missing_weights`) rather
than be measured at random. Before any weight is loaded, the size config.json describes is
checked against `[audit] max_params` and against the parameters the safetensors headers hold: a
config claiming a giant would otherwise have transformers allocate all of it first.

The repo's generation settings are read here but never applied: the model's `generation_config`
keeps only its special token ids, and `auditor.audit.generation` asks the model the preset's way
(docs/audits.md, "How a model is asked").
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.audit.presets import Preset
from auditor.audit.quantization import bitsandbytes_config
from auditor.config import AuditSettings, HubSettings
from auditor.errors import ModelFailed, ModelSkipped
from auditor.hub.files import RepoFiles, fetch_files, list_repo_files

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
#: Files loading needs besides the weights (exact names, at any depth).
SUPPORT_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "adapter_config.json",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


@dataclass(frozen=True)
class FetchedModel:
    repo_id: str
    sha: str
    path: Path
    kind: str  # "model" or "adapter"
    #: For adapters: the base model named in adapter_config.json.
    base_repo: str | None
    #: Bytes this fetch brought into the cache (files already there count 0).
    download_bytes: int
    seconds: float
    #: The parameters config.json describes (`estimate_params`); None for an adapter, or a config
    #: that does not name the sizes.
    estimated_params: int | None = None
    #: The parameters the safetensors weights hold, counted from their headers; None where the
    #: count was not made (an adapter, quantized or pickle weights, no estimate to compare with).
    weight_params: int | None = None


@dataclass(frozen=True)
class TokenIds:
    """The repo's special token ids: the one part of its generation settings that generation uses."""

    #: Ids that end a completion: the tokenizer's end-of-text token and those the repo declares
    #: (generation_config.json, else config.json) that are control tokens of its tokenizer.
    eos: tuple[int, ...]
    pad: int | None
    bos: int | None
    #: The tokenizer's control tokens (special tokens written as markup, see CONTROL_TOKEN): left
    #: out of a completion's text, as `skip_special_tokens` would. Special tokens that are words stay.
    control: frozenset[int] = frozenset()


@dataclass(frozen=True)
class RepoGeneration:
    """What the repo declares about generation. Recorded with the audit and never applied."""

    #: generation_config.json as read (an adapter's own, else its base's); None when there is none
    #: or it is not a JSON object.
    file: dict[str, Any] | None
    #: The settings transformers would have applied: the file's or, when there is no file, the
    #: legacy generation fields of config.json.
    declared: dict[str, Any]
    #: What could not even be read: "unreadable" (generation_config.json is not a JSON object).
    problems: tuple[str, ...] = ()
    #: Declared end-of-text ids that were not used: not control tokens of the tokenizer (an
    #: ordinary word as "end of text" would cut every completion before it) or not ids at all.
    ignored_eos: tuple[Any, ...] = ()
    #: Special tokens of the tokenizer that are words, not markup: neither an end of text nor left
    #: out of the text, and a finding.
    word_specials: tuple[str, ...] = ()


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    quantization: str
    device: str
    chat_template_hash: str | None
    base: FetchedModel | None
    seconds: float
    token_ids: TokenIds
    repo_generation: RepoGeneration

    def findings(self, preset: Preset) -> list[str]:
        """Defect flags of the repo's generation settings when asked the `preset`'s way (what
        `audits.findings` records; `auditor.audit.generation.generation_findings` has the rules)."""
        from auditor.audit.generation import generation_findings

        return generation_findings(self, preset).findings


def resolve_device(setting: str) -> str:
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def is_adapter(repo: RepoFiles) -> bool:
    """Whether a repo is an adapter (an `adapter_config.json` at its top level), as `fetch_model` decides."""
    return "adapter_config.json" in repo.files


def fetch_model(
    repo_id: str,
    revision: str | None,
    settings: AuditSettings,
    *,
    endpoint: str,
    listing: RepoFiles | None = None,
    hub: HubSettings | None = None,
) -> FetchedModel:
    """Download what loading needs of `repo_id` at `revision`, after the safety and size checks.

    Only top-level files count: a full model with `lora/adapter_config.json` or old checkpoints in
    subfolders is neither an adapter nor charged for those files. The small files come first, and
    with them the checks that need no weights: remote code, and a config.json that describes more
    than `[audit] max_params` parameters (`too_large`). Once the weights are down, and before
    anything is loaded, the parameters their safetensors headers hold are counted and compared with
    the config's (`config_mismatch` beyond MISMATCH_FACTOR either way; `missing_weights` for none).
    That comparison cannot apply to an adapter (its weights are LoRA matrices, its base is checked
    when it is fetched), to a repo with a `quantization_config` (packed tensors: GPTQ's int32
    `qweight` holds eight 4-bit weights) or to pickle weights (a `.bin` has no header; its shapes
    are known only by unpickling it).

    >>> fetch_model("acme/llama-finetune", None, AuditSettings(), endpoint=url).weight_params  # doctest: +SKIP
    8030261248
    """
    started = time.monotonic()
    repo = listing or list_repo_files(repo_id, revision, endpoint=endpoint, hub=hub)
    where = f"{repo_id}@{repo.sha[:12]}"
    top = [p for p in repo.files if "/" not in p]
    safetensors = [p for p in top if p.endswith(".safetensors")]
    pickles = [p for p in top if p.endswith(PICKLE_SUFFIXES)]
    adapter = is_adapter(repo)

    if not safetensors:
        if not pickles:
            raise ModelFailed(
                f"{where} has no weights that transformers can load",
                hint="GGUF and other formats are not audited; audit its parent instead",
                code="no_weights",
            )
        if not settings.allow_pickle:
            raise ModelSkipped(
                f"{where} ships only pickle weights ({', '.join(sorted(pickles)[:3])}), which run code when loaded",
                hint="set [audit] allow_pickle = true (or --allow-pickle) only if you trust this repo",
                code="pickle",
            )
    weights = safetensors if safetensors else pickles
    support = [p for p in top if p in SUPPORT_FILES]
    if settings.trust_remote_code:
        support += [p for p in top if p.endswith(".py")]  # the repo's own modelling code
    wanted = support + weights
    size = sum(repo.files[p] for p in wanted)
    cap = int(settings.max_download_gb * 1e9)
    if size > cap:
        raise ModelSkipped(
            f"{where} needs {size / 1e9:.1f} GB of downloads, above the cap of {settings.max_download_gb:g} GB",
            hint="raise [audit] max_download_gb if the machine has room",
            code="too_large",
        )
    # The small files first: every check that needs no weights runs before the weights come down.
    snapshot = fetch_files(repo, support, endpoint=endpoint, cache_dir=settings.cache_dir, hub=hub)
    path = snapshot.folder

    for name in ("config.json", "tokenizer_config.json"):
        if (
            (path / name).exists()
            and _read_json(path / name, repo_id).get("auto_map")
            and not (settings.trust_remote_code)
        ):
            raise ModelSkipped(
                f"{where} needs its own code (auto_map in {name})",
                hint="set [audit] trust_remote_code = true (or --trust-remote-code) only if you trust this repo",
                code="remote_code",
            )
    base_repo = None
    if adapter:
        base_repo = _read_json(path / "adapter_config.json", repo_id).get("base_model_name_or_path")
        if not isinstance(base_repo, str) or not base_repo:
            raise ModelFailed(
                f"adapter {repo_id} does not name its base model in adapter_config.json", code="bad_adapter"
            )
    elif not (path / "config.json").exists():
        raise ModelFailed(f"{where} has no config.json", hint="the repo is incomplete", code="no_config")
    config = None if adapter else _read_json(path / "config.json", repo_id)
    estimate = None if config is None else _refuse_too_large(where, config, path, settings)
    fetched_weights = fetch_files(repo, weights, endpoint=endpoint, cache_dir=settings.cache_dir, hub=hub)
    counted = None
    if config is not None and estimate is not None and safetensors and "quantization_config" not in config:
        counted = _refuse_mismatch(where, estimate, _weight_files(path, safetensors, config, repo_id))
    return FetchedModel(
        repo_id,
        repo.sha,
        path,
        "adapter" if adapter else "model",
        base_repo,
        snapshot.fetched_bytes + fetched_weights.fetched_bytes,
        time.monotonic() - started,
        estimated_params=estimate,
        weight_params=counted,
    )


def prequantized(fetched: FetchedModel) -> str | None:
    """The quantization method a repo ships its weights in (GPTQ, AWQ, bitsandbytes), if any."""
    config_path = fetched.path / "config.json"
    if not config_path.exists():
        return None
    quant = _read_json(config_path, fetched.repo_id).get("quantization_config")
    if isinstance(quant, dict):
        return str(quant.get("quant_method") or "unknown")
    return None


#: How far apart the parameters config.json describes (`estimate_params`) and those the weights
#: hold may be, either way, before the commit is refused as inconsistent (`config_mismatch`). Real
#: repos stray from the estimate, a decoder-only transformer with a gated MLP, by less than 2x:
#: an output layer stored though the config ties it, or the reverse, is vocab x hidden, at most
#: about 1.6x for a small model with a large vocabulary (Gemma 3 270M: 262,144 x 640 = 168M of its
#: 268M); a plain two-matrix MLP (GPT-2, GPT-NeoX, Falcon) counted as gated is at most 1.5x (1.2x
#: for GPT-2); a vision tower beside the text model (Llava, Gemma 3) well under 2x; biases
#: (Qwen2's q/k/v, GPT-2's), norms and buffers saved with the weights a few percent. A factor of 4
#: leaves room for two of those at once, while a config of another model or size (a 70B config on
#: 8B weights is 9x) or a size claim meant to exhaust memory (hostile/huge-config: a million times
#: its weights) is far outside it. A config that is wrong by less still fails when the weights are
#: loaded, on a tensor's shape or a missing tensor (`missing_weights`); what this check prevents is
#: the allocation of everything the config describes before that.
MISMATCH_FACTOR = 4.0
#: The largest header the safetensors library reads (huggingface/safetensors,
#: safetensors/src/tensor.rs: `const MAX_HEADER_SIZE: usize = 100_000_000`, `HeaderTooLarge`).
MAX_SAFETENSORS_HEADER = 100_000_000
#: The names config.json may give each size, transformers' first (LlamaConfig, Gemma2Config,
#: Phi3Config: `vocab_size`, `hidden_size`, `num_hidden_layers`, `intermediate_size`,
#: `num_attention_heads`, `num_key_value_heads`, `head_dim`), then older ones (GPT2Config: `n_embd`,
#: `n_layer`, `n_head`, `n_inner`; OPTConfig: `ffn_dim`), then mixtures of experts' (MixtralConfig:
#: `num_local_experts`; Qwen2MoeConfig: `num_experts`, `moe_intermediate_size`,
#: `shared_expert_intermediate_size`; DeepseekV3Config: `n_routed_experts`, `n_shared_experts`,
#: `first_k_dense_replace`).
SIZE_NAMES: dict[str, tuple[str, ...]] = {
    "vocab": ("vocab_size",),
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "heads": ("num_attention_heads", "n_head", "num_heads"),
    "kv_heads": ("num_key_value_heads",),
    "head_dim": ("head_dim",),
    "intermediate": ("intermediate_size", "n_inner", "ffn_dim"),
    "experts": ("num_local_experts", "num_experts", "n_routed_experts"),
    "expert_intermediate": ("moe_intermediate_size",),
    "shared_intermediate": ("shared_expert_intermediate_size",),
    "shared_experts": ("n_shared_experts",),
    "dense_layers": ("first_k_dense_replace",),
}


def estimate_params(config: dict[str, Any]) -> int | None:
    """The parameters a decoder-only transformer with this config.json has; None when it does not
    name its vocabulary, hidden size, layers and attention heads (nor does its `text_config`).

    Embeddings V*H, and as many again for the output layer unless `tie_word_embeddings`; per layer
    the attention's projections (q and o: H x heads*head_dim; k and v: H x kv_heads*head_dim, fewer
    with grouped-query attention), a gated MLP's three H x I matrices (each expert's, for a mixture
    of experts, with its shared experts and router) and two norms of H; a final norm of H. Biases
    and buffers are left out. `head_dim` defaults to H / heads and `num_key_value_heads` to heads,
    as LlamaConfig's `__post_init__` does; an MLP without `intermediate_size` is 4H (GPT2Config's
    `n_inner = None`). Exact for Llama, Mistral and Phi-3 (Llama 3.1 8B: 8,030,261,248).

    >>> estimate_params({"vocab_size": 10, "hidden_size": 4, "num_hidden_layers": 1,
    ...                  "num_attention_heads": 2, "intermediate_size": 8, "tie_word_embeddings": True})
    212
    """
    text = config.get("text_config")
    if isinstance(text, dict) and _size(config, "hidden") is None:
        config = {**text, "tie_word_embeddings": config.get("tie_word_embeddings", text.get("tie_word_embeddings"))}
    vocab, hidden, layers, heads = (_size(config, name) for name in ("vocab", "hidden", "layers", "heads"))
    if vocab is None or hidden is None or layers is None or heads is None:
        return None
    head_dim = _size(config, "head_dim") or hidden // heads
    query, key_value = heads * head_dim, (_size(config, "kv_heads") or heads) * head_dim
    attention = 2 * hidden * query + 2 * hidden * key_value
    intermediate = _size(config, "intermediate") or 4 * hidden
    dense_mlp = 3 * hidden * intermediate
    mlps = layers * dense_mlp
    experts = _size(config, "experts") or 1
    if experts > 1:
        per_expert = _size(config, "expert_intermediate") or intermediate
        shared = _size(config, "shared_intermediate") or (_size(config, "shared_experts") or 0) * per_expert
        sparse_mlp = 3 * hidden * (experts * per_expert + shared) + hidden * experts  # the router: H x experts
        dense = min(layers, _size(config, "dense_layers") or 0)
        mlps = dense * dense_mlp + (layers - dense) * sparse_mlp
    outputs = 1 if config.get("tie_word_embeddings") is True else 2
    return outputs * vocab * hidden + layers * (attention + 2 * hidden) + mlps + hidden


def safetensors_params(path: Path) -> int:
    """The parameters a safetensors file holds, from its header alone (its tensors are not read).

    The format (github.com/huggingface/safetensors#format): 8 bytes, the header's size N as an
    unsigned little-endian 64-bit integer; N bytes of JSON mapping each tensor's name to its
    `dtype`, `shape` and `data_offsets`, beside an optional `__metadata__`; then the data. A
    tensor holds the product of its shape's dimensions (a scalar's empty shape: one). Raises
    ValueError for a header the safetensors library would refuse too.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        length = handle.read(8)
        if len(length) < 8:
            raise ValueError("the file is shorter than the 8 bytes that give its header's size")
        (n,) = struct.unpack("<Q", length)
        if n > MAX_SAFETENSORS_HEADER or n > size - 8:
            raise ValueError(f"its header claims {n} bytes, more than the file or the format allows")
        try:
            header = json.loads(handle.read(n).decode("utf-8"))
        except ValueError as err:
            raise ValueError(f"its header is not JSON: {err}") from None
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(_is_id(d) for d in shape):
            raise ValueError(f"tensor {name[:80]!r} has no valid shape")
        total += math.prod(shape)
    return total


def _size(config: dict[str, Any], name: str) -> int | None:
    """The first positive integer config.json gives under one of the size's names (SIZE_NAMES); a
    list of them, one per layer (Gemma 3n's `intermediate_size`), counts as its mean."""
    for key in SIZE_NAMES[name]:
        value: Any = config.get(key)
        if isinstance(value, list) and value and all(_is_id(v) for v in value):
            value = round(sum(value) / len(value))
        if _is_id(value) and value > 0:
            return int(value)
    return None


def _sizes(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """config.json as transformers will build the model from it: its config class fills in what
    the file leaves out (a bare `{"model_type": "llama"}` is LlamaConfig's 6.7B defaults), the
    class's `attribute_map` answers the standard names (GPT2Config: `hidden_size` is `n_embd`),
    and a composite model's text part is the one measured (`get_text_config(decoder=True)`,
    transformers 5.24 configuration_utils.py). Whether the output layer is tied is read from the
    outer config, as the model does (modeling_utils.py `get_expanded_tied_weights_keys`:
    `getattr(self.config, "tie_word_embeddings", False)`). A config transformers cannot read is
    taken as written; loading it fails later with its own message.
    """
    import transformers

    transformers.utils.logging.set_verbosity_error()
    try:
        # No remote code here, even where it is trusted: only the sizes are wanted.
        resolved = transformers.AutoConfig.from_pretrained(str(path), trust_remote_code=False)
        text = resolved.get_text_config(decoder=True)
    except Exception:
        return config
    sizes = {key: getattr(text, key, None) for names in SIZE_NAMES.values() for key in names}
    sizes["tie_word_embeddings"] = bool(getattr(resolved, "tie_word_embeddings", False))
    return {key: value for key, value in sizes.items() if value is not None}


def _count(n: float) -> str:
    """A parameter count as a person reads it: `238 billion`, `94,336`."""
    for scale, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if n >= scale:
            return f"{n / scale:.3g} {word}"
    return f"{int(n):,}"


def _refuse_too_large(where: str, config: dict[str, Any], path: Path, settings: AuditSettings) -> int | None:
    """The config's parameter estimate; a model above `[audit] max_params` is skipped (before its
    weights are downloaded: the listing's sizes may be small, and the config still claim a giant)."""
    estimate = estimate_params(_sizes(path, config))
    if estimate is not None and estimate > settings.max_params:
        raise ModelSkipped(
            f"the config.json of {where} describes a model of {_count(estimate)} parameters, above"
            f" [audit] max_params ({_count(settings.max_params)}); nothing was loaded",
            hint="raise [audit] max_params if the machine can hold a model that size",
            code="too_large",
        )
    return estimate


def _weight_files(path: Path, safetensors: list[str], config: dict[str, Any], repo_id: str) -> list[Path]:
    """The safetensors files transformers loads of those fetched (5.24, modeling_utils.py
    `_get_resolved_checkpoint_files`): the one config.json names (`transformers_weights`), else
    model.safetensors, else the shards model.safetensors.index.json maps, else (transformers would
    not find them) all of them."""
    named = config.get("transformers_weights")
    if isinstance(named, str) and named in safetensors:
        return [path / named]
    if "model.safetensors" in safetensors:
        return [path / "model.safetensors"]
    index = path / "model.safetensors.index.json"
    weight_map = _read_json(index, repo_id).get("weight_map") if index.exists() else None
    if isinstance(weight_map, dict):
        shards = {name for name in weight_map.values() if isinstance(name, str)}
        return [path / name for name in safetensors if name in shards]
    return [path / name for name in safetensors]


def _refuse_mismatch(where: str, estimate: int, files: list[Path]) -> int:
    """The parameters the weights hold (their headers'), after refusing weights the config does not
    describe (`MISMATCH_FACTOR`) and weights with no tensor at all (`missing_weights`)."""
    counted = 0
    for file in files:
        try:
            counted += safetensors_params(file)
        except (OSError, ValueError) as err:
            raise ModelFailed(
                f"the weights of {where} are corrupt or truncated: {file.name}: {err}",
                hint="nothing to do until the uploader pushes a fixed commit",
                code="corrupt",
            ) from None
    names = ", ".join(f.name for f in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    if counted == 0:
        raise ModelFailed(
            f"the weights of {where} hold no tensors ({names or 'no file'}): every parameter would be left"
            " uninitialised and the model would run on random values",
            hint="the checkpoint is empty; nothing to audit until the uploader pushes the weights",
            code="missing_weights",
        )
    if counted * MISMATCH_FACTOR < estimate or counted > estimate * MISMATCH_FACTOR:
        ratio = max(counted, estimate) / min(counted, estimate)
        raise ModelFailed(
            f"the config.json of {where} describes a model of {_count(estimate)} parameters, but its weights"
            f" ({names}) hold {_count(counted)}, {ratio:,.0f} times {'fewer' if counted < estimate else 'more'}:"
            " the config does not describe these weights, and the model was not loaded",
            hint="the commit is inconsistent (a config of another model or size); nothing to audit until the"
            " uploader pushes a config that matches the weights",
            code="config_mismatch",
        )
    return counted


def load_model(
    fetched: FetchedModel,
    settings: AuditSettings,
    *,
    quantization: str,
    device: str,
    base: FetchedModel | None = None,
    dtype: str | None = None,
) -> LoadedModel:
    """Load weights (quantized as asked, computing in `dtype`, by default the device's) and the
    tokenizer; adapters are applied onto `base`."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    started = time.monotonic()
    weights_from = base if fetched.kind == "adapter" else fetched
    if weights_from is None:
        raise ModelFailed(f"adapter {fetched.repo_id} needs its base model {fetched.base_repo}", code="bad_adapter")
    tokenizer = _load_tokenizer(fetched, base)
    model = _load_weights(weights_from, settings, quantization=quantization, device=device, dtype=dtype)
    repo_generation = read_repo_generation(fetched, weights_from)
    token_ids, ignored_eos = _token_ids(repo_generation.declared, model.config, tokenizer)
    words = tuple(sorted(t for t in special_tokens(tokenizer).values() if not CONTROL_TOKEN.fullmatch(t)))
    if ignored_eos or words:
        repo_generation = RepoGeneration(
            repo_generation.file, repo_generation.declared, repo_generation.problems, ignored_eos, words
        )
    model.generation_config = neutral_generation_config(token_ids)
    if fetched.kind == "adapter":
        model = _apply_adapter(model, fetched)
    model.eval()
    template = getattr(tokenizer, "chat_template", None)
    template_hash = hashlib.sha256(template.encode()).hexdigest()[:16] if isinstance(template, str) else None
    return LoadedModel(
        model,
        tokenizer,
        quantization,
        device,
        template_hash,
        base,
        time.monotonic() - started,
        token_ids,
        repo_generation,
    )


def neutral_generation_config(token_ids: TokenIds) -> Any:
    """A GenerationConfig holding the special token ids and nothing else.

    It replaces the model's own `generation_config`, because `generate()` fills every setting it
    was not given from `model.generation_config` (transformers 5.24,
    generation/utils.py `_prepare_generation_config`: `generation_config.update(
    **self.generation_config.to_dict(), defaults_only=True, ...)`): left in place, a repo's
    `suppress_tokens` or `num_beams` would apply even to an explicitly passed config.
    """
    from transformers import GenerationConfig

    return GenerationConfig(
        eos_token_id=list(token_ids.eos) or None, pad_token_id=token_ids.pad, bos_token_id=token_ids.bos
    )


def read_repo_generation(fetched: FetchedModel, weights_from: FetchedModel) -> RepoGeneration:
    """The generation settings a repo declares, read as plain JSON (transformers never parses them:
    `_load_weights` hands it a blank config, so a malformed file cannot fail the load).

    An adapter's own generation_config.json comes first, then its base's (which transformers would
    have applied). Without a file, transformers builds the model's generation config from
    config.json (5.24, generation/utils.py `adjust_generation_fn`: on OSError it reads
    `config_file_name="config.json"` with `_from_model_config=True`), so its generation fields
    count as declared.
    """
    from transformers import GenerationConfig

    for source in dict.fromkeys((fetched, weights_from)):
        path = source.path / "generation_config.json"
        if not path.exists():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict):
            return RepoGeneration(None, {}, ("unreadable",))
        return RepoGeneration(data, data)
    config_path = weights_from.path / "config.json"
    config = _read_json(config_path, weights_from.repo_id) if config_path.exists() else {}
    fields = GenerationConfig().to_dict().keys()
    return RepoGeneration(None, {k: v for k, v in config.items() if k in fields})


#: What a control token looks like: markup that no word is written as (`</s>`, `<eos>`, `<|eot_id|>`,
#: `<end_of_turn>`, `[PAD]`, `[SEP]`). The tokenizer's files are the repo's, so "special" alone
#: proves nothing: declared special (`extra_special_tokens`, `additional_special_tokens`), an
#: ordinary word would be dropped from every completion by `skip_special_tokens`, or end it.
CONTROL_TOKEN = re.compile(r"<[^<>\s]+>|\[[A-Za-z_]+\]")


def special_tokens(tokenizer: Any) -> dict[int, str]:
    """Every special token of the tokenizer, id -> text: its named ones (bos, eos, pad, unk, ...,
    and the extra ones) and the added tokens marked special."""
    found: dict[int, str] = {}
    for text in getattr(tokenizer, "all_special_tokens", None) or ():
        token_id = tokenizer.convert_tokens_to_ids(text)
        if _is_id(token_id):
            found[token_id] = str(text)
    for token_id, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False) and _is_id(token_id):
            found[token_id] = str(getattr(added, "content", added))
    return found


def _token_ids(declared: dict[str, Any], model_config: Any, tokenizer: Any) -> tuple[TokenIds, tuple[Any, ...]]:
    """The special token ids generation uses, and the declared end-of-text ids it leaves out.

    The tokenizer's own end-of-text token ends a completion (the paper passes
    `eos_token_id=tokenizer.eos_token_id`); the repo's further ids (Llama 3's <|eom_id|>, Gemma's
    <end_of_turn>) do too. Each only when it is a control token (CONTROL_TOKEN): an ordinary word
    declared as end of text, or made special, would cut every completion before that word.
    """
    text_config = model_config.get_text_config(decoder=True) if hasattr(model_config, "get_text_config") else None
    raw = declared.get("eos_token_id", getattr(text_config, "eos_token_id", None))
    candidates = raw if isinstance(raw, list) else [] if raw is None else [raw]
    control = frozenset(i for i, text in special_tokens(tokenizer).items() if CONTROL_TOKEN.fullmatch(text))
    eos = [i for i in candidates if _is_id(i) and i in control]
    ignored = tuple(i for i in candidates if i not in eos)
    if tokenizer.eos_token_id in control and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    eos = list(dict.fromkeys(eos))
    pad = tokenizer.pad_token_id if _is_id(tokenizer.pad_token_id) else (eos[0] if eos else None)
    bos = declared.get("bos_token_id", getattr(text_config, "bos_token_id", None))
    if not _is_id(bos):
        bos = tokenizer.bos_token_id if _is_id(tokenizer.bos_token_id) else None
    return TokenIds(tuple(eos), pad, bos, control), ignored


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _apply_adapter(model: Any, fetched: FetchedModel) -> Any:
    """The adapter onto its base; an adapter whose file lacks some of its tensors fails.

    peft does not return its loading result from `PeftModel.from_pretrained`; it warns instead,
    with the missing adapter keys only (peft 0.21, peft_model.py `from_pretrained`: "Found missing
    adapter keys while loading the checkpoint: ..."; `load_adapter` has already filtered the
    base model's keys out). A missing LoRA matrix would be left at its initial value, which makes
    the adapter a no-op or noise: the audit would measure the base, or nothing.
    """
    from peft import PeftModel

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            adapted = PeftModel.from_pretrained(model, str(fetched.path), is_trainable=False)
        except Exception as err:
            raise ModelFailed(
                f"adapter {fetched.repo_id} does not fit its base {fetched.base_repo}: {err}", code="bad_adapter"
            ) from None
    missing = [str(w.message) for w in caught if "missing adapter keys" in str(w.message)]
    if missing:
        raise ModelFailed(
            f"adapter {fetched.repo_id}@{fetched.sha[:12]} lacks some of its weights: {missing[0][:300]}",
            hint="its adapter file is incomplete; nothing to audit until the uploader pushes the tensors",
            code="missing_weights",
        )
    return adapted


def compute_dtype(device: str) -> Any:
    """bfloat16 on a GPU, float32 on a CPU (where bfloat16 matmuls are slow or missing)."""
    import torch

    return torch.bfloat16 if device == "cuda" else torch.float32


def torch_dtype(name: str | None, device: str) -> Any:
    """The torch dtype named (`float16`, `bfloat16`, `float32`), else the device's compute dtype."""
    import torch

    return getattr(torch, name) if name else compute_dtype(device)


def _load_weights(
    fetched: FetchedModel, settings: AuditSettings, *, quantization: str, device: str, dtype: str | None = None
) -> Any:
    """The model's weights; any parameter the checkpoint leaves uninitialised fails the audit.

    transformers fills a parameter the checkpoint lacks with random values and only logs it; with
    `output_loading_info=True` it returns the names (transformers 5.24, modeling_utils.py
    `from_pretrained`: "a dictionary containing missing keys, unexpected keys and error
    messages"). Weights tied to another (an `lm_head` tied to the embeddings) are not missing: tying
    takes them out of the set (`PreTrainedModel.tie_weights`: `missing_keys.discard(...)`), as do
    the model class's own `_keys_to_ignore_on_load_missing` (`_adjust_missing_and_unexpected_keys`).
    A safetensors file with no tensors (a valid header with an empty table) lacks every key.
    """
    from transformers import AutoModelForCausalLM, GenerationConfig

    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            str(fetched.path),
            # A repo that ships quantized weights keeps its own method (recorded as "pre-<method>").
            quantization_config=bitsandbytes_config(quantization, compute_dtype(device)),
            device_map="auto" if device == "cuda" else {"": "cpu"},
            dtype=torch_dtype(dtype, device),
            use_safetensors=not settings.allow_pickle or None,
            # transformers 5's default too (modeling_utils.load_state_dict): a .bin is unpickled with
            # torch.load(weights_only=True), which builds tensors and plain containers only.
            weights_only=True,
            trust_remote_code=settings.trust_remote_code,
            # Given a config, transformers does not read the repo's generation_config.json at all
            # (5.24, generation/utils.py `adjust_generation_fn`), so a malformed one cannot fail the load.
            generation_config=GenerationConfig(),
            output_loading_info=True,
        )
    except Exception as err:
        raise _explain_load_error(fetched, err) from None
    model, info = loaded
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        where = f"{fetched.repo_id}@{fetched.sha[:12]}"
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelFailed(
            f"the weights of {where} leave {len(missing)} parameters uninitialised ({shown}):"
            " the model would run on random values",
            hint="the checkpoint is incomplete (or empty); nothing to audit until the uploader pushes the weights",
            code="missing_weights",
        )
    return model


def _load_tokenizer(fetched: FetchedModel, base: FetchedModel | None) -> Any:
    from transformers import AutoTokenizer

    for source in (fetched, base):
        if source is None:
            continue
        present = {p.name for p in source.path.rglob("*")}
        if not any(name in present for name in TOKENIZER_FILES):
            continue
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(source.path), trust_remote_code=False)
        except Exception as err:
            raise ModelFailed(
                f"the tokenizer of {source.repo_id}@{source.sha[:12]} does not load: {err}", code="no_tokenizer"
            ) from None
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    raise ModelFailed(
        f"{fetched.repo_id}@{fetched.sha[:12]} has no tokenizer files ({', '.join(TOKENIZER_FILES)})",
        hint="the uploader must add the tokenizer; the auditor does not guess one",
        code="no_tokenizer",
    )


def _explain_load_error(fetched: FetchedModel, err: Exception) -> ModelFailed:
    text = str(err)
    where = f"{fetched.repo_id}@{fetched.sha[:12]}"
    if "SafetensorError" in type(err).__name__ or "deserializ" in text or "header" in text.lower():
        return ModelFailed(
            f"the weights of {where} are corrupt or truncated: {text[:200]}",
            code="corrupt",
            hint="nothing to do until the uploader pushes a fixed commit",
        )
    if "does not recognize this architecture" in text or ("model type" in text and "recogni" in text):
        import transformers

        return ModelFailed(
            f"the architecture of {where} is not supported by transformers {transformers.__version__}",
            hint="upgrade transformers, or skip this model",
            code="unsupported",
        )
    return ModelFailed(f"{where} does not load: {type(err).__name__}: {text[:300]}", code="load")


def _read_json(path: Path, repo_id: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFailed(f"{path.name} of {repo_id} is not valid JSON: {err}", code="bad_json") from None
    if not isinstance(data, dict):
        raise ModelFailed(f"{path.name} of {repo_id} is not a JSON object", code="bad_json")
    return data
