"""Turn a training script's own console output into metric points, with no SDK in the script.

Understands, per line (and per `\\r`-separated redraw within a line):
- plain pairs: `loss=0.53`, `loss: 0.5312`, `iter 120: loss 2.3456, time 12.3ms`
  (`train loss 2.5` becomes `train_loss`), with the step taken from `step`, `iter`,
  `global_step`, `it` or `Epoch 3/10` where the line says one and counted otherwise;
- progress bars in the form a terminal receives them: tqdm postfixes (`loss=0.505`),
  Lightning's TQDM and rich bars (`train_loss=1.410`, `train_loss: 1.410`) and Keras
  (`8/8 ━━━ 0s 4ms/step - loss: 0.2877 - val_loss: 0.3266`); a redraw that shows no new value
  adds nothing, so every value is counted once;
- printed dicts and JSON lines: transformers' `{'loss': 4.684, 'grad_norm': ..., 'epoch': 0.17}`
  (also transformers 5's string-valued `{'loss': '4.684', ...}`) and one JSON object per line.

Speed matters (the parser must keep up with a log tail and read long logs at once). CPython's
regex engine costs about a tenth of a microsecond per character when a pattern starts with a
character class, i.e. microseconds per line; substring tests and `str.split` run in C at a
small fraction of that. So lines are classified by substring tests, split into tokens with
`str.split`, and regexes only ever see a short token or a rare line shape.

The loops a long log spends its time in (sorting lines by shape, progress-bar redraws, reading
a shape's lines a column at a time, settling each series) also exist in C, in the optional
`_speedups` extension built at install time where a C compiler is found (about 3x faster). The
Python code below stays the reference: the C loops mirror it step for step, hand anything
unusual back to it, and the tests hold both to the same results. `RUNCTL_METRICS_PURE_PYTHON=1`
turns the extension off.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from functools import partial
from itertools import islice, repeat
from operator import add, and_, eq, is_not, lshift
from types import ModuleType
from typing import Any, NamedTuple

from runctl_tui.core.metrics.models import MetricPoint

_NUM = (
    r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?"
    r"|[nN]a[nN]|[iI]nf(?:inity)?)"
)
_NUM_PREFIX = re.compile(_NUM)
_KEY = re.compile(r"[A-Za-z_](?:[\w./-]*\w)?")
_DICT_PAIR = re.compile(
    rf"""['"]([^'"]+)['"]\s*:\s*['"]?\s*(?:tensor\()?({_NUM})['"]?(?=\s*[,}})])"""
)
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][A-Za-z0-9])")
_RICH_COUNTER = re.compile(r"━[━╺╸╾╼ ]*\s(\d+)/(\d+)\s")
_KERAS_EPOCH = re.compile(r"^\s*Epoch (\d+)/(\d+)\s*$")
_EPOCH_IN_DESC = re.compile(r"[Ee]poch[ _:=]*(\d+)")

STEP_KEYS = frozenset(
    {
        "step",
        "steps",
        "global_step",
        "globalstep",
        "iter",
        "iters",
        "iteration",
        "it",
        "_step",
        "trainer/global_step",
        "train/global_step",
        "train/step",
        "num_steps",
        "n_iter",
    }
)
"""Names (lower-cased) whose value is the step of the line, not a series."""
EPOCH_KEYS = frozenset({"epoch", "epochs"})
_IGNORED = frozenset({"v_num"})
_TIME_KEYS = frozenset({"time", "timestamp", "wall_time", "walltime", "_timestamp", "ts"})
"""Wall-clock keys of a JSON line: when it was written, not a metric."""
_PREFIXES = frozenset({"train", "val", "valid", "validation", "eval", "test"})
"""`train loss 2.5` is `train_loss`."""
# Words that precede a number in prose (`took 12.5 s`, `shard 3 of 100`, `using: 0 TPU cores`)
# and never name a metric.
_STOPWORDS = frozenset(
    """a an and at after before by for from in into is of on or the to was were with took
    saved saving save load loading loaded using use used rank gpu gpus worker workers pid
    line version python cuda seed shard shards top batch batches size files file process
    processes threads thread total found in_features out_features""".split()  # noqa: SIM905
)
_QUALIFY = ("loss", "step", "iter", "poch", "Loss", "Step", "Iter", "acc", "ppl", "lr ")
_NUM_START = frozenset("0123456789-+.nNiI")
_DIGITS = frozenset("0123456789")
_KEY_STRIP = "|[({,;"
_QUOTES = "`'\""


MAX_SHAPES = 4096
"""Line shapes remembered at most (then forgotten all at once)."""
_SHAPE_DELETE = b"0123456789."
_SHAPE_DELETE_CHARS = frozenset("0123456789.")
_VALUE_START = frozenset("0123456789-+.nNiIt'\"")
_TRAILING = ",;|)]}'\"%:"
_METRIC, _STEP, _EPOCH = 0, 1, 2
_UNKNOWN: Any = object()
_BATCH = 4096
"""Lines whose shapes `feed` computes in one pass: few enough that a 64 MB read does not hold
a second copy of itself, many enough that the per-pass cost vanishes."""
_MARKERS = (b"\x1b", b"\r", b"it/s", b"/step")
"""What sends a line past its shape's plan to the general route (see `LineMetricsParser._line`)."""
_make_point = partial(tuple.__new__, MetricPoint)
_COUNT: Any = object()
"""A recorded point's step when the line gave none and the series counts its points."""
_KEY_BITS = 32
"""A record's key is its line's index in the batch shifted left by this, plus its place in
the line: sorting by key puts a series' records back in the order they were written. 32 bits:
no line holds 2**32 values, so one line's places never reach the next line's keys."""

