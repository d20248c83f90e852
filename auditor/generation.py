"""Batched generation: prompts sorted by length, left padding, greedy, OOM-halving batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from auditor.loader import LoadedModel
from auditor.presets import Preset


@dataclass(frozen=True)
class Generation:
    prompt_id: str
    text: str
    n_tokens: int
    finish_reason: str  # "eos" or "length"


@dataclass(frozen=True)
class PreparedPrompts:
    """Model inputs per prompt, and the chat-template fallback when one was needed."""

    inputs: list[tuple[str, list[int]]]
    fallback: str | None


def prepare(loaded: LoadedModel, prompts: Sequence[tuple[str, str]], preset: Preset) -> PreparedPrompts:
    """Token ids per prompt: raw text (paper) or the model's chat template (chat)."""
    tokenizer = loaded.tokenizer
    fallback = None
    use_chat = preset.chat and bool(getattr(tokenizer, "chat_template", None))
    if preset.chat and not use_chat:
        fallback = "the model has no chat template: prompts were given as raw text to continue"
    if not prompts:
        return PreparedPrompts([], fallback)
    texts = [text for _, text in prompts]
    if use_chat:
        rendered = [
            tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False)
            for t in texts
        ]
        encoded = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    else:
        encoded = tokenizer(texts)["input_ids"]
    return PreparedPrompts([(pid, list(ids)) for (pid, _), ids in zip(prompts, encoded, strict=True)], fallback)


def effective_generation_config(loaded: LoadedModel, preset: Preset) -> dict[str, Any]:
    """The settings generate() will use: the model's own defaults, overridden by the preset."""
    base = getattr(loaded.model, "generation_config", None)
    settings: dict[str, Any] = base.to_diff_dict() if base is not None else {}
    settings.pop("transformers_version", None)
    settings.update(
        max_new_tokens=preset.max_new_tokens,
        do_sample=preset.do_sample,
        num_return_sequences=preset.num_return_sequences,
        temperature=None,
        top_p=None,
        top_k=None,
        padding_side=preset.padding_side,
        chat=preset.chat,
        preset=preset.name,
    )
    return settings


def generate(
    loaded: LoadedModel,
    prepared: PreparedPrompts,
    preset: Preset,
    *,
    batch_size: int,
    on_batch: Callable[[list[Generation]], None],
) -> None:
    """Generate for every prompt, longest first, and hand each finished batch to `on_batch`."""
    pending = sorted(prepared.inputs, key=lambda item: len(item[1]), reverse=True)
    size = batch_size
    position = 0
    while position < len(pending):
        batch = pending[position : position + size]
        try:
            results = list(_generate_batch(loaded, batch, preset))
        except Exception as err:
            if _is_out_of_memory(err) and size > 1:
                _free_cuda_memory()
                size = max(1, size // 2)
                continue
            raise
        on_batch(results)
        position += len(batch)


def _generate_batch(loaded: LoadedModel, batch: list[tuple[str, list[int]]], preset: Preset) -> Iterator[Generation]:
    import torch

    tokenizer = loaded.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(ids) for _, ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (_, ids) in enumerate(batch):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
    device = _input_device(loaded.model)
    with torch.inference_mode():
        output = loaded.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=preset.max_new_tokens,
            do_sample=preset.do_sample,
            num_return_sequences=preset.num_return_sequences,
            pad_token_id=pad_id,
            temperature=None,
            top_p=None,
            top_k=None,
        )
    new_tokens = output[:, width:].cpu().tolist()
    eos_ids = _eos_ids(loaded)
    for (prompt_id, _), tokens in zip(batch, new_tokens, strict=True):
        end = next((i for i, t in enumerate(tokens) if t in eos_ids), None)
        kept = tokens if end is None else tokens[:end]
        yield Generation(
            prompt_id=prompt_id,
            text=tokenizer.decode(kept, skip_special_tokens=True),
            n_tokens=len(kept) + (0 if end is None else 1),
            finish_reason="length" if end is None else "eos",
        )


def _eos_ids(loaded: LoadedModel) -> set[int]:
    ids: set[int] = set()
    config = getattr(loaded.model, "generation_config", None)
    value = getattr(config, "eos_token_id", None) if config is not None else None
    if value is None:
        value = loaded.tokenizer.eos_token_id
    if isinstance(value, int):
        ids.add(value)
    elif isinstance(value, (list, tuple)):
        ids.update(v for v in value if isinstance(v, int))
    return ids


def _input_device(model: Any) -> Any:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model always has parameters
        return "cpu"


def _is_out_of_memory(err: Exception) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def _free_cuda_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
