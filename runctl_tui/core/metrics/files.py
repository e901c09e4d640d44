"""Metrics from the files training libraries write, each read incrementally.

- `metrics.csv` of Lightning's CSVLogger (sparse rows: train and val values on different rows;
  the logger rewrites the whole file with a wider header when a new metric appears) and the
  CSV of Keras's CSVLogger (`epoch,loss,val_loss`): step from the `step` column, else `epoch`.
- transformers' `trainer_state.json`: `log_history` (step from each entry), `best_metric`,
  `best_model_checkpoint`.
- `metrics.jsonl`, the simplest contract a script can follow, one JSON object per line:
  `{"step": 100, "loss": 0.53, "lr": 0.0003}`; `step` is optional (null when absent),
  numeric fields become series, nested objects are joined with `/` (`{"val": {"loss": 1}}` ->
  `val/loss`), `time`/`timestamp` are taken as wall-clock and skipped.
- console logs (`*.log`, `*.out`, `*.txt`), parsed by `LineMetricsParser`.
- TensorBoard event files (see `tensorboard.py`).

Every reader has `poll() -> bool` (True when its series changed), `series` and `info`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runctl_tui.core.metrics.lines import EPOCH_KEYS, STEP_KEYS, LineMetricsParser
from runctl_tui.core.metrics.models import MetricPoint, Series
from runctl_tui.core.metrics.tensorboard import EventFileReader

MAX_READ_BYTES = 64 * 1024 * 1024
"""Upper bound on bytes read from one growing file per poll, so a huge log is read in steps."""

RANK_FILE, RANK_EVENTS, RANK_LOG = 0, 1, 2
"""Where a series comes from when several sources name it: a metrics file wins over event
files, which win over console output (the same value, less rounded)."""


def add_point(series: dict[str, Series], point: MetricPoint) -> bool:
    """Append a point unless it repeats the series' last (step, value); True when added."""
    current = series.get(point.name)
    if current is None:
        current = series[point.name] = Series(point.name)
    elif (
        point.step is not None
        and current.steps[-1] == point.step
        and (current.values[-1] == point.value)
    ):
        return False
    current.append(point.step, point.value)
    return True


class MetricsReader:
    """Base of the file readers: a path, its series, and facts such as the best checkpoint."""

    rank = RANK_FILE

    def __init__(self, path: Path) -> None:
        self.path = path
        self.series: dict[str, Series] = {}
        self.info: dict[str, Any] = {}
        """Facts a source states about the run (`best_metric`, `best_model_checkpoint`)."""

    def poll(self) -> bool:
        """Read what is new; True when `series` or `info` changed."""
        raise NotImplementedError

    def _add(self, points: Sequence[MetricPoint]) -> bool:
        changed = False
        for point in points:
            changed = add_point(self.series, point) or changed
        return changed


class TextReader(MetricsReader):
    """A console log or a metrics.jsonl, parsed line by line from the last offset.

    Bytes are consumed up to the last line end (`\\n`) or progress-bar redraw (`\\r`): the text
    after it may still be being written. A file that shrinks was truncated or replaced and is
    read again from the start.
    """

    def __init__(self, path: Path, *, rank: int = RANK_LOG, patterns: Sequence[str] = ()) -> None:
        super().__init__(path)
        self.rank = rank
        self._patterns = tuple(patterns)
        self._parser = LineMetricsParser(self._patterns)
        self.offset = 0

    def poll(self) -> bool:
        """Parse the bytes written since the last poll; True when new points arrived."""
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self.offset:
                    self.offset = 0
                    self.series = {}
                    self._parser = LineMetricsParser(self._patterns)
                if size == self.offset:
                    return False
                fh.seek(self.offset)
                data = fh.read(min(size - self.offset, MAX_READ_BYTES))
        except FileNotFoundError:
            return False
        end = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if end < 0:
            if len(data) < MAX_READ_BYTES:
                return False
            end = len(data) - 1  # one enormous line: take it in pieces rather than never
        self.offset += end + 1
        text = data[: end + 1].decode("utf-8", "replace")
        columns = self._parser.feed_columns(text.split("\n"))
        for name, (steps, values) in columns.items():
            current = self.series.get(name)
            if current is None:
                current = self.series[name] = Series(name)
            current.extend(steps, values)  # the parser counts each value once already
        return bool(columns)


