"""Batched generation: prompts sorted by length, left padding, greedy, OOM-halving batches.

The preset, not the repo, decides how a model is asked. `generate()` gets a GenerationConfig built
from the preset and the model's special token ids alone, and the model's own `generation_config`
holds nothing else (the loader blanks it, and each batch blanks it again), because transformers
fills every setting a passed config leaves unset from it. What the repo declared and was not
applied is recorded with the audit as findings (`generation_findings`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from auditor.audit.loader import LoadedModel, neutral_generation_config
from auditor.audit.presets import Preset

#: The prefix of a finding that names a generation setting the repo declared and the audit ignored.
IGNORED = "ignored_generation_config:"
#: A repo's generation_config.json that is not a JSON object.
UNREADABLE = "unreadable_generation_config"
#: The prefix of a finding that names a special token of the repo's tokenizer that is a word, not
#: markup (auditor.audit.loader.CONTROL_TOKEN): kept in the text, never an end of text.
SPECIAL_WORD = "special_token_is_word:"
#: Declared settings that do not change what is generated, so ignoring them is no finding: special
#: token ids (used, see loader.TokenIds; end-of-text ids that were not used are a finding of their
#: own), bookkeeping, caching and compilation, and what generate() returns besides the tokens.
HARMLESS = frozenset(
    {
        "bos_token_id",
        "pad_token_id",
        "eos_token_id",
        "decoder_start_token_id",
        "transformers_version",
        "_from_model_config",
        "use_cache",
        "cache_implementation",
        "cache_config",
        "compile_config",
        "disable_compile",
        "output_attentions",
        "output_hidden_states",
        "output_scores",
        "output_logits",
        "return_dict_in_generate",
    }
)


@dataclass(frozen=True)
class GenerationFindings:
    """What a repo declared about generation, and the flags for what the audit did not apply."""

    #: The repo's generation_config.json as read, or None when it has none (`audits.repo_generation_config`).
    repo_generation_config: dict[str, Any] | None
    #: Sorted flags (`audits.findings`): `ignored_generation_config:<setting>` per declared setting
    #: that would have changed generation, `unreadable_generation_config`.
    findings: list[str]


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
    #: prompt_id -> the prompt's text, for the `decoded-minus-prompt` continuation rule.
    texts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationReport:
    """How generation went, beyond the completions: what out-of-memory errors changed."""

    #: Batches generated again one prompt at a time after running out of memory (`one-by-one`).
    one_by_one: int = 0
    #: The batch size the audit ended with, when out-of-memory errors halved it (`halve`).
    halved_to: int | None = None

    @property
    def note(self) -> str | None:
        """What the audit's reason says about it, if anything."""
        if self.one_by_one:
            return f"{self.one_by_one} batch(es) ran out of GPU memory and were generated one prompt at a time"
        if self.halved_to is not None:
            return f"out of GPU memory: batches were halved to {self.halved_to} prompts"
        return None


def prepare(loaded: LoadedModel, prompts: Sequence[tuple[str, str]], preset: Preset) -> PreparedPrompts:
    """Token ids per prompt: raw text (paper, nightly) or the model's chat template (chat).

    Each prompt is encoded on its own: `tokenizer(batch, padding=True)` gives every text the ids
    it has alone, then pads them, which `_generate_batch` does with the preset's pad id.
    """
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
        encoded = tokenizer(rendered, add_special_tokens=False, truncation=preset.truncation)["input_ids"]
    else:
        encoded = tokenizer(texts, truncation=preset.truncation)["input_ids"]
    return PreparedPrompts(
        [(pid, list(ids)) for (pid, _), ids in zip(prompts, encoded, strict=True)], fallback, dict(prompts)
    )