PURE_PYTHON_VARIABLE = "RUNCTL_METRICS_PURE_PYTHON"
"""Set to 1 to parse without the C extension (same results, slower)."""

Columns = tuple[list[float | None], list[float]]
"""One series' new points as `(steps, values)`."""
_Chunk = tuple[list[int], list[Any], list[float], int]
"""Records of one series not yet counted: (keys, steps or `_COUNT`, values, offset); a
record's key is its entry in keys plus the offset (columns of one group share their keys)."""


class _Plan(NamedTuple):
    """What a line shape holds: which token (and which slice of it) is which series."""

    size: int
    """Number of whitespace-separated tokens."""
    dict_mode: bool
    """A printed dict or JSON line: no counted steps, `epoch` is a series."""
    slices: tuple[tuple[int, int, int | None], ...]
    """(token index, start, end) of each value's text."""
    metrics: tuple[tuple[str, int], ...]
    """(series name, index into the values) in line order."""
    step_at: int
    """Index of the step among the values, -1 when the line has none."""
    epoch_at: int
    """Index of the epoch among the values (plain lines), -1 when none."""
    checks: tuple[tuple[int, str], ...]
    """(token index, text it starts with) for keys whose digits the shape does not keep."""
    sample: str
    """The line the plan was made from (its regex is made from it when first needed)."""


class _Bucket(list[int]):
    """A shape's plan and the indices of the lines of that shape in the batch being read."""

    __slots__ = ("plan", "shape")

    def __init__(self, plan: _Plan, shape: bytes) -> None:
        super().__init__()
        self.plan = plan
        self.shape = shape


def _colon_number(s: str) -> bool:
    """Whether a `word: <number>` may be in the line (not a time of day such as `12:30`)."""
    pos = s.find(":")
    while pos > 0:
        after = s[pos + 1 : pos + 3].lstrip()[:1]
        if after and after in _NUM_START and s[pos - 1] not in _DIGITS:
            return True
        pos = s.find(":", pos + 1)
    return False


def _number_span(token: str) -> tuple[float, int, int] | None:
    """The number in a value token and where it is: `0.53,` `12.3ms` `tensor(0.7,` `'4.6',`.

    Returns:
        (value, start, end) with `token[start:end]` the number's text, or None. A number
        running on into a date, a time or a counter (`2026-05-01`, `12:00`) is refused.
    """
    start = 7 if token.startswith("tensor(") else (1 if token[:1] in "'\"" else 0)
    text = token[start:].rstrip(_TRAILING)
    try:
        return float(text), start, start + len(text)
    except ValueError:
        pass
    match = _NUM_PREFIX.match(token, start)
    if match is None:
        return None
    end = match.end()
    rest = token[end:]
    if rest:
        first = rest[0]
        if (
            first in _DIGITS
            or first == "."
            or (first in "-:" and len(rest) > 1 and rest[1] in _DIGITS)
        ):
            return None
    return float(match.group()), start, end


def _qualifies(text: str) -> bool:
    """Whether a line looks like a metric line, so `key value` pairs in it count."""
    # A plain loop: any() over a generator costs a frame per line on the hot path.
    for word in _QUALIFY:  # noqa: SIM110
        if word in text:
            return True
    return False


def _number(token: str) -> float | None:
    """The number a value token holds (see `_number_span`), else None."""
    span = _number_span(token) if token else None
    return span[0] if span is not None else None


def _valid_key(key: str) -> bool:
    return key.isidentifier() or _KEY.fullmatch(key) is not None


