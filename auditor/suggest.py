"""The name a person probably meant: one close match for a typo, or none.

Used wherever a name is checked against a known set (config keys, repo ids, families), so that
`batery` says "did you mean audit.battery?" instead of listing every key.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, known: Iterable[str], *, cutoff: float = 0.75) -> str | None:
    """The known name most like `name` (case aside), or None when none is close.

    >>> closest("batery", ["audit.battery", "audit.preset"], cutoff=0.5)
    'audit.battery'
    >>> closest("mistral", ["gemma", "llama", "phi"]) is None
    True
    """
    by_lower = {k.lower(): k for k in known}
    match = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=cutoff)
    if match:
        return by_lower[match[0]]
    # A dotted key given without its section (`batery` for `audit.battery`).
    by_last = {k.rpartition(".")[2].lower(): k for k in by_lower.values() if "." in k}
    match = difflib.get_close_matches(name.rpartition(".")[2].lower(), list(by_last), n=1, cutoff=cutoff)
    return by_last[match[0]] if match else None
