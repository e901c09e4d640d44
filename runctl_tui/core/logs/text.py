"""Making raw log text displayable: ANSI stripping, `\\r` progress-bar collapsing, bad bytes."""

from __future__ import annotations

import re

_ANSI_RE = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*[@-~]            # CSI: colours, cursor moves, erase line
    | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)  # OSC: titles, hyperlinks
    | \x1b[PX^_][^\x1b]*\x1b\\          # DCS, SOS, PM, APC strings
    | \x1b[@-Z\\-_]                     # two-byte escapes
    """,
    re.VERBOSE,
)

# C0 controls a terminal would act on (except TAB, ESC, BS and CR, handled elsewhere) and DEL.
_CONTROL_RE = re.compile(r"[\x00-\x07\x0b-\x0c\x0e-\x1a\x1c-\x1f\x7f]+")

# Cursor up (CUU, CPL): nested progress bars (tqdm `position=1`, Lightning's validation bar)
# draw a row below, then move back up; a line that ends so is that row's transient state.
_ENDS_CURSOR_UP_RE = re.compile(r"\x1b\[\d*[AF]$")

TRUNCATION_MARKER = " … [line truncated: {size:,} bytes]"
"""Appended to a line cut for display; `size` is the line's full length in bytes."""


def strip_ansi(text: str) -> str:
    """Remove ANSI escape sequences (colours, cursor movement, hyperlinks) from `text`.

    Args:
        text: Text that may contain escape sequences.

    Returns:
        The text a plain-text reader should see.
    """
    if "\x1b" not in text:
        return text
    return _ANSI_RE.sub("", text)


def _apply_backspaces(segment: str) -> str:
    # A terminal moves the cursor left on BS and overwrites; it never erases by itself.
    cells: list[str] = []
    cursor = 0
    for char in segment:
        if char == "\b":
            cursor = max(0, cursor - 1)
        elif cursor < len(cells):
            cells[cursor] = char
            cursor += 1
        else:
            cells.append(char)
            cursor += 1
    return "".join(cells)


def collapse_line(line: str) -> str:
    """The latest state of one line (no `\\n`) that progress bars rewrote with `\\r`.

    The state is the last non-empty `\\r` segment with its trailing padding removed (tqdm and
    Keras pad a shorter state with spaces to hide the previous one); backspaces move back
    over the segment as a terminal would.

    Args:
        line: One line without its newline.

    Returns:
        What the line shows once every update has been applied.
    """
    if "\r" in line:
        segments = line.split("\r")
        line = next((s for s in reversed(segments) if s), "").rstrip(" ")
    if "\b" in line:
        line = _apply_backspaces(line)
    return line


def collapse_carriage_returns(text: str) -> str:
    """Collapse every line of `text` rewritten with `\\r` to its latest state.

    Args:
        text: Raw text as a terminal would receive it (`\\n`-separated lines).

    Returns:
        The same lines, each shown once in its final state; rows of nested progress bars
        (which end by moving the cursor up) are left out.
    """
    if "\r" not in text and "\b" not in text and "\x1b[" not in text:
        return text
    lines = (collapse_line(line) for line in text.split("\n"))
    return "\n".join(line for line in lines if not is_transient(line))


def _control_picture(match: re.Match[str]) -> str:
    run = match.group()
    if run[0] == "\x00" and len(run) > 3 and run.count("\x00") == len(run):
        return f"␀×{len(run)}"
    return "".join("␡" if c == "\x7f" else chr(0x2400 + ord(c)) for c in run)


def show_controls(text: str) -> str:
    """Replace control characters a terminal would act on by visible symbols (NUL runs counted).

    Args:
        text: Decoded log text.

    Returns:
        Text safe to draw: `␀×4096` for a NUL-filled region, `␇` for a bell, and so on.
    """
    return _CONTROL_RE.sub(_control_picture, text)


_ORDINARY_BYTES = bytes(b for b in range(256) if not (b < 0x20 or b == 0x7F) or b in (0x09, 0x0A))


def special_bytes(data: bytes) -> bytes:
    """The control bytes in `data` other than TAB and LF (ESC, CR, BS, NUL...), at C speed.

    An empty result means a block needs no collapsing, no control pictures and no escape
    handling, which is the common case and lets it skip every per-line step.
    """
    return data.translate(None, _ORDINARY_BYTES)


def has_controls(text: str) -> bool:
    """Whether `text` holds control characters that `show_controls` would replace."""
    return _CONTROL_RE.search(text) is not None


def is_transient(line: str) -> bool:
    """Whether a collapsed line is a nested progress bar's row the cursor moved away from.

    Such rows are overwritten on a terminal with each update; kept, a validation loop would
    add one line per batch.

    Args:
        line: A line after `collapse_line`.

    Returns:
        True when the line ends by moving the cursor up.
    """
    return line.endswith(("A", "F")) and _ENDS_CURSOR_UP_RE.search(line) is not None


def cut_utf8(data: bytes, limit: int) -> bytes:
    """The first `limit` bytes of `data`, moved back so no UTF-8 character is split."""
    if len(data) <= limit:
        return data
    end = limit
    while end > 0 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end]