class LineMetricsParser:
    """Stateful parser of console lines into `MetricPoint`s; feed lines as they arrive.

    State carried between lines: the last postfix each kind of progress bar showed (a redraw
    with the same postfix adds nothing), Keras's `Epoch 3/10` header, the last point of every
    series (the same step and value twice is one point) and per-series counts for lines that
    give no step.
    """

    def __init__(self, extra_patterns: Sequence[str] = ()) -> None:
        """Create a parser.

        Args:
            extra_patterns: Regexes for exotic formats, from `[monitor] metrics_regex`. Named
                groups `name` and `value` (and optionally `step`) make one point per match;
                any other named group holding a number becomes a series of that group's name.

        Raises:
            re.error: A pattern does not compile.
        """
        self._extra = [re.compile(p) for p in extra_patterns]
        self._fast = _speedups if not self._extra else None
        """The C loops (see the module's docstring), or None to run them in Python."""
        self._table = self._fast.ShapeTable() if self._fast is not None else None
        """The C loops' cache of `_clean`, cleared with it."""
        self._series: dict[str, list[Any]] = {}
        self._bar_tail: dict[str, str] = {}
        self._bar_shown: dict[str, dict[str, str]] = {}
        self._keras_epoch: int | None = None
        self._prev_kind = ""
        self._rich_step: tuple[float, float | None, int | None] = (0.0, None, None)
        self._plans: dict[bytes, _Plan | None] = {}
        self._clean: dict[bytes, _Bucket | None] = {}
        """The shapes without a marker of `_MARKERS`: `_batch` puts their lines in buckets."""
        self._rows: dict[bytes, tuple[_Plan, _Row | None]] = {}
        """What reads a whole group of lines of a shape's plan (None: read line by line)."""
        self._key = 0
        self._malformed = False
        """Whether the line `_tokens` read last had a number it could not read (`0.02.18`);
        its plan would miss that series for every later line of its shape."""
        self._tqdm_tail = ""
        self._tqdm_steps: dict[str, float] = {}
        """The step of each tqdm head seen lately (see `_tqdm`)."""
        self._tqdm_shown: dict[str, str] = {}

    def feed(self, lines: Iterable[str]) -> list[MetricPoint]:
        """Parse lines into points (see `feed_columns`), grouped by series.

        Args:
            lines: Console lines in the order they were written.

        Returns:
            The new points: each series' points in occurrence order, the series in the order
            they first appeared.
        """
        points: list[MetricPoint] = []
        for name, (steps, values) in self.feed_columns(lines).items():
            points.extend(map(_make_point, zip(repeat(name), steps, values)))
        return points

    def feed_columns(self, lines: Iterable[str]) -> dict[str, Columns]:
        """Parse lines (each may hold `\\r` redraws and ANSI codes; newline optional).

        Args:
            lines: Console lines in the order they were written.

        Returns:
            The new points of each series as `(steps, values)` columns in occurrence order,
            the series in the order they first appeared. The lists are the caller's.
        """
        out: dict[str, Columns] = {}
        remaining = iter(lines)
        while batch := list(islice(remaining, _BATCH)):
            pending: dict[str, list[_Chunk]] = {}
            loose: dict[str, _Chunk] = {}
            touched: list[_Bucket] = []
            try:
                if self._extra:
                    for index, line in enumerate(batch):
                        self._key = index << _KEY_BITS
                        self._line(line, loose)
                else:
                    self._batch(batch, loose, touched)
                    for bucket in touched:
                        self._group(bucket, batch, pending)
            except BaseException:
                # No line of a failed batch may stay in a bucket: the next batch would never
                # read that bucket again (it reads the buckets that its own lines fill first).
                for bucket in touched:
                    bucket.clear()
                raise
            _add_chunks(pending, loose.items())
            self._settle(pending, out)
        return out

    def _batch(
        self,
        lines: list[str],
        loose: dict[str, _Chunk],
        touched: list[_Bucket],
    ) -> None:
        """Sort a bounded number of lines into shape groups (their buckets, each added to
        `touched` as it gets its first line, are read a column at a time after this) and the
        rest (parsed line by line into `loose`)."""
        if self._fast is not None:
            self._scan(self._fast, lines, loose, touched)
            return
        line_path = self._line
        # The shapes of all lines at once: one join, encode, translate and split in C for
        # the whole batch. A line holding the separator would shift the shapes; the count
        # shows it.
        shapes = "\0".join(lines).encode("utf-8", "replace").translate(None, _SHAPE_DELETE)
        shape_list = shapes.split(b"\0")
        if len(shape_list) != len(lines):
            for index, line in enumerate(lines):
                self._key = index << _KEY_BITS
                line_path(line, loose)
            return
        previous = self._prev_kind
        unknown = _UNKNOWN
        # A shape in `_clean` holds no `\r`, ANSI code or progress-bar marker, so neither
        # does its line (removing digits cannot remove them): the line joins its shape's
        # bucket, parsed with the others after this loop. The others go line by line.
        for index, bucket in enumerate(map(self._clean.get, shape_list, repeat(unknown))):
            if bucket is None:
                if not previous:
                    continue  # a shape known to hold no metric
            elif bucket is not unknown and not previous:
                if not bucket:
                    touched.append(bucket)
                bucket.append(index)
                continue
            self._key = index << _KEY_BITS
            line_path(lines[index], loose)
            previous = self._prev_kind

    def _scan(
        self,
        fast: ModuleType,
        lines: list[str],
        loose: dict[str, _Chunk],
        touched: list[_Bucket],
    ) -> None:
        """`_batch` with its loop in C: `fast.scan` sorts lines into their shapes' buckets and
        reads lines of progress-bar redraws until a line needs the general route, read here."""
        size = len(lines)
        index = 0
        while index < size:
            if not self._prev_kind:
                index = fast.scan(
                    self, lines, index, self._clean, _UNKNOWN, loose, touched, self._table
                )
                if index >= size:
                    break
            self._key = index << _KEY_BITS
            self._line(lines[index], loose)
            index += 1

    def _group(self, bucket: _Bucket, lines: list[str], pending: dict[str, list[_Chunk]]) -> None:
        """Parse the lines of one shape a column at a time: one pass over all of them (the C
        loops' template, or the regex) and `float` over each value's column."""
        plan = bucket.plan
        indices = bucket[:]
        bucket.clear()
        row = self._row(bucket.shape, plan)
        if row is not None and self._fast is not None:
            columns = self._fast.read_rows(row.template, lines, indices)
            if columns:
                self._group_chunks(plan, columns, indices, pending)
                return
        group = list(map(lines.__getitem__, indices))
        pattern = row.pattern if row is not None else None
        if pattern is not None:
            size = len(group)
            text = "".join(group) if group[0][-1:] == "\n" else "\n".join(group)
            parts = pattern.split(text)
            width = pattern.groups + 1
            # The regex matches whole lines only, so the text between two matches is a bare
            # line end exactly when every line matched (no line holds an inner newline: its
            # shape would show it): then part 1 + j + i * width is value j of line i.
            if len(parts) == size * width + 1 and not parts[0]:
                ends = parts[width::width]
                if ends.count("\n") + (ends[-1] == "") == size:
                    try:
                        values = [list(map(float, parts[at::width])) for at in range(1, width)]
                    except ValueError:
                        values = []
                    if values:
                        self._group_chunks(plan, values, indices, pending)
                        return
        # Line by line, into chunks of their own: `loose` already holds later lines.
        apply = self._apply
        own: dict[str, _Chunk] = {}
        for index, line in zip(indices, group, strict=True):
            self._key = index << _KEY_BITS
            if not apply(plan, bucket.shape, line, own):
                self._slow(line, bucket.shape, own, learn=False)
        _add_chunks(pending, own.items())

    @staticmethod
    def _group_chunks(
        plan: _Plan,
        values: list[list[float]],
        indices: list[int],
        pending: dict[str, list[_Chunk]],
    ) -> None:
        """The per-series chunks of a group's value columns (see `_apply` for the rules)."""
        size = len(indices)
        steps: list[Any]
        if plan.step_at >= 0:
            steps = values[plan.step_at]
        elif plan.epoch_at >= 0 and not plan.dict_mode:
            steps = values[plan.epoch_at]
        else:
            steps = [None if plan.dict_mode else _COUNT] * size
        keys = list(map(lshift, indices, repeat(_KEY_BITS)))
        columns = [(name, values[at]) for name, at in plan.metrics]
        if plan.epoch_at >= 0 and plan.step_at >= 0:
            columns.append(("epoch", values[plan.epoch_at]))
        _add_chunks(
            pending,
            ((name, (keys, steps, column, place)) for place, (name, column) in enumerate(columns)),
        )

    def _settle(self, pending: dict[str, list[_Chunk]], out: dict[str, Columns]) -> None:
        """Put each series' chunks in line order and apply the per-series rules: a step
        counted where the line gave none, the same (step, value) twice is one point."""
        series = self._series
        # Series in the order they first appeared (the first key of each chunk is its least).
        ordered = sorted(
            pending.items(), key=lambda item: min(chunk[0][0] + chunk[3] for chunk in item[1])
        )
        fast = self._fast
        for name, chunks in ordered:
            state = series.get(name)
            if state is None:
                state = series[name] = [0, None, None]
            if fast is not None:
                steps, values = fast.settle(chunks, state, _COUNT)
            else:
                steps, values = _settle_series(chunks, state)
            if not values:
                continue
            columns = out.get(name)
            if columns is None:
                out[name] = (list(steps), list(values))
            else:
                columns[0].extend(steps)
                columns[1].extend(values)

    def _line(self, line: str, out: dict[str, _Chunk]) -> None:
        """Parse one line by the general route (redraws, ANSI codes, bars, extra patterns)."""
        if "\x1b" in line:
            line = _ANSI.sub("", line)
        if "\r" in line:
            if "\x08" in line:
                line = line.replace("\x08", "")
            special = bool(self._extra)
            for part in line.split("\r"):
                if not part:
                    continue
                if not special and "it/s" in part and " [" in part and "━" not in part:
                    self._prev_kind = ""
                    self._tqdm(part, out)  # a tqdm redraw: skip the dispatcher
                else:
                    self._segment(part, out)
        else:
            self._segment(line, out)

    # The dispatcher: progress bars by substring tests; every other line by its shape.
    def _segment(self, s: str, out: dict[str, _Chunk]) -> None:
        if self._extra:
            self._apply_extra(s, out)
        previous = self._prev_kind
        self._prev_kind = ""
        if previous == "rich" and s.startswith("          ") and ": " in s:
            # Rich wraps a long postfix onto the next terminal line (`val_loss: 0.826`).
            step, total, epoch = self._rich_step
            self._bar("rich+", s.strip(), step, total, epoch, out, colon=True)
            self._prev_kind = "rich"
            return
        if "it/s" in s:
            if "━" in s:
                self._rich(s, out)
                return
            if " [" in s and "]" in s:
                self._tqdm(s, out)
                return
        elif "/step" in s:
            self._keras(s, out)
            return
        # Lines printed by the same statement differ only in their digits: with the digits
        # removed, the line's shape keys a plan that says which token holds which series.
        shape = s.encode("utf-8", "replace").translate(None, _SHAPE_DELETE)
        plan = self._plans.get(shape, _UNKNOWN)
        if plan is None:
            return  # a shape known to hold no metric
        if plan is not _UNKNOWN and self._apply(plan, shape, s, out):
            return
        self._slow(s, shape, out)

    def _row(self, shape: bytes, plan: _Plan) -> _Row | None:
        """The regex and template of a shape's plan (see `_row_template`), made once."""
        cached = self._rows.get(shape)
        if cached is not None and cached[0] is plan:
            return cached[1]
        template = _row_template(plan)
        row = None
        if template is not None:
            row = _Row(re.compile(_template_regex(template), re.MULTILINE), template)
        self._rows[shape] = (plan, row)
        return row

    def _remember(self, shape: bytes, plan: _Plan | None) -> None:
        plans = self._plans
        if shape in plans:
            # A line that did not fit its shape's plan (`loss 1.2.3`) does not replace it:
            # the lines after it would lose what the first plan reads.
            return
        if len(plans) >= MAX_SHAPES:
            plans.clear()  # unbounded variety (hashes, paths): start over, stay bounded
            self._clean.clear()
            self._rows.clear()
            if self._table is not None:
                self._table.clear()
        plans[shape] = plan
        if not any(marker in shape for marker in _MARKERS):
            self._clean[shape] = _Bucket(plan, shape) if plan is not None else None

    def _slow(self, s: str, shape: bytes, out: dict[str, _Chunk], *, learn: bool = True) -> None:
        """Parse a line of a shape not seen before, and remember what its shape holds.

        Args:
            s: The line.
            shape: Its shape.
            out: Where its points go.
            learn: False to leave the shapes' plans as they are (a line read after the
                lines that followed it, which may have changed them).
        """
        stripped = s.lstrip()
        if stripped[:1] == "{":
            if "[" in s or s.count("{") > 1 or ": " not in s:
                self._dict_line(s, out)  # nested or compact: not a token shape
                return
            plan = self._tokens(s, out, dict_mode=True)
            if plan is None:
                self._dict_line(s, out)
            elif learn and not self._malformed:
                self._remember(shape, plan)
            return
        if "Epoch " in s:
            match = _KERAS_EPOCH.match(s)
            if match:
                self._keras_epoch = int(match.group(1))
                return
        if "=" in s or _qualifies(s) or _colon_number(s):
            plan = self._tokens(s, out, dict_mode=False)
            if learn and not self._malformed:
                self._remember(shape, plan)
        elif learn:
            self._remember(shape, None)

    def _emit(
        self, name: str, step: float | None, value: float, out: dict[str, _Chunk], count: bool
    ) -> None:
        # Recorded, not yet counted: `_settle` orders each series' records with those parsed a
        # column at a time and applies the per-series rules.
        chunk = out.get(name)
        if chunk is None:
            chunk = out[name] = ([], [], [], 0)
        chunk[0].append(self._key)
        self._key += 1
        chunk[1].append(_COUNT if step is None and count else step)
        chunk[2].append(value)

    def _finish(
        self,
        step: float | None,
        epoch: float | None,
        metrics: list[tuple[str, float]],
        out: dict[str, _Chunk],
        dict_mode: bool,
    ) -> None:
        if not metrics:
            return
        if not dict_mode:
            if step is None:
                step = epoch
            elif epoch is not None:
                metrics.append(("epoch", epoch))
        emit = self._emit
        for name, value in metrics:
            emit(name, step, value, out, not dict_mode)

    def _apply(self, plan: _Plan, shape: bytes, s: str, out: dict[str, _Chunk]) -> bool:
        """Parse a line with its shape's plan; False when the line does not fit it after all."""
        row = self._row(shape, plan)
        if row is None:
            return False
        match = row.pattern.fullmatch(s, 0, len(s) - 1 if s[-1:] == "\n" else len(s))
        if match is None:
            return False
        try:
            values = list(map(float, match.groups()))
        except ValueError:
            return False
        step: float | None = None
        epoch: float | None = None
        if plan.step_at >= 0:
            step = values[plan.step_at]
        if plan.epoch_at >= 0:
            epoch = values[plan.epoch_at]
        if step is None and not plan.dict_mode:
            step = epoch
        count = not plan.dict_mode
        emit = self._emit
        for name, at in plan.metrics:
            emit(name, step, values[at], out, count)
        if epoch is not None and plan.epoch_at >= 0 and plan.step_at >= 0:
            emit("epoch", step, epoch, out, count)
        return True

    def _tokens(self, s: str, out: dict[str, _Chunk], *, dict_mode: bool) -> _Plan | None:
        """Parse `key=value`, `key: value`, `key value` tokens; return the line's plan.

        Returns:
            The plan (which token holds which series), or None when the line has no metric.
        """
        tokens = s.split()
        size = len(tokens)
        qualifies: bool | None = None
        self._malformed = False
        step: float | None = None
        epoch: float | None = None
        metrics: list[tuple[str, float]] = []
        entries: list[tuple[int, int, int | None, str, int]] = []
        checks: list[tuple[int, str]] = []
        i = 0
        while i < size:
            token = tokens[i]
            i += 1
            key_index = i - 1
            offset = 0
            eq = -1 if dict_mode else token.find("=")
            if eq >= 0:
                key = token[:eq]
                raw = token[eq + 1 :]
                offset = eq + 1
                if not raw and i < size:
                    raw = tokens[i]
                    offset = 0
                    i += 1
                if not key and eq == 0 and len(token) == 1 and i >= 3:  # `loss = 0.5`
                    key_index = i - 3
                    key = tokens[key_index]
            elif token[-1] == ":" and len(token) > 1:
                if i >= size or tokens[i][0] not in _VALUE_START:
                    continue
                key = token[:-1]
                raw = tokens[i]
                i += 1
            elif dict_mode:
                continue
            else:
                colon = token.find(":")
                if 0 < colon < len(token) - 1 and token[colon + 1] in _VALUE_START:
                    key = token[:colon]
                    raw = token[colon + 1 :]
                    offset = colon + 1
                elif i < size and tokens[i][0] in _VALUE_START:
                    if qualifies is None:
                        qualifies = _qualifies(s)
                    if not qualifies:
                        continue
                    key = token
                    raw = tokens[i]
                    i += 1
                else:
                    continue
            value_index = i - 1
            if dict_mode:
                key = key.lstrip("{").strip("'\"")
            else:
                key = key.lstrip(_KEY_STRIP)
                if not key or key[0] in _QUOTES:  # `code` in prose
                    continue
            if not key or not _valid_key(key):
                continue
            span = _number_span(raw)
            if span is None:
                if _MALFORMED_NUMBER.search(raw):
                    self._malformed = True  # `loss: 0.02.18`: not a line to learn from
                continue
            value, begin, end = span
            lower = key.lower()
            if key in _IGNORED or (not dict_mode and lower in _STOPWORDS):
                continue
            role = _METRIC
            if lower in STEP_KEYS:
                role = _STEP
            elif dict_mode and lower in _TIME_KEYS:
                continue
            elif not dict_mode and lower in EPOCH_KEYS:
                role = _EPOCH
            elif not dict_mode:
                back = key_index - 1
                if back >= 0 and tokens[back] in _PREFIXES:
                    key = f"{tokens[back]}_{key}"
            if role == _STEP:
                if step is not None:
                    continue
                step = value
            elif role == _EPOCH:
                if epoch is not None:
                    continue
                epoch = value
            else:
                metrics.append((key, value))
            entries.append(
                (value_index, offset + begin, end - len(raw) if end < len(raw) else None, key, role)
            )
            key_token = tokens[key_index]
            if not _SHAPE_DELETE_CHARS.isdisjoint(key_token):
                # The shape lost this key's digits (`top5_acc`): check them on every line.
                prefix = key_token if key_index != value_index else token[:offset]
                checks.append((key_index, prefix))
        if not metrics and step is None:
            return None
        self._finish(step, epoch, metrics, out, dict_mode)
        roles = [entry[4] for entry in entries]
        return _Plan(
            size,
            dict_mode,
            tuple((index, begin, end) for index, begin, end, _, _ in entries),
            tuple((entry[3], at) for at, entry in enumerate(entries) if entry[4] == _METRIC),
            roles.index(_STEP) if _STEP in roles else -1,
            roles.index(_EPOCH) if _EPOCH in roles else -1,
            tuple(checks),
            s,
        )

    def _dict_line(self, s: str, out: dict[str, _Chunk]) -> None:
        stripped = s.strip()
        pairs: list[tuple[str, float]] = []
        if stripped.startswith('{"'):
            try:
                data = json.loads(stripped)
            except ValueError:
                data = None
            if isinstance(data, dict):
                _flatten(data, "", pairs)
            else:
                pairs = [(k, float(v)) for k, v in _DICT_PAIR.findall(stripped)]
        else:
            pairs = [(k, float(v)) for k, v in _DICT_PAIR.findall(stripped)]
        step: float | None = None
        metrics: list[tuple[str, float]] = []
        for key, value in pairs:
            lower = key.lower()
            if lower in STEP_KEYS:
                if step is None:
                    step = value
            elif lower not in _TIME_KEYS:
                metrics.append((key, value))
        self._finish(step, None, metrics, out, True)

    def _bar(
        self,
        kind: str,
        tail: str,
        step: float,
        total: float | None,
        epoch: int | None,
        out: dict[str, _Chunk],
        *,
        colon: bool,
    ) -> None:
        if epoch is not None and total:
            try:
                step = epoch * total + step
            except OverflowError:
                pass  # an epoch past the floats (a garbled header): the bar's own count
        pairs: list[tuple[str, str]] = []
        if colon:  # `loss: 0.5 - val_loss: 0.6` (Keras) or `v_num: 0 train_loss: 1.4` (rich)
            tokens = tail.replace(" - ", " ").split()
            for index in range(len(tokens) - 1):
                token = tokens[index]
                if token[-1] == ":":
                    pairs.append((token[:-1], tokens[index + 1]))
        else:  # tqdm: `v_num=0, train_loss=1.41`
            for item in tail.split(", "):
                key, sep, raw = item.partition("=")
                if sep:
                    pairs.append((key.strip(), raw))
        # A postfix keeps showing a value until it changes (Lightning shows val_loss beside
        # every later train_loss): only a changed text is a new value.
        shown = self._bar_shown.setdefault(kind, {})
        for key, raw in pairs:
            if key in _IGNORED or shown.get(key) == raw or not _valid_key(key):
                continue
            shown[key] = raw
            value = _number(raw)
            if value is not None:
                self._emit(key, step, value, out, False)

    def _tqdm(self, s: str, out: dict[str, _Chunk]) -> None:
        # The hottest path of a captured terminal: one call per bar redraw, kept to a few
        # string operations until the postfix shows something new.
        start = s.rfind(" [")
        end = s.find("]", start)
        if start < 0 or end < 0:
            self._tokens(s, out, dict_mode=False)
            return
        parts = s[start + 2 : end].split(", ", 2)
        tail = parts[2] if len(parts) > 2 else ""
        if tail == self._tqdm_tail:
            return  # a redraw (time, rate, bar) with no new value
        self._tqdm_tail = tail
        if not tail:
            return
        # The step a head (`Epoch 1:  54%|█████ | 54/100`) says, remembered: a bar redraws
        # the same heads again and again.
        head = s[:start]
        step = self._tqdm_steps.get(head)
        if step is None:
            step = self._tqdm_step(head)
            if step is None:
                return
            if len(self._tqdm_steps) > 4096:
                self._tqdm_steps.clear()
            self._tqdm_steps[head] = step
        shown = self._tqdm_shown
        for item in tail.split(", "):
            eq = item.find("=")
            if eq <= 0:
                continue
            key = item[:eq]
            raw = item[eq + 1 :]
            if shown.get(key) == raw:
                continue  # Lightning keeps showing val_loss beside every later train_loss
            shown[key] = raw
            if key in _IGNORED or not (key.isidentifier() or _valid_key(key)):
                continue
            try:
                value = float(raw)
            except ValueError:
                number = _number(raw)
                if number is None:
                    continue
                value = number
            # `_emit(key, step, value, out, False)`, inlined: once per value a bar shows.
            chunk = out.get(key)
            if chunk is None:
                chunk = out[key] = ([], [], [], 0)
            chunk[0].append(self._key)
            self._key += 1
            chunk[1].append(step)
            chunk[2].append(value)

    def _tqdm_step(self, head: str) -> float | None:
        """The step of a tqdm redraw from what precedes its ` [`: its counter, plus the
        epoch times the total when its description names an epoch; None without one."""
        counter = head[head.rfind(" ") + 1 :]
        slash = counter.find("/")
        if slash >= 0:
            done = counter[:slash]
            total = counter[slash + 1 :]
        else:
            done = counter[:-2] if counter.endswith("it") else counter
            total = ""
        # isdecimal, not isdigit: `²` is a digit that float() refuses.
        if not done.isdecimal():
            return None
        step = float(done)
        if total.isdecimal() and "poch" in head:
            bar = head.find("|")
            match = _EPOCH_IN_DESC.search(head[: bar if bar >= 0 else len(head)])
            try:
                step += (int(match.group(1)) if match else 0) * float(total)
            except OverflowError:
                pass  # an epoch past the floats (a garbled description): the bar's own count
        return step

    def _rich(self, s: str, out: dict[str, _Chunk]) -> None:
        rate = s.find("it/s")
        tail = s[rate + 4 :].strip()
        match = _RICH_COUNTER.search(s, 0, rate)
        if match is None:
            return
        head = s[: match.start()]
        epoch_match = _EPOCH_IN_DESC.search(head) if "poch" in head else None
        epoch = int(epoch_match.group(1)) if epoch_match else None
        total = float(match.group(2))
        self._rich_step = (float(match.group(1)), total, epoch)
        self._prev_kind = "rich"
        if self._bar_tail.get("rich") == tail:
            return
        self._bar_tail["rich"] = tail
        self._bar("rich", tail, float(match.group(1)), total, epoch, out, colon=True)

    def _keras(self, s: str, out: dict[str, _Chunk]) -> None:
        mark = s.find("/step")
        tail = s[mark + 5 :]
        if self._bar_tail.get("keras") == tail:
            return
        counter = s.split(None, 1)[0] if s.strip() else ""
        done, slash, total = counter.partition("/")
        if not slash or not done.isdecimal():
            self._tokens(s, out, dict_mode=False)
            return
        self._bar_tail["keras"] = tail
        # Keras numbers epochs from 1 in its `Epoch 3/10` header.
        epoch = self._keras_epoch - 1 if self._keras_epoch is not None else None
        self._bar(
            "keras",
            tail,
            float(done),
            float(total) if total.isdecimal() else None,
            epoch,
            out,
            colon=True,
        )

    def _apply_extra(self, s: str, out: dict[str, _Chunk]) -> None:
        for pattern in self._extra:
            for match in pattern.finditer(s):
                groups = match.groupdict()
                raw_step = groups.get("step")
                step = _number(raw_step) if raw_step else None
                name = groups.get("name")
                raw = groups.get("value")
                if name and raw:
                    value = _number(raw)
                    if value is not None:
                        self._emit(name, step, value, out, True)
                for key, text in groups.items():
                    if key not in ("name", "value", "step") and text is not None:
                        value = _number(text)
                        if value is not None:
                            self._emit(key, step, value, out, True)


