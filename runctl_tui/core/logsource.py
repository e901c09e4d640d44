"""The interface every log source answers: a local file, a remote file over SSH, RunPod's stream.

A source yields `LogChunk`s. The first chunk holds the last `initial_lines` complete lines (the
tail); later chunks hold lines as they complete. Progress bars rewritten with `\\r` arrive as
`partial`: the current unterminated line in its latest state, which replaces the previous
partial, so hundreds of intermediate states never reach the buffer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class LogChunk:
    """What a log source has to say since its last chunk."""

    lines: tuple[str, ...] = ()
    """Newly completed lines, each in its final `\\r` state, ANSI codes kept, no newline."""
    partial: str | None = None
    """The unterminated last line in its latest state; None: no partial line now."""
    notice: str | None = None
    """Something the user should see about the source itself, e.g. `file truncated`,
    `file rotated`, `waiting for file`, `reconnecting in 2 s`."""
    size: int | None = None
    """Size of the underlying file in bytes, where known (for the pane title)."""


@runtime_checkable
class LogSource(Protocol):
    """A log that can be tailed and followed."""

    @property
    def description(self) -> str:
        """Where the lines come from, for the pane title (e.g. `runs/abc/train.log`)."""
        ...

    def follow(self, initial_lines: int = 200) -> AsyncIterator[LogChunk]:
        """Yield the tail, then new lines until cancelled; survives truncation and rotation."""
        ...
