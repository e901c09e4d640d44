"""Which checkpoint is the best: the format's own record first, else the configured metric.

Hugging Face Trainer writes `best_model_checkpoint` into trainer_state.json and Lightning's
ModelCheckpoint keeps `best_model_path`; when a directory has such a record it wins. Otherwise
checkpoints are ranked by `[checkpoints] best_metric` (default `val_loss`, then `loss`) in the
direction of `best_mode`, taken from the name (`val_loss=0.31`) or from the file's header.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runctl_tui.core.checkpoints.inspect import inspect_checkpoint
from runctl_tui.core.checkpoints.records import CheckpointEntry, CheckpointInfo

Inspector = Callable[[Path], CheckpointInfo]
RECORD_LABELS = {
    "hf-trainer": "Trainer's best_model_checkpoint",
    "lightning": "Lightning ModelCheckpoint best_model_path",
    "runctl-demo": "the run's best_path",
}


@dataclass(frozen=True)
class BestChoice:
    """The best checkpoint and why."""

    entry: CheckpointEntry
    reason: str
    score: float | None = None
    metric: str | None = None


def find_best(
    entries: Sequence[CheckpointEntry],
    *,
    metric: str = "val_loss",
    mode: str = "min",
    read_contents: bool = True,
    inspect: Inspector = inspect_checkpoint,
) -> BestChoice | None:
    """Pick the best of `entries` (one listing) and mark it (`entry.best`, `best_reason`).

    Args:
        entries: A listing from `list_checkpoints` (or a remote one: contents are only read
            for local entries).
        metric: The metric to rank by when no format record exists; `loss` is the fallback.
        mode: `min` or `max`.
        read_contents: Whether headers may be read (False: names only, for fast listings).
        inspect: The inspector (tests and the UI pass a cached one).

    Returns:
        The choice, or None when nothing says which is best.
    """
    for entry in entries:
        entry.best = False
        entry.best_reason = ""
    usable = [e for e in entries if e.error is None and e.link_target is None]
    choice = None
    if read_contents:
        choice = _from_format_record(usable, inspect)
    if choice is None:
        choice = _from_metric(usable, metric, mode, read_contents, inspect)
    if choice is not None:
        choice.entry.best = True
        choice.entry.best_reason = choice.reason
    return choice


def _basename(path: str) -> str:
    return posixpath.basename(path.replace("\\", "/").rstrip("/"))


def _from_format_record(
    entries: Sequence[CheckpointEntry], inspect: Inspector
) -> BestChoice | None:
    local = [e for e in entries if e.location == "local"]
    for fmt in ("hf-trainer", "lightning", "runctl-demo"):
        candidates = [e for e in local if e.format == fmt]
        if not candidates:
            continue
        # The newest checkpoint holds the most recent record (last.ckpt, highest step).
        newest = max(candidates, key=lambda e: (e.step if e.step is not None else -1, e.modified))
        newest_by_time = max(candidates, key=lambda e: e.modified)
        sources = [newest_by_time] if newest is newest_by_time else [newest_by_time, newest]
        for source in sources:
            info = inspect(Path(source.path))
            name = info.best_record.get("name")
            if not isinstance(name, str):
                continue
            parent = posixpath.dirname(source.name.replace("\\", "/"))
            for entry in candidates:
                if (
                    _basename(entry.path) == name
                    and posixpath.dirname(entry.name.replace("\\", "/")) == parent
                ):
                    score = info.best_record.get("score")
                    monitor = info.best_record.get("monitor")
                    label = RECORD_LABELS[fmt]
                    detail = (
                        f" ({monitor}={score:.4g})"
                        if isinstance(score, float) and monitor
                        else (f" (score {score:.4g})" if isinstance(score, float) else "")
                    )
                    return BestChoice(
                        entry,
                        label + detail,
                        score if isinstance(score, float) else None,
                        monitor if isinstance(monitor, str) else None,
                    )
    return None


def _from_metric(
    entries: Sequence[CheckpointEntry],
    metric: str,
    mode: str,
    read_contents: bool,
    inspect: Inspector,
) -> BestChoice | None:
    values: dict[str, dict[str, float]] = {}
    for entry in entries:
        found = dict(entry.metrics)
        if read_contents and entry.location == "local" and not ({metric, "loss"} & found.keys()):
            info = inspect(Path(entry.path))
            if info.error is None or info.metrics:
                found.update({k: v for k, v in info.metrics.items() if k not in found})
        values[entry.path] = found
    for name in dict.fromkeys([metric, "loss"]):
        scored = [
            (v[name], e)
            for e in entries
            if (v := values.get(e.path, {})) and name in v and math.isfinite(v[name])
        ]
        if not scored:
            continue
        pick = min if mode == "min" else max
        score, entry = pick(scored, key=lambda item: (item[0], -item[1].modified))
        word = "lowest" if mode == "min" else "highest"
        return BestChoice(entry, f"{word} {name} ({score:.4g})", score, name)
    return None