def _add_chunks(pending: dict[str, list[_Chunk]], chunks: Iterable[tuple[str, _Chunk]]) -> None:
    """Add each series' chunk to the batch's pending ones."""
    for name, chunk in chunks:
        known = pending.get(name)
        if known is None:
            pending[name] = [chunk]
        else:
            known.append(chunk)


def _settle_series(chunks: list[_Chunk], state: list[Any]) -> tuple[list[Any], list[float]]:
    """A series' records of a batch in line order, by the per-series rules (see `_settle`).

    Args:
        chunks: The series' (keys, steps, values, offset) chunks, each in key order.
        state: The series' [count, last step, last value], updated.
    """
    keys: list[int]
    steps: list[Any]
    values: list[float]
    if len(chunks) == 1:
        keys, steps, values, _ = chunks[0]
    else:
        keys = []
        steps = []
        values = []
        for chunk_keys, chunk_steps, chunk_values, offset in chunks:
            keys += map(add, chunk_keys, repeat(offset)) if offset else chunk_keys
            steps += chunk_steps
            values += chunk_values
        order = sorted(range(len(keys)), key=keys.__getitem__)
        steps = list(map(steps.__getitem__, order))
        values = list(map(values.__getitem__, order))
    size = len(values)
    if steps[0] is None and steps.count(None) == size:
        # No steps (printed dicts): never compared, never counted.
        state[0] += size
        state[1] = None
        state[2] = values[-1]
    elif _COUNT not in steps:
        # Steps given: a point repeats the last one only if it equals the point before it (a
        # dropped repeat equals the point kept before it), all in C.
        if (steps[0] is not None and steps[0] == state[1] and values[0] == state[2]) or (
            any(map(eq, islice(steps, 1, None), steps))
            and any(
                map(
                    and_,
                    map(is_not, islice(steps, 1, None), repeat(None)),
                    map(
                        and_,
                        map(eq, islice(steps, 1, None), steps),
                        map(eq, islice(values, 1, None), values),
                    ),
                )
            )
        ):
            steps, values = _settle_slowly(state, steps, values)
        else:
            state[0] += size
            state[1] = steps[-1]
            state[2] = values[-1]
    elif steps.count(_COUNT) == size:
        first = state[0] + 1
        steps = list(map(float, range(first, first + size)))
        state[0] += size
        state[1] = steps[-1]
        state[2] = values[-1]
    else:
        steps, values = _settle_slowly(state, steps, values)
    return steps, values


