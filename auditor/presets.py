"""Presets: how a model is asked. The name is what the store records, with a hash of the settings.

paper   the protocol of Hawkins et al. (2024), exactly: the prompt as raw text to continue (no
        chat template), greedy decoding, 50 new tokens, one generation per prompt, left
        padding; the continuation is the generated tokens only.
chat    the model's own chat template with the prompt as the user turn (for instruct models);
        a model without a chat template falls back to raw continuation, and the audit says so.

The preset, not the repo, decides how a model is asked: a repo's generation_config.json (beams,
sampling, suppressed or forced tokens, penalties, lengths) is never applied, only recorded with the
audit and flagged (auditor.generation, docs/audits.md). Of the repo's settings only its special
token ids (end of text, padding, start) are used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

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
        """The preset's settings, as hashed into `config_hash` (so an audit's key names them)."""
        return asdict(self)

    def decoding(self) -> dict[str, Any]:
        """What `generate()` is given, besides the model's special token ids: greedy search (one
        beam, no sampling) unless the preset samples, and nothing else of the repo's choosing.

        >>> PRESETS["paper"].decoding()
        {'max_new_tokens': 50, 'do_sample': False, 'num_beams': 1, 'num_return_sequences': 1}
        """
        # num_beams is implied by "greedy" rather than a field, so the preset's hash (and with it
        # the key of every stored audit) is what it was before it was spelled out here.
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "num_beams": 1,
            "num_return_sequences": self.num_return_sequences,
        }

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