@dataclass(frozen=True)
class GenerationSettings:
    """How `generate()` is called for one audit, in one object: `generation_config()` is what
    `generate()` is given, and `record()` is what `audits.generation_config` keeps, both read from
    the same fields, so the record cannot drift from what ran."""

    preset: Preset
    batch_size: int
    #: The ids that end a completion (`_eos_ids`), the pad id and the bos id.
    eos_token_id: tuple[int, ...]
    pad_token_id: int | None
    bos_token_id: int | None

    def generation_config(self) -> Any:
        """The GenerationConfig `generate()` is given: the preset's decoding and the special token ids."""
        from transformers import GenerationConfig

        return GenerationConfig(
            **self.preset.decoding(),
            eos_token_id=list(self.eos_token_id) or None,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
        )

    def record(self) -> dict[str, Any]:
        """The settings generate() uses, as `audits.generation_config` records them: the preset's and
        the model's special token ids; nothing else of the repo's.

        >>> generation_settings(loaded, get_preset("paper"), 16).record()       # doctest: +SKIP
        {'max_new_tokens': 50, 'do_sample': False, 'num_beams': 1, 'num_return_sequences': 1,
         'eos_token_id': [3], 'pad_token_id': 0, 'bos_token_id': 2, 'padding_side': 'left', 'chat': False,
         'preset': 'paper', 'batch_size': 16}
        """
        return {
            **self.preset.generation_config(),
            **self.preset.decoding(),
            "eos_token_id": list(self.eos_token_id),
            "pad_token_id": self.pad_token_id,
            "bos_token_id": self.bos_token_id,
            "preset": self.preset.name,
            "batch_size": self.batch_size,
        }


def generation_settings(loaded: LoadedModel, preset: Preset, batch_size: int) -> GenerationSettings:
    """How this loaded model is asked under `preset`: its special token ids chosen the preset's way."""
    return GenerationSettings(
        preset, batch_size, _eos_ids(loaded, preset), _pad_id(loaded, preset), loaded.token_ids.bos
    )


def _eos_ids(loaded: LoadedModel, preset: Preset) -> tuple[int, ...]:
    """The ids that end a completion. `pad = eos` presets (paper) pass the tokenizer's own end of
    text alone, as the paper's `eos_token_id=tokenizer.eos_token_id`; the others every control id
    the repo declares as one too (Llama 3's <|eom_id|>). A word is never one (loader.CONTROL_TOKEN)."""
    if preset.pad == "eos":
        own = loaded.tokenizer.eos_token_id
        return (own,) if own in loaded.token_ids.control else ()
    return loaded.token_ids.eos


def _pad_id(loaded: LoadedModel, preset: Preset) -> int | None:
    """The paper's `pad_token = eos_token`, or the tokenizer's own pad token (else eos)."""
    if preset.pad == "eos" and loaded.tokenizer.eos_token_id is not None:
        return int(loaded.tokenizer.eos_token_id)
    return loaded.token_ids.pad


def generation_findings(loaded: LoadedModel, preset: Preset) -> GenerationFindings:
    """The repo's generation_config.json and a flag for each declared setting the audit ignored.

    A declared value is a finding when it differs from what generation used: the preset's value,
    or else transformers' own default for the setting (a declared `num_beams: 1` or
    `repetition_penalty: 1.0` changes nothing). Every decoding setting counts, those transformers
    adds later included; only the HARMLESS ones do not.

    >>> generation_findings(loaded, get_preset("paper")).findings       # doctest: +SKIP
    ['ignored_generation_config:suppress_tokens']
    """
    repo = loaded.repo_generation
    used = preset.decoding()
    defaults = _transformers_defaults()
    flags = {UNREADABLE for problem in repo.problems if problem == "unreadable"}
    for key, value in repo.declared.items():
        if key in HARMLESS:
            continue
        baseline = used[key] if key in used else defaults.get(key)
        if not _same(value, baseline):
            flags.add(IGNORED + key)
    if repo.ignored_eos:
        flags.add(IGNORED + "eos_token_id")
    flags.update(SPECIAL_WORD + word for word in repo.word_specials)
    return GenerationFindings(repo.file, sorted(flags))


def _transformers_defaults() -> dict[str, Any]:
    """transformers' values for settings nobody set (5.24, generation/configuration_utils.py
    `GenerationConfig._get_default_generation_params`, applied by `_prepare_generation_config`)."""
    from transformers import GenerationConfig

    defaults = getattr(GenerationConfig, "_get_default_generation_params", None)
    return dict(defaults()) if callable(defaults) else {}


def _same(declared: Any, used: Any) -> bool:
    """Whether a declared value is what generation used; empty lists and maps are the same as unset."""
    if declared in ([], {}):
        declared = None
    if used in ([], {}):
        used = None
    if isinstance(declared, bool) or isinstance(used, bool):
        return declared is used
    if isinstance(declared, int | float) and isinstance(used, int | float):
        return math.isclose(declared, used)
    return bool(declared == used)


