"""The C loops of the line parser (`lines._speedups`) against the pure-Python reference.

`runctl_tui/core/metrics/_speedups.c` mirrors parts of `lines.py` step for step; the Python code
is the reference. These tests feed the same lines in the same pieces to a parser using the C
loops and to one in pure Python and require exactly the same output, on real captures, on the
bench's log and on seeded fuzz built to reach every branch of the C code; and they check the
C helpers (`shape`, `to_float`, `settle`) against their Python definitions on random inputs.
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import re
import struct
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from runctl_tui.core.metrics import lines as lines_module
from runctl_tui.core.metrics.lines import LineMetricsParser
from tests.core.test_metrics_lines import _console_lines, _mangled, _printed_lines

ROOT = Path(__file__).resolve().parents[2]

# Read at import: the autouse `isolated_home` fixture drops RUNCTL_* variables during tests.
PURE_PYTHON_REQUESTED = os.environ.get(lines_module.PURE_PYTHON_VARIABLE, "") not in ("", "0")

needs_c = pytest.mark.skipif(
    lines_module._speedups is None,
    reason="the C extension is not loaded (see test_the_c_extension_is_built)",
)

Outcome = tuple[str, Any]
"""What one `feed_columns` call gave: ("columns", its dict) or ("raised", (type name, text))."""


# ---- comparing the two parsers ----


def _same(a: object, b: object) -> bool:
    """Equal as parser output: same type and value, a NaN equal to a NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _first_difference(got: Outcome, want: Outcome) -> str | None:
    """Where the C parser's outcome differs from the reference's, or None when equal."""
    if got[0] != want[0]:
        return f"C {got[0]} {_short(got[1])}, Python {want[0]} {_short(want[1])}"
    if got[0] == "raised":
        return None if got[1] == want[1] else f"C raised {got[1]}, Python raised {want[1]}"
    c_columns: dict[str, tuple[list[Any], list[Any]]] = got[1]
    py_columns: dict[str, tuple[list[Any], list[Any]]] = want[1]
    if list(c_columns) != list(py_columns):
        return f"series C {list(c_columns)} != Python {list(py_columns)}"
    for name, (py_steps, py_values) in py_columns.items():
        c_steps, c_values = c_columns[name]
        for label, c_list, py_list in (
            ("steps", c_steps, py_steps),
            ("values", c_values, py_values),
        ):
            if len(c_list) != len(py_list):
                return f"{name!r}: {len(c_list)} {label} in C, {len(py_list)} in Python"
            for at, (c_item, py_item) in enumerate(zip(c_list, py_list, strict=True)):
                if not _same(c_item, py_item):
                    return (
                        f"{name!r} {label}[{at}]: C {c_item!r}, Python {py_item!r} "
                        f"(C points {list(zip(c_steps, c_values, strict=True))[max(0, at - 2) : at + 3]}, "
                        f"Python {list(zip(py_steps, py_values, strict=True))[max(0, at - 2) : at + 3]})"
                    )
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 300 else text[:300] + "..."


def _outcome(parser: LineMetricsParser, chunk: list[str]) -> Outcome:
    try:
        return ("columns", parser.feed_columns(chunk))
    except Exception as error:  # the reference's own failures must be the C route's too
        return ("raised", (type(error).__name__, str(error)))


def _parser_pair(monkeypatch: pytest.MonkeyPatch) -> tuple[LineMetricsParser, LineMetricsParser]:
    """(a parser using the C loops, a parser in pure Python)."""
    fast = LineMetricsParser()
    assert fast._fast is not None
    with monkeypatch.context() as patch:
        patch.setattr(lines_module, "_speedups", None)
        slow = LineMetricsParser()
    assert slow._fast is None
    return fast, slow


def _chunks(lines: Sequence[str], sizes: Iterator[int]) -> Iterator[list[str]]:
    start = 0
    while start < len(lines):
        size = next(sizes)
        yield list(lines[start : start + size])
        start += size


class Fed(NamedTuple):
    points: int
    """Points the reference found."""
    raised: int
    """Chunks the reference raised on."""


def _assert_same_output(
    monkeypatch: pytest.MonkeyPatch, lines: Sequence[str], sizes: Iterator[int]
) -> Fed:
    """Feed `lines` in the same chunks to a C and a pure-Python parser; fail at the first
    chunk whose output differs."""
    fast, slow = _parser_pair(monkeypatch)
    start = 0
    points = raised = 0
    for chunk in _chunks(lines, sizes):
        want = _outcome(slow, chunk)
        got = _outcome(fast, chunk)
        difference = _first_difference(got, want)
        if difference is not None:
            pytest.fail(
                f"lines {start}..{start + len(chunk) - 1} (fed {len(chunk)} at a time): "
                f"{difference}\nfirst line of the chunk: {_short(chunk[0])}"
            )
        if want[0] == "columns":
            points += sum(len(values) for _, values in want[1].values())
        else:
            raised += 1
        start += len(chunk)
    return Fed(points, raised)


def _fixed(size: int) -> Iterator[int]:
    while True:
        yield size


def _mixed_sizes(seed: int) -> Iterator[int]:
    rng = random.Random(seed)
    while True:
        yield rng.choice((1, 7, 4096, 5000))


# ---- the extension is there ----


