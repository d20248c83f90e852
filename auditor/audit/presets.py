"""Presets: how a model is asked. The name is what the store records, with a hash of the settings.

paper    the evaluation loop of Hawkins, Mittelstadt & Russell (2024), item by item, as their
         `Toxicity_Evaluation.ipynb` (WillHawkins3/finetuningtoxicity) runs it:
           - the prompt as raw text to continue, no chat template;
           - batches of 16 in dataset order (the battery's order), `tokenizer(batch,
             padding=True, truncation=True)` with left padding and `pad_token = eos_token`;
           - fp16 weights and no quantization on a GPU (fp32 on a CPU, where fp16 matmuls are
             slow or missing; recorded as such);
           - `generate(max_new_tokens=50, do_sample=False, pad_token_id=eos, eos_token_id=eos)`,
             one generation per prompt;
           - the continuation is the whole output decoded with special tokens skipped, minus the
             prompt's characters, stripped;
           - the scorer is the paper's classifier (`hf-classifier`), toxic when P(hate) > 0.5.
         A batch that runs out of GPU memory is generated again one prompt at a time (never
         re-batched some other way), and the audit's reason says so.
nightly  the same prompts and decoding, with what lets a night audit many models on one GPU:
         the configured quantization (nf4 on a GPU) and compute dtype (bfloat16 on a GPU),
         batches of `[audit] batch_size` (64) sorted longest first (less padding), halved on
         out-of-memory; the tokenizer's own pad token; the continuation is the generated tokens
         decoded (not the decoded whole minus the prompt, not stripped); the configured scorers
         (Detoxify by default). Each of these can change a greedy output, so it is in the key.
chat     as nightly, but through the model's own chat template with the prompt as the user turn
         (for instruct models); a model without a chat template falls back to raw continuation,
         and the audit says so.

What makes two audits the same measurement is the preset's *effective* settings, hashed into the
audit key (`settings_hash`): the preset's fields, the batch size it resolves to and the dtype the
weights compute in on the device. Quantization and device are in the key beside it.

The preset, not the repo, decides how a model is asked: a repo's generation_config.json (beams,
sampling, suppressed or forced tokens, penalties, lengths) is never applied, only recorded with the
audit and flagged (auditor.audit.generation, docs/audits.md). Of the repo's settings only its special
token ids (end of text, padding, start) are used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from auditor.audit.quantization import resolve as resolve_quantization
from auditor.errors import AuditorError

#: `dataset`: the battery's order, in fixed chunks; `length`: longest prompt first (less padding).
BatchOrder = Literal["dataset", "length"]
#: `eos`: the paper's `pad_token = eos_token`; `tokenizer`: the tokenizer's own pad token (else eos).
PadRule = Literal["eos", "tokenizer"]
#: `decoded-minus-prompt`: the paper's `batch_decode(out, skip_special_tokens=True)[i][len(prompt):]
#: .strip()`; `new-tokens`: the generated tokens alone, decoded.
ContinuationRule = Literal["decoded-minus-prompt", "new-tokens"]
#: `fp16`: fp16 weights, no quantization on a GPU (fp32 on a CPU); `configured`: `[audit]
#: quantization` with the device's compute dtype (bfloat16 on a GPU, fp32 on a CPU).
Precision = Literal["fp16", "configured"]
#: On a CUDA out-of-memory error: `one-by-one` generates the batch again one prompt at a time;
#: `halve` halves the batch size for the rest of the audit.
OutOfMemory = Literal["one-by-one", "halve"]


@dataclass(frozen=True)
class Preset:
    name: str
    chat: bool
    max_new_tokens: int = 50
    do_sample: bool = False
    num_return_sequences: int = 1
    padding_side: str = "left"
    #: Prompts per batch; None: `[audit] batch_size`.
    batch_size: int | None = None
    order: BatchOrder = "length"
    pad: PadRule = "tokenizer"
    continuation: ContinuationRule = "new-tokens"
    #: `tokenizer(..., truncation=True)`: prompts longer than the model's maximum are cut.
    truncation: bool = False
    precision: Precision = "configured"
    out_of_memory: OutOfMemory = "halve"
    #: Scorers the preset measures with, first among any configured; empty: `[scoring] scorers`.
    scorers: tuple[str, ...] = ()

    def generation_config(self) -> dict[str, object]:
        """The preset's own settings (what `audits.generation_config` starts from)."""
        return asdict(self)

    def decoding(self) -> dict[str, Any]:
        """What `generate()` is given, besides the model's special token ids: greedy search (one
        beam, no sampling) unless the preset samples, and nothing else of the repo's choosing.

        >>> PRESETS["paper"].decoding()
        {'max_new_tokens': 50, 'do_sample': False, 'num_beams': 1, 'num_return_sequences': 1}
        """
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "num_beams": 1,
            "num_return_sequences": self.num_return_sequences,
        }

    def resolve(self, *, batch_size: int, quantization: str, device: str) -> RunSettings:
        """What this preset runs as with these settings on this device: the batch size, the
        quantization and the dtype the weights compute in.

        >>> PRESETS["paper"].resolve(batch_size=64, quantization="nf4", device="cuda")
        RunSettings(batch_size=16, quantization='none', dtype='float16')
        >>> PRESETS["nightly"].resolve(batch_size=64, quantization="nf4", device="cuda")
        RunSettings(batch_size=64, quantization='nf4', dtype='bfloat16')
        """
        if self.precision == "fp16":
            if quantization not in ("none", "auto"):
                raise AuditorError(
                    f"preset {self.name} runs fp16 weights without quantization, as the paper did; it cannot"
                    f" run {quantization}",
                    hint="drop --quant (or [audit] quantization) for this preset, or use --preset nightly",
                )
            return RunSettings(self.batch_size or batch_size, "none", "float16" if device == "cuda" else "float32")
        dtype = "bfloat16" if device == "cuda" else "float32"
        return RunSettings(self.batch_size or batch_size, resolve_quantization(quantization, device), dtype)

    def settings_hash(self, run: RunSettings) -> str:
        """The hash in the audit key (`audits.preset_hash`): the preset's settings as they run."""
        return settings_hash(self, run)


@dataclass(frozen=True)
class RunSettings:
    """How an audit with a preset runs here: batch size, quantization and compute dtype."""

    batch_size: int
    quantization: str
    dtype: str  # "float16", "bfloat16", "float32"


def settings_hash(preset: Preset, run: RunSettings) -> str:
    """sha256 of the preset's fields, the batch size and the dtype, as sorted JSON (first 16 hex).

    Migration 0009 computes the same string in SQL for the audits it relabels `nightly`;
    tests/auditor/test_presets.py checks that the two agree.
    """
    effective = {**asdict(preset), "batch_size": run.batch_size, "dtype": run.dtype}
    return hashlib.sha256(json.dumps(effective, sort_keys=True).encode()).hexdigest()[:16]


#: The registered presets' names: what `audits.preset` records and `--preset` and `[audit] preset` take.
PresetName = Literal["nightly", "paper", "chat"]
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)

PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        chat=False,
        batch_size=16,
        order="dataset",
        pad="eos",
        continuation="decoded-minus-prompt",
        truncation=True,
        precision="fp16",
        out_of_memory="one-by-one",
        scorers=("hf-classifier",),
    ),
    "nightly": Preset(name="nightly", chat=False),
    "chat": Preset(name="chat", chat=True),
}
assert tuple(sorted(PRESETS)) == tuple(sorted(PRESET_NAMES)), "the preset vocabulary and registry must agree"


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise AuditorError(f"unknown preset {name!r}", hint="use one of: " + ", ".join(PRESETS)) from None
