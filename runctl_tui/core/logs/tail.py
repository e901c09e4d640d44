"""Reading the end of a file backwards: the last screen of 5 GB costs the same as 1 KB.

As in toolong: newline offsets are found from the end in large blocks, and only the lines
asked for are read, each lazily (a 50 MB line is read as its head, or its last `\\r` state).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runctl_tui.core.logs.assembler import LineAssembler

SCAN_BLOCK = 256 * 1024
"""Bytes read per step when scanning backwards for newlines."""
MAX_SCAN_BYTES = 256 * 1024 * 1024
"""A line whose start is further back than this is shown from there (with a marker)."""
MAX_STARTS_KEPT = 100_000
"""Beyond this many lines, only where the oldest starts is kept (memory stays small)."""
BULK_READ_BYTES = 8 * 1024 * 1024
"""Up to this many bytes of tail are read in one go; beyond it, line by line."""
CUT_START_MARKER = "… [start of line not read] "


@dataclass(frozen=True)
class TailSpan:
    """Where the last lines of a file are."""

    starts: tuple[int, ...]
    """Start offsets of the lines, oldest first (the last may be the unterminated line)."""
    end: int
    """File size the scan used."""
    partial: bool
    """Whether the last line has no newline yet."""
    cut_first: bool
    """Whether the first line's real start lies before the scan limit."""
    streamed: bool = False
    """Only the oldest start is known (too many lines to list): read from it in blocks."""


def scan_tail(fd: int, end: int, complete_lines: int, max_scan: int = MAX_SCAN_BYTES) -> TailSpan:
    """Find the starts of the last `complete_lines` complete lines (and the unterminated one).

    Args:
        fd: An open file descriptor (read with pread; its offset is not used).
        end: Treat the file as this long.
        complete_lines: How many newline-terminated lines to find.
        max_scan: Stop scanning backwards after this many bytes.

    Returns:
        The line starts, oldest first.
    """
    if end <= 0:
        return TailSpan((), 0, False, False)
    last_byte = os.pread(fd, 1, end - 1)
    partial = last_byte != b"\n"
    wanted = complete_lines + (1 if partial else 0)
    starts: list[int] = []  # newest first, while there are few enough to list
    listing = True
    found = 0
    oldest = end
    pos = end - 1  # the final byte never starts a line
    floor = max(0, end - max_scan)
    while pos > floor and found < wanted:
        block_start = max(floor, pos - SCAN_BLOCK)
        block = os.pread(fd, pos - block_start, block_start)
        take = min(block.count(b"\n"), wanted - found)
        if listing and found + take > MAX_STARTS_KEPT:
            listing = False
            starts = []
        if take:
            if listing:
                index = len(block)
                for _ in range(take):
                    index = block.rfind(b"\n", 0, index)
                    starts.append(block_start + index + 1)
                oldest = starts[-1]
            elif found + take < wanted:
                oldest = block_start + block.find(b"\n") + 1
            else:
                index = len(block)
                for _ in range(take):
                    index = block.rfind(b"\n", 0, index)
                oldest = block_start + index + 1
            found += take
        pos = block_start
    cut_first = False
    if found < wanted:
        oldest = pos
        if listing:
            starts.append(pos)
        cut_first = pos > 0
    if not listing:
        # Too many lines to list: only the oldest start is kept; the caller streams from it.
        return TailSpan((oldest,), end, partial, cut_first, streamed=True)
    starts.reverse()
    return TailSpan(tuple(starts), end, partial, cut_first)


def _read_line(fd: int, start: int, stop: int, assembler: LineAssembler) -> None:
    """Feed the line at [start, stop) (no newline) into `assembler`, reading little of it."""
    limit = assembler.max_line_bytes
    length = stop - start
    if length <= 4 * limit:
        assembler.extend_partial(os.pread(fd, length, start))
        return
    window = os.pread(fd, limit, stop - limit)
    carriage = window.find(b"\r")
    if carriage != -1:
        # A progress line: only the states in the last window matter.
        assembler.extend_partial(window[carriage:])
        return
    assembler.extend_partial(os.pread(fd, limit, start))
    assembler.skip(length - limit)


def read_tail(fd: int, span: TailSpan, assembler: LineAssembler) -> list[str]:
    """Read the complete lines of `span`; leave its unterminated line pending in `assembler`.

    Args:
        fd: The file the span was scanned in.
        span: From `scan_tail`.
        assembler: Receives the bytes; its pending line becomes the unterminated line.

    Returns:
        The complete lines, oldest first.
    """
    if not span.starts:
        return []
    first = span.starts[0]
    lines: list[str]
    if span.streamed:
        lines = []
        for offset in range(first, span.end, BULK_READ_BYTES):
            size = min(BULK_READ_BYTES, span.end - offset)
            lines.extend(assembler.feed(os.pread(fd, size, offset)))
    elif span.end - first <= BULK_READ_BYTES:
        lines = assembler.feed(os.pread(fd, span.end - first, first))
    else:
        lines = []
        long_line = 4 * assembler.max_line_bytes
        group_start = group_end = first
        bounds = [*span.starts[1:], span.end + 1]
        for start, next_start in zip(span.starts, bounds, strict=True):
            is_last = next_start > span.end
            stop = (span.end if span.partial else span.end - 1) if is_last else next_start - 1
            if stop - start <= long_line and stop - group_start <= BULK_READ_BYTES:
                group_end = span.end if is_last else next_start
                continue
            # Read the short lines gathered so far in one go, then this one by itself.
            if group_end > group_start:
                lines.extend(assembler.feed(os.pread(fd, group_end - group_start, group_start)))
            if stop - start <= long_line:
                group_start, group_end = start, span.end if is_last else next_start
                continue
            _read_line(fd, start, stop, assembler)
            if not is_last or not span.partial:
                line = assembler.flush_line()
                if line is not None:
                    lines.append(line)
            group_start = group_end = next_start
        if group_end > group_start:
            lines.extend(assembler.feed(os.pread(fd, group_end - group_start, group_start)))
    if span.cut_first and lines:
        lines[0] = CUT_START_MARKER + lines[0]
    return lines


def tail_lines(path: Path, n: int, *, max_line_bytes: int = 64 * 1024) -> list[str]:
    """The last `n` lines of a file, as `tail -n` shows them, read backwards from the end.

    The unterminated last line (a progress bar being drawn) counts as a line. Lines are
    collapsed to their latest `\\r` state, controls made visible, long lines cut with a marker.

    Args:
        path: The file.
        n: How many lines.
        max_line_bytes: Longest line shown in full.

    Returns:
        Up to `n` lines, oldest first, without newlines.

    Raises:
        FileNotFoundError: The file does not exist (other OSErrors likewise pass through).
    """
    if n <= 0:
        return []
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size
        assembler = LineAssembler(max_line_bytes)
        lines = read_tail(fd, scan_tail(fd, end, n), assembler)
        if assembler.has_partial and (last := assembler.flush_line()) is not None:
            lines.append(last)
        return lines[-n:]
    finally:
        os.close(fd)