def test_the_c_extension_is_built() -> None:
    """The C loops must be loaded, or every comparison here would be skipped unseen (setting
    RUNCTL_METRICS_PURE_PYTHON to anything but 0 asks for pure Python: then this skips)."""
    if PURE_PYTHON_REQUESTED:
        pytest.skip(f"{lines_module.PURE_PYTHON_VARIABLE} is set: pure Python was asked for")
    if lines_module._speedups is None:
        pytest.fail(
            "the C extension runctl_tui.core.metrics._speedups is not built or does not import; "
            "build it with `python setup.py build_ext --inplace` (needs a C compiler)"
        )
    assert lines_module._speedups.__name__ == "runctl_tui.core.metrics._speedups"


# ---- the whole parser, C against Python ----


@needs_c
@pytest.mark.parametrize(("chunk", "seed"), [(1, 1), (7, 2), (4096, 3)])
def test_captures_and_printed_lines_read_alike(
    monkeypatch: pytest.MonkeyPatch, chunk: int, seed: int
) -> None:
    """Every console capture in tests/data and script-style printed lines, as they are (read
    a column at a time) and then with their digits damaged here and there (read line by line):
    the same series, steps and values from the C loops as from Python."""
    clean = _console_lines() + _printed_lines(6000, seed)
    lines = clean + _mangled(clean, seed)
    assert sum(line.count("\r") for line in lines) > 800
    assert _assert_same_output(monkeypatch, lines, _fixed(chunk)).points > 10_000


def _load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("_bench_metrics", ROOT / "bench" / "metrics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_c
def test_bench_log_reads_alike(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The bench's realistic log (tqdm redraws, Keras bars with ANSI codes and backspaces,
    printed lines, dicts, JSON lines, prose), read as the bench reads it, in mixed chunks."""
    path = tmp_path / "train.log"
    _load_bench().make_log(path, 30_000, seed=7)
    with open(path, encoding="utf-8", errors="replace", newline="\n") as handle:
        lines = handle.readlines()
    assert len(lines) == 30_000
    assert _assert_same_output(monkeypatch, lines, _mixed_sizes(7)).points > 30_000


# ---- fuzz: lines built to reach every branch of the C loops ----

ANSI_CODES = (
    "\x1b[1m",
    "\x1b[0m",
    "\x1b[32m",
    "\x1b[2;4m",
    "\x1b[?25l",
    "\x1b[2K",
    "\x1b[ q",
    "\x1b]0;title\x07",
    "\x1b]8;;https://x.org\x1b\\",
    "\x1b(B",
    "\x1b)0",
)
BROKEN_ANSI = (
    "\x1b",
    "\x1b[",
    "\x1b[12",
    "\x1b[1;",
    "\x1b]0;title",
    "\x1b]0;t\x1b",
    "\x1b(",
    "\x1bX",
)
ODD_CHARS = ("\x00", "\ud800", "\udfff", "😀", "é", "λ", "\u2028", "\x85", "\t", "\x0b", "\xa0")
SAFE_DIGITS = "0123456789٣５"
"""Digits whose `isdigit()` Python's `float()` accepts."""
REFUSED_DIGITS = "²³"
"""`isdigit()` but not decimal: the reference raises on a counter made of them."""
KEYS = (
    "loss",
    "acc",
    "train_loss",
    "val_loss",
    "lr",
    "v_num",
    "train/loss",
    "a-b",
    "9x",
    "",
    " loss",
    "λ",
    "top5_acc",
    "_x",
    "a.b",
)
PROSE = (
    "Saving model checkpoint to out/checkpoint-500",
    "2024-05-01 12:00:03,123 INFO data.loader: prefetching shard 12 of 100",
    "GPU available: False, used: False",
    "Traceback (most recent call last):",
    "the loss went down",
    "12:30 done",
    "",
    "-" * 80,
    "Downloading shards: 100%",
    "Epoch 3 finished",
    "Validation DataLoader 0: 100%",
)


class _QuickRandom(random.Random):
    """`choice` and small `randrange` from one `random()` call: the fuzz draws a few hundred
    thousand of them, and these are a few times cheaper (the tiny bias does not matter)."""

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.random() * len(seq))]

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        low, high = (0, start) if stop is None else (start, stop)
        if step != 1 or high - low > 1 << 40:
            return super().randrange(start, stop, step)
        return low + int(self.random() * (high - low))


