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

Speed matters (the parser must keep up with a log tail and read long logs at once): each line
first meets a few substring tests, which are nearly free in CPython, and only lines that can hold
a metric meet a compiled regex. Lines from a log are mostly noise or share one shape, so this
keeps the average cost near plain iteration.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence

from runctl_tui.core.metrics.models import MetricPoint

_NUM = (
    r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?"
    r"|[nN]a[nN]|[iI]nf(?:inity)?)"
)
_KEY = r"[A-Za-z_](?:[\w./-]*\w)?"
_PREFIXES = "train|val|valid|validation|eval|test"

# (prefix, key, separator, value): `key=v`, `key: v`, `key v` (the last only on lines that look
# like metric lines). The value may not run into a date, a time or a counter (`2024-05`, `12:00`).
_PAIR = re.compile(
    rf"(?<![\w./`'\"-])(?:({_PREFIXES}) )?({_KEY})(\s*=\s*|:\s*|\s+)(?:tensor\()?({_NUM})"
    r"(?![\d.]|[-:]\d)"
)
# Pairs inside a progress bar's postfix: `key=v` (tqdm) or `key: v` (rich, Keras).
_BAR_PAIR = re.compile(rf"(?<![\w./`'\"-])({_KEY})(?:=|: )\s*({_NUM})(?![\d.])")
# `'key': 1.5`, `'key': '1.5'` (transformers 5 prints strings), `"key": 1.5`.
_DICT_PAIR = re.compile(
    rf"""['"]([^'"]+)['"]\s*:\s*['"]?\s*(?:tensor\()?({_NUM})['"]?(?=\s*[,}})])"""
)
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][A-Za-z0-9])")
_TQDM = re.compile(
    r"(?P<desc>[^\r]*?)(?::\s*)?(?:\d+%\|[^|]*\|\s*)?(?P<n>\d+)(?:/(?P<total>\d+))?(?:it)?"
    r"\s\[(?P<meta>[^\]]*)\]"
)
_RICH = re.compile(
    r"(?P<desc>.*?)\s*[━╺╸╾╼ ]*━[━╺╸╾╼ ]*\s+(?P<n>\d+)/(?P<total>\d+)\s.*?it/s\s*(?P<tail>.*)$"
)
_KERAS = re.compile(
    r"^\s*(?P<n>\d+)/(?P<total>\d+|Unknown)\s.*?\d(?:s|ms|us|µs|ns)/step(?P<tail>.*)$"
)
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
# Words that precede a number in prose (`took 12.5 s`, `shard 3 of 100`, `using: 0 TPU cores`)
# and never name a metric.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "at",
        "after",
        "before",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "of",
        "on",
        "or",
        "the",
        "to",
        "was",
        "were",
        "with",
        "took",
        "saved",
        "saving",
        "save",
        "load",
        "loading",
        "loaded",
        "using",
        "use",
        "used",
        "rank",
        "gpu",
        "gpus",
        "worker",
        "workers",
        "pid",
        "line",
        "version",
        "python",
        "cuda",
        "seed",
        "shard",
        "shards",
        "top",
        "batch",
        "batches",
        "size",
        "files",
        "file",
        "process",
        "processes",
        "threads",
        "thread",
        "total",
        "found",
        "in_features",
        "out_features",
    ]
)
_QUALIFY = ("loss", "Loss", "step", "Step", "iter", "Iter", "poch", "acc", "ppl", "lr ")


