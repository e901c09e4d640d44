"""Follow a run's metrics as they grow: every source in a run directory, or one file.

`MetricsTracker.poll()` reads only what each source wrote since the last poll and tells
whether anything changed; `series` holds the merged series. When two sources name the same
series (a console line and the CSV holding the same value), the more exact source wins (see
`files.RANK_*`) so nothing is counted twice.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runctl_tui.core.metrics.files import (
    CsvReader,
    EventsReader,
    MetricsReader,
    TextReader,
    TrainerStateReader,
    is_event_file,
    looks_like_csv_log,
    reader_for,
)
from runctl_tui.core.metrics.models import Points, Series
from runctl_tui.core.metrics.watched import WatchedSeries

MAX_DEPTH = 5
"""How deep below a run directory sources are looked for."""
_SKIP_DIRS = frozenset(
    {
        ".git",
        "__pycache__",
        "node_modules",
        ".venv",
        "venv",
        ".mypy_cache",
        ".ruff_cache",
        "site-packages",
        "wandb",
    }
)
_LOG_SUFFIXES = (".log", ".out", ".err")
_LOG_NAMES = frozenset({"stdout", "stderr", "output.txt", "log.txt", "train.txt"})
_METRICS_WORDS = re.compile(r"metric|log|histor|scalar|event", re.IGNORECASE)


def find_sources(root: Path) -> list[Path]:
    """Every metrics source below a run directory, in a stable order.

    Found: TensorBoard event files, CSVLogger files (a `*.csv` or `.log` whose header has an
    `epoch` or `step` column), `*.jsonl` named like a log (`metrics.jsonl`, `log.jsonl`, not a
    dataset's `train.jsonl`), console logs (`*.log`, `*.out`, `*.err`, `stdout`...) and, of the
    `trainer_state.json` files (one per HF checkpoint, each holding the history so far), the
    one with the highest `global_step`.

    Args:
        root: The run directory.

    Returns:
        Paths of the sources.
    """
    found: list[Path] = []
    states: list[Path] = []
    base_depth = len(root.parts)
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        if len(here.parts) - base_depth >= MAX_DEPTH:
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = here / name
            if name == "trainer_state.json":
                states.append(path)
            elif (
                name.startswith("events.out.tfevents.")
                or name.endswith(_LOG_SUFFIXES)
                or name in _LOG_NAMES
                or (name.endswith(".csv") and looks_like_csv_log(path))
                or (name.endswith((".jsonl", ".ndjson")) and _METRICS_WORDS.search(name))
            ):
                # A dataset beside the run (train.csv, data.jsonl) is not a metrics file.
                found.append(path)
    if states:
        found.append(max(states, key=_state_rank))
    return found


def _state_rank(path: Path) -> tuple[int, float]:
    """Order trainer_state.json files by the step they reach, then by age."""
    step = 0
    try:
        with open(path, encoding="utf-8") as fh:
            step = int(json.load(fh).get("global_step") or 0)
        mtime = path.stat().st_mtime
    except (OSError, ValueError, TypeError):
        return (-1, 0.0)
    return (step, mtime)


class MetricsTracker(WatchedSeries):
    """Incremental metrics of one run, from a run directory or a single file."""

    def __init__(
        self,
        path: Path,
        *,
        extra_paths: Sequence[Path] = (),
        patterns: Sequence[str] = (),
        rescan_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Create a tracker; nothing is read until `poll`.

        Args:
            path: A run directory (every source inside is followed, new ones as they appear)
                or one file (a log, CSV, trainer_state.json, .jsonl or event file).
            extra_paths: More files to follow, e.g. a run's log kept outside its directory.
            patterns: Extra line regexes, `[monitor] metrics_regex`.
            rescan_seconds: How often a directory is searched again for new sources.
            clock: Wall clock, replaceable in tests.
        """
        super().__init__(clock)
        self.path = path
        self._extra_paths = tuple(extra_paths)
        self._patterns = tuple(patterns)
        self._rescan_seconds = rescan_seconds
        self._readers: dict[Path, MetricsReader] = {}
        self._last_scan = -1e18
        self.info: dict[str, Any] = {}
        """Facts the sources state (`best_metric`, `best_model_checkpoint`...)."""
        self._total_points = 0

    @property
    def sources(self) -> list[Path]:
        """The files being followed."""
        return list(self._readers)

    def _discover(self) -> None:
        now = self._clock()
        if self._readers and now - self._last_scan < self._rescan_seconds:
            return
        self._last_scan = now
        candidates: list[Path] = []
        if self.path.is_dir():
            candidates.extend(find_sources(self.path))
        elif self.path.exists():
            candidates.append(self.path)
        candidates.extend(p for p in self._extra_paths if p.exists())
        event_dirs = {p.parent for p in candidates if is_event_file(p)}
        states = [p for p in candidates if p.name == "trainer_state.json"]
        for path in candidates:
            if path in self._readers:
                continue
            if states and path.name == "trainer_state.json":
                # A newer checkpoint's state supersedes the one followed so far.
                for old in [
                    p for p, r in self._readers.items() if isinstance(r, TrainerStateReader)
                ]:
                    del self._readers[old]
            if is_event_file(path) and len(event_dirs) > 1 and self.path.is_dir():
                relative = path.parent.relative_to(self.path).as_posix()
                prefix = "" if relative == "." else relative + "/"
                self._readers[path] = EventsReader(path, prefix)
            elif path.suffix == ".log" and looks_like_csv_log(path):
                self._readers[path] = CsvReader(path)
            else:
                self._readers[path] = reader_for(path, self._patterns)

    def poll(self) -> bool:
        """Read what every source wrote since the last poll.

        Returns:
            True when any series or fact changed.
        """
        self._discover()
        changed = False
        for reader in list(self._readers.values()):
            try:
                changed = reader.poll() or changed
            except (OSError, ValueError, IndexError, KeyError) as exc:
                # One unreadable or malformed source must not hide the others.
                reader.info["error"] = f"{reader.path.name}: {exc}"
        if changed:
            self._merge()
        return changed

    def _merge(self) -> None:
        chosen: dict[str, tuple[tuple[int, int], Series]] = {}
        info: dict[str, Any] = {}
        for order, reader in enumerate(self._readers.values()):
            info.update({k: v for k, v in reader.info.items() if k != "error"})
            for name, series in reader.series.items():
                key = (reader.rank, order)
                current = chosen.get(name)
                if current is None or key < current[0]:
                    chosen[name] = (key, series)
        merged = {name: series for name, (_, series) in chosen.items()}
        ordered = {name: merged[name] for name in self.series if name in merged}
        ordered.update(merged)
        self.series = ordered
        self.info = info
        total = sum(len(s) for s in ordered.values())
        if total > self._total_points:
            self.last_point_at = self._clock()
        self._total_points = total


def read_metrics(path: Path, patterns: Sequence[str] = ()) -> dict[str, Points]:
    """Every series in a file or a run directory, read to the end.

    Args:
        path: A log, metrics file, event file or run directory.
        patterns: Extra line regexes, `[monitor] metrics_regex`.

    Returns:
        `{name: [(step, value), ...]}` in occurrence order; step None where unknown.
    """
    tracker = MetricsTracker(path, patterns=patterns)
    while tracker.poll():
        pass
    return tracker.points()


__all__ = ["MetricsTracker", "TextReader", "find_sources", "read_metrics"]