class CsvReader(MetricsReader):
    """Lightning's or Keras's CSVLogger file, read row by row from the last offset."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.offset = 0
        self._header: list[str] = []
        self._header_line = b""
        self._rows = 0

    def poll(self) -> bool:
        """Read complete new rows; start over when the header changed or the file shrank."""
        try:
            with open(self.path, "rb") as fh:
                first = fh.readline()
                size = os.fstat(fh.fileno()).st_size
                if not first.endswith(b"\n"):
                    return False
                if first != self._header_line or size < self.offset:
                    # Lightning rewrites the file with a wider header when a metric appears.
                    self._header_line = first
                    self._header = next(csv.reader([first.decode("utf-8", "replace")]))
                    self._header = [name.strip() for name in self._header]
                    self.offset = len(first)
                    self.series = {}
                    self._rows = 0
                fh.seek(self.offset)
                data = fh.read(min(size - self.offset, MAX_READ_BYTES))
        except FileNotFoundError:
            return False
        end = data.rfind(b"\n")
        if end < 0:
            return False
        self.offset += end + 1
        return self._add(self._rows_to_points(data[: end + 1].decode("utf-8", "replace")))

    def _rows_to_points(self, text: str) -> list[MetricPoint]:
        header = self._header
        lower = [name.lower() for name in header]
        step_col = next((i for i, n in enumerate(lower) if n in STEP_KEYS), None)
        if step_col is None:
            step_col = next((i for i, n in enumerate(lower) if n in EPOCH_KEYS), None)
        points: list[MetricPoint] = []
        for row in csv.reader(io.StringIO(text)):
            if not row:
                continue
            self._rows += 1
            step: float | None = float(self._rows)
            if step_col is not None and step_col < len(row):
                step = _number(row[step_col])
            for index, cell in enumerate(row[: len(header)]):
                if index == step_col or not cell.strip():
                    continue
                value = _number(cell)
                if value is not None:
                    points.append(MetricPoint(header[index], step, value))
        return points


class TrainerStateReader(MetricsReader):
    """transformers' trainer_state.json: re-read whole when it changes (it is rewritten)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._stamp: tuple[int, int] | None = None

    def poll(self) -> bool:
        """Read the file again if its size or mtime changed; True when it did."""
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return False
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return False  # missing, or caught mid-write: the next poll reads it whole
        self._stamp = stamp
        self.series = {}
        for entry in data.get("log_history") or []:
            if not isinstance(entry, dict):
                continue
            raw_step = entry.get("step")
            step = float(raw_step) if isinstance(raw_step, (int, float)) else None
            for key, value in entry.items():
                if key == "step" or isinstance(value, bool):
                    continue
                if isinstance(value, (int, float)):
                    add_point(self.series, MetricPoint(key, step, float(value)))
        self.info = {
            key: data.get(key)
            for key in ("best_metric", "best_model_checkpoint", "global_step", "max_steps")
            if data.get(key) is not None
        }
        return True


class EventsReader(MetricsReader):
    """A TensorBoard event file; tags optionally prefixed with the run's sub-directory."""

    rank = RANK_EVENTS

    def __init__(self, path: Path, prefix: str = "") -> None:
        super().__init__(path)
        self._reader = EventFileReader(path)
        self._prefix = prefix

    def poll(self) -> bool:
        """Read records completed since the last poll."""
        points = self._reader.read_new()
        if self._prefix:
            points = [MetricPoint(self._prefix + p.name, p.step, p.value) for p in points]
        return self._add(points)


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def is_event_file(path: Path) -> bool:
    """Whether a file name is a TensorBoard event file's."""
    return path.name.startswith("events.out.tfevents.")


def looks_like_csv_log(path: Path) -> bool:
    """Whether a file's first line is a CSVLogger header (`epoch,...` or `...,step,...`)."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(4096).decode("utf-8", "replace").strip().lower()
    except OSError:
        return False
    cells = first.split(",")
    return len(cells) >= 2 and ("epoch" in cells or "step" in cells)


def reader_for(path: Path, patterns: Sequence[str] = ()) -> MetricsReader:
    """The reader for one file, chosen by its name (and, for `.log`, its first line).

    Args:
        path: A log, CSV, trainer_state.json, .jsonl or event file.
        patterns: Extra line regexes from `[monitor] metrics_regex`.

    Returns:
        A reader that has not read anything yet.
    """
    name = path.name
    if is_event_file(path):
        return EventsReader(path)
    if name == "trainer_state.json":
        return TrainerStateReader(path)
    if name.endswith(".csv") or (name.endswith(".log") and looks_like_csv_log(path)):
        return CsvReader(path)
    if name.endswith((".jsonl", ".ndjson")):
        return TextReader(path, rank=RANK_FILE, patterns=patterns)
    return TextReader(path, patterns=patterns)
