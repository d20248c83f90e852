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
    #: prompt_id -> the prompt's text as the model is given it (its end, when it was truncated), for
    #: the `decoded-minus-prompt` continuation rule.
    texts: dict[str, str] = field(default_factory=dict)
    #: Prompts the model is given only part of: longer than `max_prompt_tokens`, or cut by a
    #: truncating preset at the tokenizer's `model_max_length` (`audits.n_truncated`).
    n_truncated: int = 0


@dataclass(frozen=True)
class GenerationReport:
    """How generation went, beyond the completions: what out-of-memory errors changed."""

    #: Batches generated again one prompt at a time after running out of memory (`one-by-one`).
    one_by_one: int = 0
    #: The batch size the audit ended with, when out-of-memory errors halved it (`halve`).
    halved_to: int | None = None
    #: Which memory ran out (`_memory_exhausted`): "GPU", "CPU" or both, in that order.
    memory: tuple[str, ...] = ("GPU",)

    @property
    def note(self) -> str | None:
        """What the audit's reason says about it, if anything."""
        which = " and ".join(self.memory)
        if self.one_by_one:
            return f"{self.one_by_one} batch(es) ran out of {which} memory and were generated one prompt at a time"
        if self.halved_to is not None:
            return f"out of {which} memory: batches were halved to {self.halved_to} prompts"
        return None


def prepare(
    loaded: LoadedModel, prompts: Sequence[tuple[str, str]], preset: Preset, *, max_prompt_tokens: int
) -> PreparedPrompts:
    """Token ids per prompt: raw text (paper, nightly) or the model's chat template (chat).

    Each prompt is encoded on its own: `tokenizer(batch, padding=True)` gives every text the ids
    it has alone, then pads them, which `_generate_batch` does with the preset's pad id.

    A prompt of more than `max_prompt_tokens` tokens (its own tokens, as the tokenizer splits it
    alone: a start token or a chat template's markup does not count) keeps its last
    `max_prompt_tokens`: the model continues the prompt's end. It is cut as text, at the start of
    a token, before the start token is added or the template renders it, so the template stays
    whole and the text the continuation rule removes is the text the model was given. A preset
    that truncates (`paper`: `truncation=True`) then also cuts at the tokenizer's
    `model_max_length`, as it always did. Both count in `n_truncated`.

    >>> prepare(loaded, [("p1", long_text)], get_preset("paper"), max_prompt_tokens=512).n_truncated  # doctest: +SKIP
    1
    """
    tokenizer = loaded.tokenizer
    fallback = None
    use_chat = preset.chat and bool(getattr(tokenizer, "chat_template", None))
    if preset.chat and not use_chat:
        fallback = "the model has no chat template: prompts were given as raw text to continue"
    if not prompts:
        return PreparedPrompts([], fallback)
    texts, cut = _keep_last_tokens(tokenizer, [text for _, text in prompts], max_prompt_tokens)
    if use_chat:
        given = [
            tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False)
            for t in texts
        ]
        options: dict[str, Any] = {"add_special_tokens": False}
    else:
        given, options = texts, {}
    encoded = tokenizer(given, truncation=preset.truncation, **options)["input_ids"]
    if preset.truncation:  # what the preset's own cut at `model_max_length` took off
        whole = tokenizer(given, truncation=False, **options)["input_ids"]
        cut |= {i for i, (kept, full) in enumerate(zip(encoded, whole, strict=True)) if len(kept) < len(full)}
    ids = [pid for pid, _ in prompts]
    return PreparedPrompts(
        [(pid, list(tokens)) for pid, tokens in zip(ids, encoded, strict=True)],
        fallback,
        dict(zip(ids, texts, strict=True)),
        len(cut),
    )


def _keep_last_tokens(tokenizer: Any, texts: list[str], limit: int) -> tuple[list[str], set[int]]:
    """Each text cut to its last `limit` tokens (as the tokenizer splits it alone), and the
    positions of those that were cut.

    The cut is made in the text, where its first kept token starts: the offsets a fast tokenizer
    maps each token to (`return_offsets_mapping`, transformers 5.24 tokenization_utils_base.py:
    "(char_start, char_end) for each token"; tokenizers' `Encoding.offsets`, into the original
    text even after normalization). A tokenizer without offsets gives the kept tokens decoded. The
    tail is encoded again to be sure (a word cut from its start may split into more tokens), and
    cut further when it is still over.
    """
    try:
        encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
    except (NotImplementedError, KeyError):  # a tokenizer without offsets (transformers' PythonBackend)
        encoded, offsets = tokenizer(texts, add_special_tokens=False), None
    kept, cut = list(texts), set()
    for i, ids in enumerate(encoded["input_ids"]):
        if len(ids) <= limit:
            continue
        cut.add(i)
        keep, tail = limit, ""
        while keep > 0:
            start = len(ids) - keep
            tail = texts[i][offsets[i][start][0] :] if offsets is not None else tokenizer.decode(ids[start:])
            over = len(tokenizer(tail, add_special_tokens=False)["input_ids"]) - limit
            if over <= 0:
                break
            keep, tail = keep - over, ""
        kept[i] = tail
    return kept, cut


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
    memory: set[str] = set()
    position = 0
    while position < len(pending):
        batch = pending[position : position + size]
        try:
            results = list(_generate_batch(loaded, batch, settings, prepared.texts))
        except Exception as err:  # MemoryError included: it is an Exception
            which = _memory_exhausted(err)
            if which is None or len(batch) == 1:
                raise
            memory.add(which)
            _free_cuda_memory()
            if preset.out_of_memory == "halve":
                size = halved_to = max(1, size // 2)
                continue
            one_by_one += 1
            results = [g for item in batch for g in _generate_batch(loaded, [item], settings, prepared.texts)]
        on_batch(results)
        position += len(batch)
    return GenerationReport(one_by_one, halved_to, tuple(k for k in ("GPU", "CPU") if k in memory) or ("GPU",))


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


#: What torch's CPU allocator says when an allocation fails: a RuntimeError (c10::Error) from
#: pytorch/pytorch c10/core/impl/alloc_cpu.cpp `alloc_cpu`, "DefaultCPUAllocator: can't allocate
#: memory: you tried to allocate {nbytes} bytes. Error code {errno} ({strerror})"; the installed
#: torch 2.13's libc10.so holds the string, and `torch.empty(10**13)` raises "[enforce fail at
#: alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate
#: 40000000000000 bytes. Error code 12 (Cannot allocate memory)". accelerate's
#: `should_reduce_batch_size` (src/accelerate/utils/memory.py) looks for the same words.
CPU_ALLOCATION_FAILED = "DefaultCPUAllocator: can't allocate memory"


def _memory_exhausted(err: BaseException) -> str | None:
    """Which memory an error says ran out: "GPU" (torch.cuda.OutOfMemoryError, "CUDA out of
    memory", "CUDA error: out of memory"), "CPU" (torch's CPU allocator, Python's MemoryError),
    or None for any other error."""
    import torch

    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower():
        return "GPU"
    if isinstance(err, MemoryError) or (isinstance(err, RuntimeError) and CPU_ALLOCATION_FAILED in str(err)):
        return "CPU"
    return None


def is_out_of_memory(err: BaseException) -> bool:
    """Whether a batch failed for want of memory, GPU or CPU: halving it may let it through."""
    return _memory_exhausted(err) is not None


def _free_cuda_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