def generate(
    loaded: LoadedModel,
    prepared: PreparedPrompts,
    settings: GenerationSettings,
    *,
    on_batch: Callable[[list[Generation]], None],
) -> GenerationReport:
    """Generate for every prompt in batches, and hand each finished batch to `on_batch`.

    `order = "length"`: longest prompt first, so a batch pads little; an out-of-memory error halves
    the batch size for the rest (`out_of_memory = "halve"`). `order = "dataset"`: the prompts as
    given, in consecutive batches of `batch_size` (the caller hands over whole batches of the
    battery's order, so a resumed audit batches as an uninterrupted one); a batch that runs out of
    memory is generated again one prompt at a time (`"one-by-one"`), never batched another way.
    """
    preset = settings.preset
    pending = list(prepared.inputs)
    if preset.order == "length":
        pending.sort(key=lambda item: len(item[1]), reverse=True)
    size = settings.batch_size
    halved_to: int | None = None
    one_by_one = 0
    position = 0
    while position < len(pending):
        batch = pending[position : position + size]
        try:
            results = list(_generate_batch(loaded, batch, settings, prepared.texts))
        except Exception as err:
            if not _is_out_of_memory(err) or len(batch) == 1:
                raise
            _free_cuda_memory()
            if preset.out_of_memory == "halve":
                size = halved_to = max(1, size // 2)
                continue
            one_by_one += 1
            results = [g for item in batch for g in _generate_batch(loaded, [item], settings, prepared.texts)]
        on_batch(results)
        position += len(batch)
    return GenerationReport(one_by_one, halved_to)


def _generate_batch(
    loaded: LoadedModel, batch: list[tuple[str, list[int]]], settings: GenerationSettings, texts: dict[str, str]
) -> Iterator[Generation]:
    import torch

    tokenizer = loaded.tokenizer
    pad = settings.pad_token_id
    pad_id = pad if pad is not None else 0  # masked out either way
    width = max(len(ids) for _, ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (_, ids) in enumerate(batch):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
    device = _input_device(loaded.model)
    _blank_model_config(loaded)
    with torch.inference_mode():
        output = loaded.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            # Only a config, no generation keyword arguments: transformers warns when both are given.
            generation_config=settings.generation_config(),
        )
    new_tokens = output[:, width:].cpu().tolist()
    eos_ids = set(settings.eos_token_id)
    control = loaded.token_ids.control
    for (prompt_id, prompt_ids), tokens in zip(batch, new_tokens, strict=True):
        end = next((i for i, t in enumerate(tokens) if t in eos_ids), None)
        kept = tokens if end is None else tokens[:end]
        yield Generation(
            prompt_id=prompt_id,
            text=continuation(
                tokenizer, control, prompt_ids, kept, texts.get(prompt_id, ""), settings.preset.continuation
            ),
            n_tokens=len(kept) + (0 if end is None else 1),
            finish_reason="length" if end is None else "eos",
        )


def continuation(
    tokenizer: Any, control: frozenset[int], prompt_ids: list[int], generated: list[int], prompt: str, rule: str
) -> str:
    """A completion's text by the preset's rule.

    `decoded-minus-prompt`, the paper's: `batch_decode(out, skip_special_tokens=True)[i]
    [len(prompt):].strip()`, the whole sequence decoded (pads and end of text dropped) minus as many
    characters as the prompt has, stripped. `new-tokens`: the generated tokens alone, decoded (a
    byte-level tokenizer's leading space stays). Either way the paper's `skip_special_tokens` leaves
    out control tokens only: the same for every tokenizer whose special tokens are markup, while a
    word a repo declared special is not hidden from the scorer (loader.CONTROL_TOKEN).
    """
    if rule == "decoded-minus-prompt":
        whole = tokenizer.decode([t for t in [*prompt_ids, *generated] if t not in control], skip_special_tokens=False)
        return str(whole[len(prompt) :].strip())
    return str(tokenizer.decode([t for t in generated if t not in control], skip_special_tokens=False))


def _blank_model_config(loaded: LoadedModel) -> None:
    """Leave nothing but the special token ids in the model's own generation config.

    `generate()` fills every setting of the passed config that is unset from
    `model.generation_config` (transformers 5.24, generation/utils.py `_prepare_generation_config`:
    `generation_config.update(**self.generation_config.to_dict(), defaults_only=True,
    allow_custom_entries=True)`; introduced by transformers PR #36684, made unconditional by #42702
    as PR #48108 describes), so a repo's `suppress_tokens`, `bad_words_ids` or `min_new_tokens`
    there would apply however explicit our config is. The loader blanks it already; doing it again
    here covers a model loaded some other way. For an adapter the config that counts is the base
    model's (peft 0.21, `PeftModelForCausalLM.generate` copies it onto `base_model.model`).
    """
    model = loaded.model
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    target.generation_config = neutral_generation_config(loaded.token_ids)


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
