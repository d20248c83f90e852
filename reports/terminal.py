"""Making untrusted text inert before it reaches a terminal.

Repo ids, card fields and (later) model completions come from strangers. An ANSI escape sequence
or a control character in them could move the cursor, rewrite earlier lines or retitle the
window; rich markup in them (`[red]`) could restyle the report. `safe_text` removes the first two
and escapes the third, so what is shown is exactly what was written, minus what a terminal would
act on.
"""

from __future__ import annotations

import re
import sys
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

# CSI, OSC (terminated by BEL or ST), and other two-byte escapes.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def strip_control(text: str) -> str:
    """Remove ANSI escape sequences, C0/C1 control characters and bidi overrides (keeps \\t, \\n).

    >>> strip_control("ok\\x1b[2Jbad\\x07")
    'okbad'
    """
    return _CONTROL.sub("", _ANSI.sub("", text))


def safe_text(value: object, *, markup: bool = True) -> str:
    """`value` as text that a terminal shows literally; with `markup`, also inert for rich.

    >>> safe_text("[red]x[/red]")
    '\\\\[red]x\\\\[/red]'
    """
    text = strip_control(str(value))
    if markup:
        from rich.markup import escape

        text = escape(text)
    return text


def make_console(stream: IO[str] | None = None, *, stderr: bool = False) -> Console:
    """A rich console honouring NO_COLOR and the terminal width, for stdout or stderr."""
    from rich.console import Console

    return Console(file=stream or (sys.stderr if stderr else sys.stdout), highlight=False, soft_wrap=False)
