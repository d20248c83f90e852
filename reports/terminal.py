"""Making untrusted text inert before it reaches a terminal.

Repo ids, card fields and (later) model completions come from strangers. An ANSI escape sequence
or a control character in them could move the cursor, rewrite earlier lines or retitle the
window; rich markup in them (`[red]`) could restyle the report. `safe_text` removes the first two
and escapes the third, so what is shown is exactly what was written, minus what a terminal would
act on.
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING

from auditor.textsafety import strip_control

if TYPE_CHECKING:
    from rich.console import Console


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
