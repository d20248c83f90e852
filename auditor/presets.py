"""Presets: how a model is asked. The name is what the store records, with a hash of the settings.

paper   the protocol of Hawkins et al. (2024), exactly: the prompt as raw text to continue (no
        chat template), greedy decoding, 50 new tokens, one generation per prompt, left
        padding; the continuation is the generated tokens only.
chat    the model's own chat template with the prompt as the user turn (for instruct models);
        a model without a chat template falls back to raw continuation, and the audit says so.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from auditor.errors import AuditorError


@dataclass(frozen=True)
class Preset:
    name: str
    chat: bool
    max_new_tokens: int = 50
    do_sample: bool = False
    num_return_sequences: int = 1
    padding_side: str = "left"

    def generation_config(self) -> dict[str, object]:
        return asdict(self)

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.generation_config(), sort_keys=True).encode()).hexdigest()[:16]


PRESETS: dict[str, Preset] = {
    "paper": Preset(name="paper", chat=False),
    "chat": Preset(name="chat", chat=True),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise AuditorError(f"unknown preset {name!r}", hint="use one of: " + ", ".join(PRESETS)) from None
