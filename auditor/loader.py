"""Fetching a model at a pinned commit and loading it, quantized, for generation.

The one home of torch, transformers, bitsandbytes and peft in the project (with generation.py).
Safety first: only safetensors weights are loaded unless `allow_pickle` is set (pickle files run
code when opened), and repos that ship their own modelling code are refused unless
`trust_remote_code` is set. Everything a person must act on becomes a `ModelSkipped` or
`ModelFailed` with a reason, which the audit stores as a row.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.config import AuditSettings
from auditor.errors import ModelFailed, ModelSkipped
from auditor.hubfiles import RepoFiles, download, list_repo_files

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
    download_bytes: int
    seconds: float


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    quantization: str
    device: str
    chat_template_hash: str | None
    base: FetchedModel | None
    seconds: float


def resolve_device(setting: str) -> str:
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_quantization(setting: str, device: str) -> str:
    """`auto` is nf4 on a GPU (the memory win is what lets big models fit) and none on a CPU."""
    if setting != "auto":
        return setting
    return "nf4" if device == "cuda" else "none"


def fetch_model(
    repo_id: str, revision: str | None, settings: AuditSettings, *, endpoint: str, listing: RepoFiles | None = None
) -> FetchedModel:
    """Download what loading needs of `repo_id` at `revision`, after the safety and size checks.

    Only top-level files count: a full model with `lora/adapter_config.json` or old checkpoints in
    subfolders is neither an adapter nor charged for those files.
    """
    started = time.monotonic()
    repo = listing or list_repo_files(repo_id, revision, endpoint=endpoint)
    where = f"{repo_id}@{repo.sha[:12]}"
    top = [p for p in repo.files if "/" not in p]
    safetensors = [p for p in top if p.endswith(".safetensors")]
    pickles = [p for p in top if p.endswith(PICKLE_SUFFIXES)]
    is_adapter = "adapter_config.json" in top

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
    wanted = [p for p in top if p in SUPPORT_FILES] + weights
    if settings.trust_remote_code:
        wanted += [p for p in top if p.endswith(".py")]  # the repo's own modelling code
    size = sum(repo.files[p] for p in wanted)
    cap = int(settings.max_download_gb * 1e9)
    if size > cap:
        raise ModelSkipped(
            f"{where} needs {size / 1e9:.1f} GB of downloads, above the cap of {settings.max_download_gb:g} GB",
            hint="raise [audit] max_download_gb if the machine has room",
            code="too_large",
        )
    path = download(repo, wanted, endpoint=endpoint, cache_dir=settings.cache_dir)

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
    if is_adapter:
        adapter = _read_json(path / "adapter_config.json", repo_id)
        base_repo = adapter.get("base_model_name_or_path")
        if not isinstance(base_repo, str) or not base_repo:
            raise ModelFailed(
                f"adapter {repo_id} does not name its base model in adapter_config.json", code="bad_adapter"
            )
    elif not (path / "config.json").exists():
        raise ModelFailed(f"{where} has no config.json", hint="the repo is incomplete", code="no_config")
    return FetchedModel(
        repo_id, repo.sha, path, "adapter" if is_adapter else "model", base_repo, size, time.monotonic() - started
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


def load_model(
    fetched: FetchedModel, settings: AuditSettings, *, quantization: str, device: str, base: FetchedModel | None = None
) -> LoadedModel:
    """Load weights (quantized as asked) and the tokenizer; adapters are applied onto `base`."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    started = time.monotonic()
    weights_from = base if fetched.kind == "adapter" else fetched
    if weights_from is None:
        raise ModelFailed(f"adapter {fetched.repo_id} needs its base model {fetched.base_repo}", code="bad_adapter")
    tokenizer = _load_tokenizer(fetched, base)
    model = _load_weights(weights_from, settings, quantization=quantization, device=device)
    if fetched.kind == "adapter":
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(fetched.path), is_trainable=False)
        except Exception as err:
            raise ModelFailed(
                f"adapter {fetched.repo_id} does not fit its base {fetched.base_repo}: {err}", code="bad_adapter"
            ) from None
    model.eval()
    template = getattr(tokenizer, "chat_template", None)
    template_hash = hashlib.sha256(template.encode()).hexdigest()[:16] if isinstance(template, str) else None
    return LoadedModel(model, tokenizer, quantization, device, template_hash, base, time.monotonic() - started)


def compute_dtype(device: str) -> Any:
    """bfloat16 on a GPU, float32 on a CPU (where bfloat16 matmuls are slow or missing)."""
    import torch

    return torch.bfloat16 if device == "cuda" else torch.float32


def quantization_config(quantization: str, device: str) -> Any:
    """The BitsAndBytesConfig for a quantization mode (None for `none`)."""
    if quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype(device)
        )
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"unknown quantization {quantization!r}")


def _load_weights(fetched: FetchedModel, settings: AuditSettings, *, quantization: str, device: str) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            str(fetched.path),
            # A repo that ships quantized weights keeps its own method (recorded as "pre-<method>").
            quantization_config=None if quantization.startswith("pre-") else quantization_config(quantization, device),
            device_map="auto" if device == "cuda" else {"": "cpu"},
            dtype=compute_dtype(device),
            use_safetensors=not settings.allow_pickle or None,
            trust_remote_code=settings.trust_remote_code,
        )
    except Exception as err:
        raise _explain_load_error(fetched, err) from None


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
