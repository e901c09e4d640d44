"""Turning a byte stream into display lines, block by block, with bounded memory."""

from __future__ import annotations

from runctl_tui.core.logs.text import (
    TRUNCATION_MARKER,
    collapse_line,
    cut_utf8,
    has_controls,
    is_transient,
    show_controls,
    special_bytes,
)


def _finish_text(raw: bytes, dropped: int, had_cr: bool) -> str:
    text = raw.decode("utf-8", "replace")
    if dropped:
        # The cut may have split a character: do not show half of it as a replacement mark.
        text = text.rstrip("\ufffd")
    if had_cr:
        text = text.rstrip(" ")
    if "\b" in text:
        text = collapse_line(text)
    if has_controls(text):
        text = show_controls(text)
    if dropped:
        text += TRUNCATION_MARKER.format(size=len(raw) + dropped)
    return text


class LineAssembler:
    """Split bytes into complete lines plus the current unterminated line.

    Blocks are decoded whole and split with `str.split` (no per-character Python loops). A
    line rewritten by `\\r` keeps only its latest state, so a progress bar updated a million
    times costs one line. A line longer than `max_line_bytes` is cut for display with a
    marker; its excess is counted, never kept, so a 50 MB line costs 50 MB of reading and
    `max_line_bytes` of memory.
    """

    def __init__(self, max_line_bytes: int = 64 * 1024) -> None:
        """Create an assembler.

        Args:
            max_line_bytes: Longest line kept for display; longer lines get a marker.
        """
        self.max_line_bytes = max(16, max_line_bytes)
        self._state = bytearray()
        self._dropped = 0
        self._after_cr = False
        self._had_cr = False
        self._active = False

    @property
    def has_partial(self) -> bool:
        """Whether bytes of an unterminated line are pending."""
        return self._active

    @property
    def partial(self) -> str | None:
        """The unterminated line in its latest state, or None when there is none (or it is empty)."""
        if not self._active or not self._state:
            return None
        return _finish_text(bytes(self._state), self._dropped, self._had_cr)

    def feed(self, data: bytes) -> list[str]:
        """Consume a block of bytes.

        Args:
            data: The next bytes of the stream.

        Returns:
            The lines completed by this block, in order, without newlines.
        """
        lines: list[str] = []
        start = 0
        if self._active:
            first = data.find(b"\n")
            if first == -1:
                self.extend_partial(data)
                return lines
            self.extend_partial(data[:first])
            line = self.flush_line()
            if line is not None:
                lines.append(line)
            start = first + 1
        last = data.rfind(b"\n")
        if last < start:
            if start < len(data):
                self.extend_partial(data[start:] if start else data)
            return lines
        # Decode straight from the block (no copy of the body); the control-byte check runs
        # over the whole block, which can only make it err towards the careful path.
        body = self._decode_range(data, start, last)
        if lines:
            lines.extend(body)
        else:
            lines = body
        if last + 1 < len(data):
            self.extend_partial(data[last + 1 :])
        return lines

    def decode_lines(self, body: bytes) -> list[str]:
        """Decode `\\n`-separated complete lines (no trailing newline) in one pass.

        Args:
            body: Complete lines joined by `\\n`.

        Returns:
            Display lines: collapsed, controls made visible, long lines cut.
        """
        return self._decode_range(body, 0, len(body))

    def _decode_range(self, data: bytes, start: int, stop: int) -> list[str]:
        if start == 0 and stop == len(data):
            text = data.decode("utf-8", "replace")
        else:
            text = str(memoryview(data)[start:stop], "utf-8", "replace")
        lines = text.split("\n")
        special = special_bytes(data)
        if special:
            if b"\r" in special or b"\b" in special:
                lines = [collapse_line(s) if ("\r" in s or "\b" in s) else s for s in lines]
            if b"\x1b" in special:
                lines = [s for s in lines if not is_transient(s)]
            if special.strip(b"\r\b\x1b"):
                lines = [show_controls(s) if has_controls(s) else s for s in lines]
        limit = self.max_line_bytes
        if len(text) > limit and max(map(len, lines)) > limit:
            lines = [self._cut(s) if len(s) > limit else s for s in lines]
        return lines

    def _cut(self, line: str) -> str:
        raw = line.encode("utf-8", "replace")
        if len(raw) <= self.max_line_bytes:
            return line
        head = cut_utf8(raw, self.max_line_bytes).decode("utf-8", "replace")
        return head + TRUNCATION_MARKER.format(size=len(raw))

    def flush_line(self) -> str | None:
        """End the pending line (as a newline would).

        Returns:
            The line ('' when nothing was pending), or None when it was a nested progress
            bar's transient row (see `is_transient`).
        """
        text = _finish_text(bytes(self._state), self._dropped, self._had_cr)
        self._state = bytearray()
        self._dropped = 0
        self._after_cr = False
        self._had_cr = False
        self._active = False
        return None if is_transient(text) else text

    def skip(self, count: int) -> None:
        """Count `count` bytes of the pending line as read but not kept (lazy reads)."""
        self._active = True
        self._dropped += count

    def extend_partial(self, data: bytes) -> None:
        """Add bytes of the unterminated line.

        Args:
            data: Bytes that contain no newline.
        """
        self._active = True
        if b"\r" not in data:
            self._append(data)
            return
        self._had_cr = True
        segments = data.split(b"\r")
        self._append(segments[0])
        for index in range(len(segments) - 1, 0, -1):
            if segments[index]:
                self._after_cr = True
                self._append(segments[index])
                self._after_cr = index < len(segments) - 1
                return
        self._after_cr = True

    def _append(self, segment: bytes) -> None:
        if not segment:
            return
        if self._after_cr:
            self._state = bytearray()
            self._dropped = 0
            self._after_cr = False
        room = self.max_line_bytes - len(self._state)
        if room >= len(segment):
            self._state += segment
            return
        if room > 0:
            self._state += segment[:room]
        self._dropped += len(segment) - max(room, 0)