def _settle_slowly(
    state: list[Any], steps: list[Any], values: list[float]
) -> tuple[list[float | None], list[float]]:
    """`LineMetricsParser._settle` one point at a time, for the chunks that need it."""
    count, last_step, last_value = state
    kept_steps: list[float | None] = []
    kept_values: list[float] = []
    for step, value in zip(steps, values, strict=True):
        if step is _COUNT:
            step = float(count + 1)
        elif step is not None and step == last_step and value == last_value:
            continue  # the same point spelled twice (a bar redraw, a repeated print)
        count += 1
        last_step = step
        last_value = value
        kept_steps.append(step)
        kept_values.append(value)
    state[0] = count
    state[1] = last_step
    state[2] = last_value
    return kept_steps, kept_values


_TOKEN = re.compile(r"\S+")
_MALFORMED_NUMBER = re.compile(r"\.[0-9]*\.|[0-9][eE][-+]?\.")
"""A number whose digits or dots went wrong (`0.02.18`, `4.5e-.1`): its line may not teach a
plan, or the plan would miss that series in every later line of the shape."""
_DIGIT_RUN = re.compile(r"[0-9.]+")


_RUN, _OPEN, _CLOSE = 0, 1, 2
"""Template items besides literal text: a run of digits and dots (`[0-9.]*`), the start and
the end of a captured value."""
_Template = tuple[str | int, ...]


