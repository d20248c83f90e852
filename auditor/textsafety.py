"""Removing what a terminal would act on from untrusted text (repo ids, Hub messages, completions).

Kept free of rich so that every layer (crawlers, the CLI's error path) can use it; reports add
rich-markup escaping on top (`reports.terminal.safe_text`).
"""

from __future__ import annotations

import re

# CSI, OSC (terminated by BEL or ST), and other two-byte escapes.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def strip_control(text: str) -> str:
    """Remove ANSI escape sequences, C0/C1 control characters and bidi overrides (keeps \\t, \\n).

    >>> strip_control("ok\\x1b[2Jbad\\x07")
    'okbad'
    """
    return _CONTROL.sub("", _ANSI.sub("", text))
