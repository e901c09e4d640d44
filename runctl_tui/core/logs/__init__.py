"""Local logs: tail a file of any size instantly, follow it like `tail -F`, keep memory bounded.

Public API: `FileLogSource` (a `LogSource`), `tail_lines`, `collapse_carriage_returns`,
`strip_ansi`, `LineBuffer`, `LineAssembler`.
"""

from __future__ import annotations

from runctl_tui.core.logs.assembler import LineAssembler
from runctl_tui.core.logs.buffer import LineBuffer
from runctl_tui.core.logs.follow import FileLogSource
from runctl_tui.core.logs.tail import tail_lines
from runctl_tui.core.logs.text import (
    collapse_carriage_returns,
    collapse_line,
    show_controls,
    strip_ansi,
)

__all__ = [
    "FileLogSource",
    "LineAssembler",
    "LineBuffer",
    "collapse_carriage_returns",
    "collapse_line",
    "show_controls",
    "strip_ansi",
    "tail_lines",
]
