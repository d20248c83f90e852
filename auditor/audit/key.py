"""What an audit is of, and when two audits are comparable.

`AuditKey` is the resume key: the same model commit asked the same way is the same generation.
Its `way` (battery, preset and its settings hash, quantization, device) is the one comparability
rule: two audits are compared (drift, the model report's ancestors, the tree) exactly when their
ways match. `audits.way` stores it, and migration 0010 computes the same hash in SQL for audits
stored before it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class AuditKey:
    """What makes two audits the same generation: the same model commit, battery, way of asking
    (preset and its settings), quantization and kind of device. Scorers are not part of it: every
    scorer scores the same completions (`audit_scorers`)."""

    repo_id: str
    sha: str | None
    battery_id: str
    preset: str
    preset_hash: str
    quantization: str
    device: str

    @property
    def way(self) -> str:
        """How the model was audited, as one id: the key without the model (`audits.way`; migration
        0010 computes the same in SQL). Two audits are comparable exactly when their ways match.

        >>> one = AuditKey("a/b", None, "b1", "nightly", "h", "none", "cpu")
        >>> one.way == AuditKey("c/d", "0" * 40, "b1", "nightly", "h", "none", "cpu").way
        True
        """
        text = "|".join((self.battery_id, self.preset, self.preset_hash, self.quantization, self.device))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ScorerRef:
    """A scorer as the store records it: its registered name, checkpoint and primary attribute."""

    name: str
    checkpoint_hash: str
    primary: str

    @property
    def label(self) -> str:
        return f"{self.name}@{self.checkpoint_hash}"