def _qualifies(text: str) -> bool:
    """Whether a line looks like a metric line, so `key value` pairs in it count."""
    return any(word in text for word in _QUALIFY)


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
        self._last: dict[str, tuple[float | None, float]] = {}
        self._counts: dict[str, int] = {}
        self._bar_tail: dict[str, str] = {}
        self._bar_shown: dict[str, dict[str, str]] = {}
        self._keras_epoch: int | None = None
        self._prev_kind = ""
        self._rich_step: tuple[str, str | None, int | None] = ("0", None, None)

    def feed(self, lines: Iterable[str]) -> list[MetricPoint]:
        """Parse lines (each may hold `\\r` redraws and ANSI codes; newline optional).

        Args:
            lines: Console lines in the order they were written.

        Returns:
            The new points, in occurrence order.
        """
        out: list[MetricPoint] = []
        segment = self._segment
        for line in lines:
            if "\x1b" in line:
                line = _ANSI.sub("", line)
            if "\r" in line:
                if "\x08" in line:
                    line = line.replace("\x08", "")
                for part in line.split("\r"):
                    if part:
                        segment(part, out)
            else:
                segment(line, out)
        return out

    # The dispatcher: cheap substring tests first, one regex for the kind found.
    def _segment(self, s: str, out: list[MetricPoint]) -> None:
        if self._extra:
            self._apply_extra(s, out)
        kind = self._prev_kind
        self._prev_kind = ""
        head = s.lstrip()[:1]
        if kind == "rich" and s.startswith("          ") and ": " in s:
            # Rich wraps a long postfix onto the next terminal line (`val_loss: 0.826`).
            self._bar("rich+", s.strip(), *self._rich_step, out)
            self._prev_kind = "rich"
        elif head == "{":
            self._dict_line(s, out)
        elif "/step" in s:
            self._keras(s, out)
        elif "it/s" in s or "s/it" in s:
            if "━" in s:
                self._rich(s, out)
            elif "[" in s:
                self._tqdm(s, out)
            else:
                self._plain(s, out)
        elif "=" in s or ":" in s or _qualifies(s):
            if head == "E" and s.lstrip().startswith("Epoch "):
                match = _KERAS_EPOCH.match(s)
                if match:
                    self._keras_epoch = int(match.group(1))
                    return
            self._plain(s, out)

    def _emit(
        self, name: str, step: float | None, raw: str, out: list[MetricPoint], count: bool
    ) -> None:
        value = float(raw)
        if step is None and count:
            step = float(self._counts.get(name, 0) + 1)
        if step is not None:
            last = self._last.get(name)
            if last is not None and last[0] == step and last[1] == value:
                return  # the same point spelled twice (a bar redraw, a repeated print)
            self._last[name] = (step, value)
        self._counts[name] = self._counts.get(name, 0) + 1
        out.append(MetricPoint(name, step, value))

    def _plain(self, s: str, out: list[MetricPoint]) -> None:
        pairs = _PAIR.findall(s)
        if not pairs:
            return
        qualifies = None
        step: float | None = None
        epoch: float | None = None
        metrics: list[tuple[str, str]] = []
        for prefix, key, sep, value in pairs:
            lower = key.lower()
            if lower in _STOPWORDS:
                continue
            if sep[:1] not in ("=", ":"):
                if qualifies is None:
                    qualifies = _qualifies(s)
                if not qualifies:
                    continue
            if lower in STEP_KEYS and not prefix:
                if step is None:
                    step = float(value)
            elif lower in EPOCH_KEYS and not prefix:
                if epoch is None:
                    epoch = float(value)
            elif key not in _IGNORED:
                metrics.append((f"{prefix}_{key}" if prefix else key, value))
        if step is None and epoch is not None:
            step = epoch
        elif epoch is not None:
            metrics.append(("epoch", repr(epoch)))
        for name, value in metrics:
            self._emit(name, step, value, out, True)

    def _dict_line(self, s: str, out: list[MetricPoint]) -> None:
        stripped = s.strip()
        pairs: list[tuple[str, str]]
        if stripped.startswith('{"'):
            try:
                data = json.loads(stripped)
            except ValueError:
                pairs = _DICT_PAIR.findall(stripped)
            else:
                if not isinstance(data, dict):
                    return
                pairs = []
                _flatten(data, "", pairs)
        else:
            pairs = _DICT_PAIR.findall(stripped)
        step: float | None = None
        metrics: list[tuple[str, str]] = []
        for key, value in pairs:
            lower = key.lower()
            if lower in STEP_KEYS:
                if step is None:
                    step = float(value)
            elif lower not in _TIME_KEYS:
                metrics.append((key, value))
        for name, value in metrics:
            self._emit(name, step, value, out, False)

    def _bar(
        self,
        kind: str,
        tail: str,
        n: str,
        total: str | None,
        epoch: int | None,
        out: list[MetricPoint],
    ) -> None:
        if self._bar_tail.get(kind) == tail:
            return  # a redraw (time, rate, bar) with no new value
        self._bar_tail[kind] = tail
        pairs = _BAR_PAIR.findall(tail)
        if not pairs:
            return
        # A postfix keeps showing a value until it changes (Lightning shows val_loss beside
        # every later train_loss): only a changed text is a new value.
        shown = self._bar_shown.setdefault(kind, {})
        count = int(n)
        if epoch is not None and total and total.isdigit():
            step = float(epoch * int(total) + count)
        else:
            step = float(count)
        for key, value in pairs:
            if key not in _IGNORED and shown.get(key) != value:
                shown[key] = value
                self._emit(key, step, value, out, False)

    def _tqdm(self, s: str, out: list[MetricPoint]) -> None:
        match = _TQDM.search(s)
        if match is None:
            self._plain(s, out)
            return
        meta = match.group("meta").split(", ", 2)
        tail = meta[2] if len(meta) > 2 else ""
        desc = match.group("desc")
        epoch_match = _EPOCH_IN_DESC.search(desc) if "poch" in desc else None
        epoch = int(epoch_match.group(1)) if epoch_match else None
        self._bar("tqdm", tail, match.group("n"), match.group("total"), epoch, out)

    def _rich(self, s: str, out: list[MetricPoint]) -> None:
        match = _RICH.match(s)
        if match is None:
            return
        desc = match.group("desc")
        epoch_match = _EPOCH_IN_DESC.search(desc) if "poch" in desc else None
        epoch = int(epoch_match.group(1)) if epoch_match else None
        self._rich_step = (match.group("n"), match.group("total"), epoch)
        self._prev_kind = "rich"
        self._bar("rich", match.group("tail"), match.group("n"), match.group("total"), epoch, out)

    def _keras(self, s: str, out: list[MetricPoint]) -> None:
        match = _KERAS.match(s)
        if match is None:
            self._plain(s, out)
            return
        # Keras numbers epochs from 1 in its `Epoch 3/10` header.
        epoch = self._keras_epoch - 1 if self._keras_epoch is not None else None
        self._bar("keras", match.group("tail"), match.group("n"), match.group("total"), epoch, out)

    def _apply_extra(self, s: str, out: list[MetricPoint]) -> None:
        for pattern in self._extra:
            for match in pattern.finditer(s):
                groups = match.groupdict()
                raw_step = groups.get("step")
                step = _to_float(raw_step) if raw_step else None
                if groups.get("name") and groups.get("value"):
                    self._emit_checked(str(groups["name"]), step, str(groups["value"]), out)
                for key, raw in groups.items():
                    if key not in ("name", "value", "step") and raw is not None:
                        self._emit_checked(key, step, raw, out)

    def _emit_checked(
        self, name: str, step: float | None, raw: str, out: list[MetricPoint]
    ) -> None:
        if _to_float(raw) is not None:
            self._emit(name, step, raw, out, True)


def _to_float(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None


def _flatten(data: dict[str, object], prefix: str, pairs: list[tuple[str, str]]) -> None:
    """Numeric leaves of a JSON object as (name, text) pairs; nested keys joined with `/`."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            pairs.append((name, repr(float(value))))
        elif isinstance(value, dict):
            _flatten(value, f"{name}/", pairs)


def parse_lines(lines: Iterable[str], extra_patterns: Sequence[str] = ()) -> list[MetricPoint]:
    """Parse a whole log at once (see `LineMetricsParser.feed`)."""
    return LineMetricsParser(extra_patterns).feed(lines)


def is_finite(value: float) -> bool:
    """Whether a value is neither NaN nor infinite."""
    return math.isfinite(value)