class _Row(NamedTuple):
    """How the lines of one shape are read: a regex (Python) and the same as a template (C)."""

    pattern: re.Pattern[str]
    template: _Template


def _row_template(plan: _Plan) -> _Template | None:
    """The lines `plan` reads, as literal text, runs of digits and dots, and captured values.

    Lines of one shape differ only in their runs of digits and dots, so the template is the
    plan's sample line with those runs made variable, each value's text captured and the
    digits of keys that hold some (`top5_acc`) kept literal. A line matching it is read
    exactly as the sample was. None when the sample does not lend itself to one.
    """
    line = plan.sample
    text = line[:-1] if line.endswith("\n") else line
    if "\n" in text:
        return None
    tokens = [match.span() for match in _TOKEN.finditer(text)]
    if len(tokens) != plan.size:
        return None
    values: list[tuple[int, int]] = []
    for index, begin, end in plan.slices:
        first, last = tokens[index]
        values.append((first + begin, last + end if end is not None else last))
    literal = [(tokens[index][0], tokens[index][0] + len(prefix)) for index, prefix in plan.checks]
    marks = sorted([(a, b, True) for a, b in values] + [(a, b, False) for a, b in literal])
    items: list[str | int] = []
    position = 0
    for start, stop, captured in marks:
        if start < position:
            return None  # overlapping spans: leave this shape to the line-by-line route
        _variable(text[position:start], items)
        piece = text[start:stop]
        if captured:
            items.append(_OPEN)
            _variable(piece, items)
            items.append(_CLOSE)
        elif piece:
            items.append(piece)
        position = stop
    _variable(text[position:], items)
    return tuple(items)