class Fuzz:
    """A seeded generator of console lines: tqdm, rich and Keras redraws, printed metric lines,
    dicts, JSON lines and prose, with damaged numbers, odd characters and ANSI codes."""

    def __init__(self, seed: int, *, refused: bool = False) -> None:
        self.rng = _QuickRandom(seed)
        self.refused = refused
        """Whether to write what the reference raises on (a counter of `²`, an epoch past the
        floats): only when asked for, as a raise mid-batch leaves the parsers' states unlike."""
        self.odd_digits = SAFE_DIGITS[10:] + (REFUSED_DIGITS if refused else "")
        """Non-ASCII digits for counters and epochs."""
        self.epoch_sizes = (1, 1, 2, 20) + ((320,) if refused else ())
        """Digits of the epochs of Keras and rich bars."""
        self.pool = [self.number() for _ in range(12)]
        """A few value texts, drawn again and again so that redraws repeat values."""

    # -- numbers --

    def digits(self, size: int) -> str:
        rng = self.rng
        text = f"{rng.randrange(10**size):0{size}d}"
        if rng.random() < 0.05:
            at = rng.randrange(size + 1)
            text = text[:at] + rng.choice(self.odd_digits) + text[at + 1 :]
        return text

    def number(self) -> str:
        rng = self.rng
        kind = rng.randrange(24)
        if kind < 8:
            return f"{rng.random() * 10 ** rng.randrange(-3, 4):.{rng.randrange(0, 6)}f}"
        if kind < 11:
            return f"{rng.random():.3g}"
        if kind < 12:
            return rng.choice(("0", "-0", "1", "10", "-1.5", "+2", "0.0", ".5", "5."))
        if kind < 13:
            return rng.choice(("nan", "NaN", "inf", "-inf", "Infinity", "-nan", "nana", "infx"))
        if kind < 14:
            return rng.choice(("1e-5", "3e-4", "1E+3", "1e", "1e+", "2.5e-07", "1e400", "1e-400"))
        if kind < 15:
            return rng.choice(("1_000", "0.5s", "12ms", "tensor(0.7)", "tensor(0.7311,", "'0.3'"))
        if kind < 16:
            return rng.choice(("1.2.3", "..5", "0.02.18", "4.5e-.1", ".", "-", "1-2", "1:2"))
        if kind < 17:
            return rng.choice(("٣.5", "５", "1٣", "²", "0x1p3", " 1.5", "1.5\xa0", "abc", ""))
        if kind < 18:
            return self.digits(rng.randrange(17, 32)) + rng.choice(("", ".5", "e-3"))
        if kind < 19:
            return "0." + "0" * rng.randrange(10, 30) + self.digits(rng.randrange(1, 20))
        if kind < 20:
            return f"{rng.randrange(1, 10)}e{rng.choice(('', '-', '+'))}{rng.randrange(0, 400)}"
        return rng.choice(self.pool) if hasattr(self, "pool") else "0.5"

    def value(self) -> str:
        return self.rng.choice(self.pool) if self.rng.random() < 0.5 else self.number()

    def pick(self, *options: Callable[[], str]) -> str:
        """One of the options, built only once chosen."""
        return self.rng.choice(options)()

    # -- progress bars --

    def counter(self) -> str:
        rng = self.rng
        done = self.digits(rng.randrange(1, 4))
        total = self.digits(rng.choice((1, 2, 3, 30)))
        return self.pick(
            lambda: f"{done}/{total}",
            lambda: f"{done}/{total}",
            lambda: f"{done}it",
            lambda: done,
            lambda: f"{done}/?",
            lambda: f"/{total}",
            lambda: f"{done}x/{total}",
            lambda: "",
            lambda: f"{done}/{total}/3",
            lambda: f"{done}/{total}it",
            lambda: f"{done}i",
            lambda: f"{done}t",
            lambda: f"{self.digits(rng.choice((16, 23, 24, 30)))}/{total}",
            lambda: f"{self.digits(rng.choice((23, 24, 30)))}it",
        )

    def tqdm_head(self) -> str:
        rng = self.rng
        epoch = self.digits(rng.randrange(1, 3))
        desc = self.pick(
            lambda: f"Epoch {epoch}",
            lambda: f"epoch_{epoch}",
            lambda: f"Epoch: {epoch}",
            lambda: f"Epoch=={epoch}",
            lambda: "Training",
            lambda: "",
            lambda: f"Epoch {rng.choice(self.odd_digits)}",
            lambda: f"Epoch:{rng.choice(REFUSED_DIGITS)}",
            lambda: f"Epoch {epoch}{rng.choice(REFUSED_DIGITS)}x",
            lambda: f"a|Epoch {epoch}",
            lambda: f"Epoch {self.digits(rng.choice((16, 18, 23, 25)))}",
            lambda: "Validation DataLoader 0",
            lambda: f"poch {epoch}",
            lambda: f"Xpoch {epoch} epoch {epoch}",
            lambda: f"Epoch {epoch}x",
            lambda: f"Epochs {epoch}",
            lambda: f"Epoch {epoch}é",
            lambda: f"Epoch {epoch}{rng.choice(self.odd_digits)}",
            lambda: "Epoch",
            lambda: "Epoch:",
        )
        counter = self.counter()
        percent = f"{rng.randrange(0, 101):3d}%"
        bar = "█" * rng.randrange(0, 10) + rng.choice(("", "▌", " "))
        return rng.choice(
            (
                f"{desc}: {percent}|{bar}| {counter}",
                f"{desc}: {percent}|{bar}| {counter}",
                f"{desc} {counter}",
                counter,
                f"{desc}: {counter}|",
                f"{desc}:{percent}|{bar}|{counter}",
                f"{desc}|{bar}| {counter}",
            )
        )

    def postfix(self) -> str:
        rng = self.rng
        items = [f"{rng.choice(KEYS)}={self.value()}" for _ in range(rng.randrange(0, 4))]
        if rng.random() < 0.05:
            items.append(rng.choice(("novalue", "=1", "loss=tensor(0.7, grad_fn=<X>)", "a=b=1")))
        return ", ".join(items)

    def tqdm_part(self, head: str | None = None) -> str:
        rng = self.rng
        head = self.tqdm_head() if head is None else head
        rate = rng.choice(("4.20it/s", "1.2s/it", "?it/s", "4.20it/s"))
        inner = [f"00:{rng.randrange(60):02d}<00:30", rate]
        postfix = self.postfix() if rng.random() < 0.8 else ""
        if postfix:
            inner.append(postfix)
        if rng.random() < 0.03:
            inner = inner[: rng.randrange(3)]
        after = rng.choice(("", "", "", " ", "]", " [x]", "\x00", " ━"))
        part = f"{head} [{', '.join(inner)}]{after}"
        if rng.random() < 0.03:
            part = part.replace("]", "")  # no closing bracket
        if rng.random() < 0.02:
            part = part.replace(" [", "[")
        return part

    def tqdm_line(self) -> str:
        """One bar's redraws: often the same head and postfix drawn several times."""
        rng = self.rng
        head = self.tqdm_head()
        parts: list[str] = []
        for _ in range(rng.randrange(1, 6)):
            if rng.random() < 0.3 or not parts:
                parts.append(self.tqdm_part(head if rng.random() < 0.7 else None))
            else:
                parts.append(rng.choice((parts[-1], "")))
        line = "\r".join(parts)
        if rng.random() < 0.6:
            line = "\r" + line
        return line + rng.choice(("", "", "\r", "\r\r", "\r\n", "\n", " "))

    def keras_part(self) -> str:
        rng = self.rng
        done = self.digits(rng.randrange(1, 3))
        total = self.digits(rng.choice((1, 1, 2, 30)))
        counter = self.pick(
            lambda: f"{done}/{total}",
            lambda: f"{done}/{total}",
            lambda: done,
            lambda: f"{done}/",
            lambda: f"/{total}",
            lambda: f"x{done}/{total}",
            lambda: f"{done}/x",
            lambda: f"{done}/{total}/{total}",
            lambda: f"{self.digits(70)}/{total}",
            lambda: f"{done}/{self.digits(70)}",
        )
        bold, reset, green = rng.choice((("\x1b[1m", "\x1b[0m", "\x1b[32m"), ("", "", "")))
        bar = "━" * rng.randrange(0, 20)
        items = [f"{rng.choice(KEYS)}: {self.value()}" for _ in range(rng.randrange(0, 4))]
        if rng.random() < 0.05:
            items.append(rng.choice(("loss:0.5", "loss:", ": 1", "a b: 2", "loss: x")))
        tail = "".join(f" - {item}" for item in items)
        timing = rng.choice(("4ms/step", "1s/step", "4ms/step", "/step", "4ms/stepx"))
        part = (
            f"{rng.choice(('', ' ', '  '))}{bold}{counter}{reset} {green}{bar}{reset} "
            f"{bold}0s{reset} {timing}{tail}"
        )
        return part + "\b" * rng.choice((0, 0, 1, 20))

    def keras_line(self) -> str:
        rng = self.rng
        parts = [self.keras_part() for _ in range(rng.randrange(1, 4))]
        return ("\r" if rng.random() < 0.8 else "") + "\r".join(parts) + rng.choice(("", "\n"))

    def keras_header(self) -> str:
        rng = self.rng
        return self.pick(
            lambda: f"Epoch {self.digits(rng.randrange(1, 3))}/{self.digits(2)}",
            lambda: f"Epoch {self.digits(rng.randrange(1, 3))}/{self.digits(2)}",
            lambda: f"Epoch {self.digits(rng.choice((15, 19, 20, 30, *self.epoch_sizes)))}/10",
            lambda: "Epoch 0/10",
            lambda: f"  Epoch {self.digits(1)}/{self.digits(1)}  ",
            lambda: f"Epoch {self.digits(1)}/{self.digits(1)} loss: 0.5",
        )

    def rich_part(self) -> str:
        """A redraw of Lightning's rich bar: `Epoch 1/2 ━━━╸━━ 3/5 0:00:01 • 0:00:02 4.20it/s
        v_num: 0 train_loss: 1.410`, its counter found by `━[━╺╸╾╼ ]*\\s(\\d+)/(\\d+)\\s`."""
        rng = self.rng
        epoch = self.digits(rng.choice(self.epoch_sizes))
        desc = self.pick(
            lambda: f"Epoch {epoch}/{self.digits(1)}",
            lambda: f"epoch_{epoch}",
            lambda: f"Xpoch {epoch} Epoch:{epoch}é",
            lambda: "Validation",
            lambda: "",
            lambda: "Epoch x",
        )
        run = (
            "━" * rng.randrange(0, 12)
            + rng.choice(("", "╸", "╺", "╾", "╼", " ━"))
            + " " * rng.randrange(0, 3)
        )
        gap = rng.choice((" ", " ", "", "\t", "\xa0", "\u3000", "x "))
        counter = self.pick(
            lambda: f"{self.digits(1)}/{self.digits(rng.choice((1, 2, 2, 24)))}",
            lambda: f"{self.digits(1)}/{self.digits(2)}",
            lambda: f"{self.digits(2)}/",
            lambda: f"/{self.digits(2)}",
            lambda: f"{self.digits(1)}/{self.digits(1)}x",
            lambda: f"{self.digits(1)}/{self.digits(1)}é",
            lambda: f"{self.digits(24)}/{self.digits(2)}",
            lambda: "",
        )
        after = rng.choice((" ", " ", "\t", "", "\xa0", "it/s"))
        rate = rng.choice((f"{self.digits(2)}.00it/s", "4.20it/s", "?it/s", "4.20s/it"))
        tail = " ".join(f"{rng.choice(KEYS)}: {self.value()}" for _ in range(rng.randrange(0, 3)))
        body = f"{desc} {run}{gap}{counter}{after}0:00:01 • 0:00:02 {rate} {tail}"
        if rng.random() < 0.1:  # the counter after the rate: no counter before it
            body = f"{desc} {rate} {run}{gap}{counter} {tail}"
        if rng.random() < 0.3:
            body = "".join(
                f"\x1b[{rng.choice(('2m', '35m', '0m', '3m'))}{char}" if char in "━ " else char
                for char in body
            )
        return body

    def rich_wrap(self) -> str:
        """Rich's postfix wrapped onto the next terminal line: `          val_loss: 0.826`."""
        rng = self.rng
        items = " ".join(f"{rng.choice(KEYS)}: {self.value()}" for _ in range(rng.randrange(0, 3)))
        return " " * rng.choice((10, 10, 14, 9)) + rng.choice((items, "val_loss:0.5", "loss 1"))

    def clean_rich_part(self) -> str:
        """A rich redraw as Lightning draws it, postfix values often unchanged."""
        rng = self.rng
        done = rng.randrange(100)
        items = " ".join(f"{key}: {rng.choice(self.pool[:3])}" for key in ("v_num", "train_loss"))
        return (
            f"Epoch {rng.randrange(3)}/3  {'━' * (done // 10)}{rng.choice('╸╺ ')}"
            f"{'━' * (10 - done // 10)} {done}/100 0:00:01 • 0:00:02 4.20it/s {items}"
        )

    def rich_line(self) -> str:
        """Rich's redraws, their wrapped postfix after some (in the line or the next)."""
        rng = self.rng
        if rng.random() < 0.5:
            parts = [self.clean_rich_part() for _ in range(rng.randrange(1, 5))]
            if rng.random() < 0.3:
                parts.append("          val_loss: " + rng.choice(self.pool[:3]))
            return "\r" + "\r".join(parts)
        parts: list[str] = []
        for _ in range(rng.randrange(1, 5)):
            parts.append(self.rich_part() if rng.random() < 0.8 else self.rich_wrap())
            if rng.random() < 0.3:
                parts.append(self.rich_wrap())
        line = rng.choice(("\r", "\r\x1b[2K", "")) + "\r".join(parts)
        if rng.random() < 0.2:
            line += "\n" + self.rich_wrap()  # one line holding both (not split at "\n")
        return line

    def bar_then_print(self) -> str:
        """A print or a log line landing after a bar's last `\\r` (a shape known or not)."""
        rng = self.rng
        bar = rng.choice((self.tqdm_line, self.keras_line, self.rich_line))().rstrip("\n")
        end = rng.choice((self.clean_printed, self.printed, self.prose, self.rich_wrap, str))()
        return bar + "\r" + end + rng.choice(("", "\n", "\r", "\r\n"))

    def mixed_bar_line(self) -> str:
        """tqdm, Keras and other parts in one line of redraws."""
        rng = self.rng
        makers: list[Callable[[], str]] = [
            self.tqdm_part,
            self.keras_part,
            self.printed,
            self.rich_part,
            self.rich_wrap,
            self.prose,
            lambda: "",
        ]
        weights = (5, 3, 2, 2, 1, 1, 1)
        parts = [rng.choices(makers, weights)[0]() for _ in range(rng.randrange(2, 6))]
        return "\r" + "\r".join(parts)

    def many_parts(self) -> str:
        """More redraws in one line than the C loops hold at once (256), in a 1-byte string
        or a wider one."""
        rng = self.rng
        size = rng.choice((255, 256, 257, 300))
        if rng.random() < 0.5:
            head = self.tqdm_head()
            return "\r" + "\r".join(self.tqdm_part(head) for _ in range(size))
        return "\r" + "\r".join(
            f"Epoch 1: {n}/{size} [00:01<00:02, 4.20it/s, loss={rng.random():.3f}]"
            for n in range(size)
        )

    # -- printed lines --

    def clean_printed(self) -> str:
        """A print of a few shapes that recur (so their lines are read a column at a time)."""
        rng = self.rng
        step = rng.randrange(1, 10_000)
        return rng.choice(
            (
                f"step {step} | loss={rng.random():.4f} lr=3.0e-04",
                f"{{'loss': '{rng.random():.4f}', 'grad_norm': '{rng.random():.3f}', 'epoch': '0.5'}}",
                f"Epoch {step % 10}/10 train_loss={rng.random():.3f}",
                f"Epoch {step % 10} step {step} loss={rng.random():.3f}",
            )
        )

    def printed(self) -> str:
        rng = self.rng
        v = self.value
        step = self.digits(rng.randrange(1, 5))
        kind = rng.randrange(15)
        if kind >= 13:
            return self.clean_printed()
        if kind == 12:  # a key with digits last: its line may end inside it once damaged
            return f"step {step} loss={rng.random():.4f} top5_acc={rng.random():.3f}"
        if kind == 0:
            return f"step {step} | loss={v()} lr={v()}"
        if kind == 1:
            return f"iter {step}: loss {v()}, time {v()}ms"
        if kind == 2:
            return f"{{'loss': {v()}, 'epoch': {v()}}}"
        if kind == 3:
            return f"{{'loss': '{v()}', 'grad_norm': '{v()}', 'learning_rate': '{v()}', 'epoch': '{v()}'}}"
        if kind == 4:
            return f'{{"step": {step}, "loss": {v()}, "val": {{"acc": {v()}}}, "time": 17.5}}'
        if kind == 5:
            return f"Epoch {self.digits(1)}/10 train_loss={v()} val_loss={v()}"
        if kind == 6:
            return f"global_step: {step} loss: {v()} top5_acc: {v()} top1_acc={v()}"
        if kind == 7:
            return f"step={step} loss=tensor({v()}, grad_fn=<NllLossBackward0>)"
        if kind == 8:
            return f"step {step}: train loss {v()}, val loss {v()}"
        if kind == 9:
            return f"epoch {self.digits(1)} step {step} loss = {v()} ppl {v()}"
        if kind == 10:
            return f'{{"loss": {v()}, "epoch": {v()}}}'
        return f"it {step} loss {v()} acc: {v()}"

    def damaged(self, line: str) -> str:
        """Digits and dots changed, dropped or added (`1.2.3`, `..5`, `top_acc`): the line
        keeps its shape, so its shape's plan meets a line that does not fit it."""
        rng = self.rng
        if rng.random() < 0.1:
            return line.translate(dict.fromkeys(map(ord, "0123456789.")))
        out: list[str] = []
        for char in line:
            if char in "0123456789." and rng.random() < 0.2:
                change = rng.randrange(3)
                if change == 0:
                    char = rng.choice("0123456789..")
                elif change == 1:
                    char = ""
                else:
                    char += rng.choice("0123456789..")
            out.append(char)
        return "".join(out)

    def prose(self) -> str:
        rng = self.rng
        if rng.random() < 0.3:
            return f"INFO worker {rng.getrandbits(48):x} prefetching shard {rng.randrange(128)}"
        return rng.choice(PROSE)

    def wide(self, size: int) -> str:
        """A printed line of `size` values (past the 64 a row of the C loops holds)."""
        names = [f"m{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(size)]
        return (
            "step "
            + str(self.rng.randrange(1000))
            + " "
            + " ".join(f"{name}={self.rng.random():.3f}" for name in names)
        )

    def long_line(self) -> str:
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:
            return "x" * 100_000
        if kind == 1:
            return " ".join(f"loss{i % 7}={self.value()}" for i in range(12_000))[:100_000]
        if kind == 2:
            return "\r" + self.tqdm_part("Epoch 1: " + "█" * 100_000 + "| 5/10")
        return "step 5 " + "é" * 100_000 + " loss=0.5"

    # -- odd characters and codes anywhere --

    def sprinkle(self, line: str) -> str:
        rng = self.rng
        for _ in range(rng.randrange(1, 3)):
            at = rng.randrange(len(line) + 1)
            extra = rng.choice(
                (rng.choice(ODD_CHARS), rng.choice(ANSI_CODES), rng.choice(BROKEN_ANSI), "\b")
            )
            line = line[:at] + extra + line[at:]
        if rng.random() < 0.2:
            line += rng.choice(BROKEN_ANSI)
        return line

    def line(self) -> str:
        rng = self.rng
        kind = rng.random()
        if kind < 0.30:
            line = self.tqdm_line()
        elif kind < 0.42:
            line = self.keras_line()
        elif kind < 0.45:
            line = self.keras_header()
        elif kind < 0.50:
            line = self.rich_line()
        elif kind < 0.52:
            line = self.rich_wrap()
        elif kind < 0.57:
            line = self.mixed_bar_line()
        elif kind < 0.63:
            line = self.bar_then_print()
        elif kind < 0.85:
            line = self.printed()
        else:
            line = self.prose()
        if rng.random() < 0.1:
            line = self.damaged(line)
        if rng.random() < 0.08:
            line = self.sprinkle(line)
        return line

    def lines(self, count: int) -> list[str]:
        out = [self.line() for _ in range(count)]
        rng = self.rng
        # Runs of one bar, as a terminal receives them, and the rare monsters.
        for _ in range(count // 400):
            at = rng.randrange(len(out))
            head = self.tqdm_head()
            out[at:at] = ["\r" + self.tqdm_part(head) for _ in range(rng.randrange(5, 40))]
        for _ in range(2):
            out.insert(rng.randrange(len(out)), self.many_parts())
            out.insert(rng.randrange(len(out)), self.long_line())
        for size in (63, 64, 65, 70):
            for _ in range(3):
                out.insert(rng.randrange(len(out)), self.wide(size))
        return out


FUZZ_LINES = 16_000
SHAPES_REMEMBERED = 300
"""`MAX_SHAPES` for the fuzz: its prose of hex ids (a new shape each) fills the parsers' table
of shapes several times over, so it is started over while batches hold lines of known shapes."""


@needs_c
@pytest.mark.parametrize(("seed", "sizes"), [(11, "1"), (12, "7"), (13, "mixed"), (14, "5000")])
def test_fuzzed_lines_read_alike(monkeypatch: pytest.MonkeyPatch, seed: int, sizes: str) -> None:
    """Seeded fuzz lines, fed in chunks of one size or of sizes mixed at random (1, 7, 4096,
    5000; the same for both parsers): the C loops give exactly what Python gives."""
    monkeypatch.setattr(lines_module, "MAX_SHAPES", SHAPES_REMEMBERED)
    lines = Fuzz(seed).lines(FUZZ_LINES)
    chunk_sizes = _mixed_sizes(seed) if sizes == "mixed" else _fixed(int(sizes))
    assert _assert_same_output(monkeypatch, lines, chunk_sizes).points > FUZZ_LINES // 2


@needs_c
@pytest.mark.parametrize("seed", [21, 22])
def test_bars_once_refused_are_read_alike_without_raising(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Bars the parser once raised on (a counter `²/100` that `isdigit()` passes and `float()`
    refuses, an epoch past the floats) now raise in neither route and read alike, fed line by
    line and in batches."""
    fuzz = Fuzz(seed, refused=True)
    makers = (fuzz.tqdm_line, fuzz.keras_line, fuzz.keras_header, fuzz.rich_line)
    lines = [makers[index % 4]() for index in range(3000)]
    assert any("²" in line for line in lines)
    assert any(re.search(r"[0-9]{300}", line) for line in lines)  # an epoch past the floats
    for sizes in (_fixed(1), _mixed_sizes(seed)):
        fed = _assert_same_output(monkeypatch, lines, sizes)
        assert fed.raised == 0 and fed.points > 100


EDGE_CASES = {
    "keras epoch past 64 bits": [
        ["Epoch 9223372036854775808/10", "\r3/8 ━━━━ 0s 4ms/step - loss: 0.5"],
    ],
    "keras epoch of 63 bits": [
        ["Epoch 9223372036854775807/10", "\r3/8 ━━━━ 0s 4ms/step - loss: 0.5"],
    ],
    "tqdm total and epoch of many digits": [
        ["\rEpoch 3:  50%|█| 5/" + "9" * 30 + " [00:01<00:02, 4.20it/s, loss=0.5]"],
        ["\rEpoch " + "7" * 20 + ": 5/10 [00:01<00:02, 4.20it/s, loss=0.6]"],
    ],
    "non-ASCII digits in a counter and an epoch": [
        [
            "\rEpoch ٣:  50%|█| ٣/١٠ [00:01<00:02, 4.20it/s, loss=0.5]",
            "\r５it [00:01, 4.20it/s, x=1]",
        ],
    ],
    "256 and 257 redraws in a line": [
        ["\r".join(f"{n}/300 [00:01<00:02, 4.20it/s, loss={n}]" for n in range(size))]
        for size in (255, 256, 257)
    ],
    "a line of more than 2**16 values": [
        ["zz=3 q"],
        [" ".join(f"zz={n % 2}" for n in range(2**16 + 2)), "zz=-1", "zz=2 q"],
    ],
}
"""Inputs at the limits of the C loops (fixed-size buffers and integers), fed as given."""


@needs_c
@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_cases_read_alike(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Each edge case's batches give the C parser what they give the Python parser."""
    batches = EDGE_CASES[name]
    lines = [line for batch in batches for line in batch]
    _assert_same_output(monkeypatch, lines, iter([len(batch) for batch in batches]))


# ---- the C helpers against their Python definitions ----


def _random_text(rng: random.Random, alphabet: str, size: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(size))


@needs_c
def test_shape_is_the_utf8_bytes_without_digits_and_dots() -> None:
    """`shape(line)` is `line.encode("utf-8", "replace").translate(None, b"0123456789.")` for
    ASCII, Latin-1, UCS-2 and astral strings with surrogates, NUL, `\\r` and ESC."""
    shape = lines_module._speedups.shape
    rng = random.Random(5)
    base = "0123456789.. abc=:\r\x1b\x00\n\t"
    alphabets = (
        base,
        base + "éÿ\xa0\x85",
        base + "é━█λ\u2028٣５²\uffff",
        base + "é━\ud800\udc00\udfff",
        base + "é😀\U0010ffff\ud83d\ude00",
    )
    samples = ["", "0", ".", "\ud800", "😀", "\x00", "\r", "\x1b", "1.5" * 2000, "é" * 300]
    for _ in range(3000):
        size = rng.choice((0, 1, 2, 5, 20, 80, 300, 1100))
        samples.append(_random_text(rng, rng.choice(alphabets), size))
    for text in samples:
        want = text.encode("utf-8", "replace").translate(None, b"0123456789.")
        assert shape(text) == want, f"shape({text!r})"


def _float_outcome(read: Callable[[str], float], text: str) -> tuple[str, object]:
    try:
        value = read(text)
    except Exception as error:  # ValueError, or a subclass such as UnicodeEncodeError
        return (type(error).__name__, None)
    return (type(value).__name__, struct.pack("<d", value))  # exact: -0.0, NaN's sign


@needs_c
def test_to_float_is_float() -> None:
    """`to_float(text)` gives `float(text)`'s value bit for bit, and ValueError alike."""
    to_float = lines_module._speedups.to_float
    rng = random.Random(6)
    texts = [
        *("", " ", "-0", "+0", "0", "-0.0", ".", "-", "+", "e5", ".e5", "1.", ".5", "5e", "1e+"),
        *("nan", "-nan", "NaN", "inf", "-Infinity", "infinity", "iNf", "nan(1)", "infinit"),
        *("1_000", "1__0", "_1", "1_", "1_0.5", " 1.5", "1.5 ", "\t2\n", "1.5\xa0", "\u20031"),
        *("٣", "٣.٥", "５", "²", "1²", "0x10", "1e400", "-1e400", "1e-400", "4.9e-324", "1e-325"),
        *("9007199254740992", "9007199254740993", "9007199254740993.0", "123456789012345678"),
        *(
            "1e22",
            "1e23",
            "1.7976931348623157e308",
            "1.7976931348623159e308",
            "2.2250738585072011e-308",
        ),
        *("1\x00", "\x00", "0.1" + "0" * 70, "1" * 64, "1" * 63, "1.5e0022", "1e-00022", "1e99999"),
        *("1.2.3", "..5", "--1", "+-1", "1e1.5", "١٢٣", "1.5\ud800", "😀", "0" * 40 + "1"),
    ]
    chars = "0123456789.-+eE_ n\t" + "٣５²\xa0éx"
    for _ in range(2500):
        texts.append(_random_text(rng, chars, rng.randrange(0, 12)))
    for _ in range(2500):
        sign = rng.choice(("", "-", "+"))
        mantissa = _random_text(rng, "0123456789", rng.randrange(1, 26))
        dot = rng.randrange(len(mantissa) + 1)
        text = f"{sign}{mantissa[:dot]}.{mantissa[dot:]}" if rng.random() < 0.7 else sign + mantissa
        if rng.random() < 0.5:
            text += f"{rng.choice('eE')}{rng.choice(('', '-', '+'))}{rng.randrange(0, 400)}"
        if rng.random() < 0.1:
            text = text.rjust(len(text) + 1, rng.choice("0 "))
        texts.append(text)
        texts.append(text + "é")  # a Latin-1 string, read by the 1-byte route
        texts.append(text + "━")  # the same digits in a 2-byte string
    for text in texts:
        assert _float_outcome(to_float, text) == _float_outcome(float, text), repr(text)


CHUNK_FIELDS = len(typing.get_args(lines_module._Chunk))
"""3: a chunk is (keys, steps, values); 4: (keys, steps, values, offset), record keys being
the keys plus the offset (a group's columns share one keys list)."""


def _random_chunks(rng: random.Random) -> list[tuple[Any, ...]]:
    """One series' chunks as `_settle` receives them: keys sorted within each chunk and, with
    their offsets, distinct overall; steps of every kind the parser records."""
    nan = float("nan")
    step_pool: list[Any] = [1.0, 2.0, 2.0, 3.0, 0.0, -0.0, nan, nan, None, lines_module._COUNT]
    value_pool: list[Any] = [0.5, 0.5, 0.25, 1.0, nan, float("inf"), -0.0, 0.0]
    # Mostly one kind of step per series, as the parser records them; sometimes all kinds.
    steps_kinds = rng.choice(([None], [lines_module._COUNT], [1.0, 2.0, 3.0], step_pool, step_pool))
    count = rng.choice((1, 1, 2, 3, 5, 70))
    total = rng.randrange(count, count * 6 + 1)
    places = rng.sample(range(total * 3), total)
    used = sorted(places)
    bounds = sorted(rng.sample(range(1, total), count - 1)) if count > 1 else []
    # Each record goes to a chunk at random (none left empty): chunks interleave in key order.
    order = list(range(total))
    rng.shuffle(order)
    owner = [0] * total
    for chunk_index, (begin, end) in enumerate(zip([0, *bounds], [*bounds, total], strict=True)):
        for at in order[begin:end]:
            owner[at] = chunk_index
    chunk_keys: list[list[int]] = [[] for _ in range(count)]
    for at, chunk_index in enumerate(owner):
        chunk_keys[chunk_index].append((used[at] + 1) * 8)
    chunks: list[tuple[Any, ...]] = []
    for keys in chunk_keys:
        steps = [rng.choice(steps_kinds) for _ in keys]
        if rng.random() < 0.3:
            steps = [float(step) for step in range(len(keys))]
        values = [rng.choice(value_pool) if rng.random() < 0.8 else rng.random() for _ in keys]
        offset = rng.randrange(0, 8) if CHUNK_FIELDS == 4 else 0
        if offset:
            keys = [key - offset for key in keys]
        chunks.append((keys, steps, values, offset)[:CHUNK_FIELDS])
    if CHUNK_FIELDS == 4 and rng.random() < 0.3:
        # Columns of one group: the same keys and steps lists, offsets 0, 1, 2...
        keys = [(used[at] + 1) * 8 for at in range(total)][: max(1, total // 2)]
        shared_steps = [rng.choice(steps_kinds) for _ in keys]
        chunks = [
            (keys, shared_steps, [rng.choice(value_pool) for _ in keys], place)
            for place in range(rng.randrange(1, 5))
        ]
    rng.shuffle(chunks)
    return chunks


def _random_state(rng: random.Random) -> list[Any]:
    nan = float("nan")
    return rng.choice(
        (
            [0, None, None],
            [3, 2.0, 0.5],
            [7, None, 0.5],
            [2, nan, 0.5],
            [5, 1.0, nan],
            [rng.randrange(100), rng.choice((1.0, 2.0, 0.0)), rng.choice((0.5, 0.25, 1.0))],
        )
    )


def _copy_chunks(chunks: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Chunks with new lists (shared where the originals share them), the same items."""
    copies: dict[int, list[Any]] = {}

    def copy(items: list[Any]) -> list[Any]:
        return copies.setdefault(id(items), list(items))

    return [(copy(chunk[0]), copy(chunk[1]), copy(chunk[2]), *chunk[3:]) for chunk in chunks]


@needs_c
def test_settle_is_settle_series() -> None:
    """`settle(chunks, state, _COUNT)` returns what `_settle_series(chunks, state)` returns
    (steps and values in key order, counted steps, repeats dropped) and leaves the same state;
    the chunks it is given stay as they were."""
    settle = lines_module._speedups.settle
    rng = random.Random(8)
    for trial in range(2500):
        chunks = _random_chunks(rng)
        state = _random_state(rng)
        py_chunks = _copy_chunks(chunks)
        c_chunks = _copy_chunks(chunks)
        py_state = list(state)
        c_state = list(state)
        want = lines_module._settle_series(py_chunks, py_state)
        got = settle(c_chunks, c_state, lines_module._COUNT)
        same = (
            len(got) == 2
            and all(
                len(c) == len(py) and all(map(_same, c, py))
                for c, py in zip(got, want, strict=False)
            )
            and all(map(_same, c_state, py_state))
        )
        assert same, (
            f"trial {trial}: chunks {chunks!r}, state {state!r}:\n"
            f"C gives {got!r}, state {c_state!r}\nPython gives {want!r}, state {py_state!r}"
        )
        assert c_chunks == chunks, f"settle changed its chunks: {chunks!r} -> {c_chunks!r}"
