"""A bounded buffer of log lines: following a log that grows by gigabytes keeps memory flat."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Collection, Iterator

from runctl_tui.core.logsource import LogChunk


class LineBuffer:
    """The last `max_lines` lines of a log plus its unterminated line.

    Lines are numbered from the start of the follow (`first_number`..`total - 1`), so a view
    can keep positions stable while old lines fall off the front.
    """

    def __init__(self, max_lines: int = 10_000) -> None:
        """Create an empty buffer.

        Args:
            max_lines: Lines kept; older ones are dropped (`[monitor] log_buffer_lines`).
        """
        self.max_lines = max(1, max_lines)
        self._lines: deque[str] = deque(maxlen=self.max_lines)
        self.total = 0
        """Lines ever added (the number the next line gets)."""
        self.partial: str | None = None
        """The unterminated last line in its latest state."""
        self.size: int | None = None
        """Size of the source in bytes, from the last chunk that knew it."""

    def __len__(self) -> int:
        return len(self._lines)

    def __iter__(self) -> Iterator[str]:
        return iter(self._lines)

    @property
    def first_number(self) -> int:
        """Number of the oldest line still held."""
        return self.total - len(self._lines)

    def line(self, number: int) -> str:
        """The line numbered `number` (see `first_number`).

        Raises:
            IndexError: The line was dropped or does not exist yet.
        """
        index = number - self.first_number
        if index < 0 or number >= self.total:
            raise IndexError(number)
        return self._lines[index]

    def newest(self, count: int) -> list[str]:
        """The newest `count` lines held, oldest first (fewer if fewer are held)."""
        count = min(count, len(self._lines))
        if count == len(self._lines):
            return list(self._lines)
        return list(itertools.islice(reversed(self._lines), count))[::-1]

    def extend(self, lines: Collection[str], skipped: int = 0) -> None:
        """Append complete lines, dropping the oldest beyond `max_lines`.

        Args:
            lines: The lines, oldest first.
            skipped: Lines that came before `lines` but were never kept (they would have
                been dropped at once); they still count in the numbering.
        """
        count = len(lines)
        if count > self.max_lines and isinstance(lines, (list, tuple)):
            # Only the newest max_lines can stay: do not push the rest through the deque.
            self._lines.extend(lines[count - self.max_lines :])
        else:
            self._lines.extend(lines)
        self.total += skipped + count

    def add(self, chunk: LogChunk) -> int:
        """Take in a chunk from a `LogSource`.

        Args:
            chunk: The chunk.

        Returns:
            How many complete lines it added.
        """
        if chunk.lines:
            self.extend(chunk.lines)
        self.partial = chunk.partial
        if chunk.size is not None:
            self.size = chunk.size
        return len(chunk.lines)

    def clear(self) -> None:
        """Forget every line (numbering continues)."""
        self._lines.clear()
        self.partial = None

    def text_lines(self) -> list[str]:
        """Every line held, plus the unterminated one, oldest first."""
        lines = list(self._lines)
        if self.partial is not None:
            lines.append(self.partial)
        return lines