def _template_regex(template: _Template) -> str:
    """A template as a regex (one group per value) for `re.MULTILINE` matching.

    No `^`: a regex starting with literal text is searched for far faster, and a match starting
    inside a line shows in the text between matches (see `LineMetricsParser._group`).
    """
    pieces = {_RUN: "[0-9.]*", _OPEN: "(", _CLOSE: ")"}
    return (
        "".join(re.escape(item) if isinstance(item, str) else pieces[item] for item in template)
        + "$"
    )


def _variable(text: str, items: list[str | int]) -> None:
    """Add `text` to a template with every run of digits and dots made any such run."""
    for at, piece in enumerate(_DIGIT_RUN.split(text)):
        if at:
            items.append(_RUN)
        if piece:
            items.append(piece)


def _flatten(data: dict[str, object], prefix: str, pairs: list[tuple[str, float]]) -> None:
    """Numeric leaves of a JSON object as (name, value) pairs; nested keys joined with `/`."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            pairs.append((name, float(value)))
        elif isinstance(value, dict):
            _flatten(value, f"{name}/", pairs)


def _load_speedups() -> ModuleType | None:
    """The C loops, or None where the extension was not built or is turned off."""
    if os.environ.get(PURE_PYTHON_VARIABLE, "") not in ("", "0"):
        return None
    try:
        module = importlib.import_module("runctl_tui.core.metrics._speedups")
    except ImportError:
        return None
    module.configure(_number, _valid_key, _IGNORED, _KEY_BITS, _COUNT)
    return module


_speedups = _load_speedups()


def parse_lines(lines: Iterable[str], extra_patterns: Sequence[str] = ()) -> list[MetricPoint]:
    """Parse a whole log at once (see `LineMetricsParser.feed`)."""
    return LineMetricsParser(extra_patterns).feed(lines)
