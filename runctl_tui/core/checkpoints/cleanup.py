"""Delete old checkpoints safely: keep the newest N, the best, protected paths and anything
still being written; plan first (the dry run shows exactly that plan), then delete.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runctl_tui.core.checkpoints.records import CheckpointEntry
from runctl_tui.core.checkpoints.writing import open_for_writing


@dataclass
class CleanupPlan:
    """What cleanup would delete and keep, and why."""

    delete: list[CheckpointEntry] = field(default_factory=list)
    keep: list[tuple[CheckpointEntry, str]] = field(default_factory=list)
    """Each kept checkpoint with the reason it stays."""

    @property
    def freed_bytes(self) -> int:
        """Bytes the deletion frees."""
        return sum(e.size_bytes for e in self.delete)


@dataclass
class CleanupResult:
    """What a cleanup did."""

    deleted: list[CheckpointEntry] = field(default_factory=list)
    skipped: list[tuple[CheckpointEntry, str]] = field(default_factory=list)
    freed_bytes: int = 0


def plan_cleanup(
    entries: Sequence[CheckpointEntry],
    *,
    keep_last: int,
    protected: Sequence[str] = (),
    writing: set[str] | None = None,
    is_readable: Callable[[CheckpointEntry], bool] | None = None,
) -> CleanupPlan:
    """Decide what to delete from one local listing (newest first, `best` already marked).

    Args:
        entries: The listing; `entry.best` marks the best checkpoint (see `find_best`).
        keep_last: How many of the newest checkpoints to keep.
        protected: Globs from `[checkpoints] protected`, matched against the entry's name,
            file name and full path.
        writing: Paths some process has open for writing (`open_for_writing`).
        is_readable: Whether a checkpoint's headers read without error; the newest N are
            counted among readable ones only (newest first, asked only until N are found).

    Returns:
        The plan; nothing is deleted here.
    """
    writing = writing or set()
    plan = CleanupPlan()
    ordered = sorted(entries, key=lambda e: (e.modified, e.name), reverse=True)
    newest: set[str] = set()
    for entry in ordered:
        if len(newest) >= keep_last:
            break
        # A half-written file left by a crash must not take the place of a usable checkpoint.
        if (
            entry.error is None
            and entry.link_target is None
            and (is_readable is None or is_readable(entry))
        ):
            newest.add(entry.path)
    for entry in ordered:
        reason = _keep_reason(entry, newest, keep_last, protected, writing)
        if reason:
            plan.keep.append((entry, reason))
        else:
            plan.delete.append(entry)
    return plan


def _keep_reason(
    entry: CheckpointEntry,
    newest: set[str],
    keep_last: int,
    protected: Sequence[str],
    writing: set[str],
) -> str:
    if entry.location != "local":
        return "not local: cleanup only deletes on this machine"
    if entry.writing or any(p in writing for p in (entry.path, *entry.parts)):
        return "being written by a live run"
    if entry.link_target is not None or entry.error:
        return (
            "symlink (its target is not in this directory)"
            if entry.link_target
            else "unreadable entry"
        )
    if entry.best:
        return f"best: {entry.best_reason}" if entry.best_reason else "best"
    if entry.path in newest:
        return f"one of the newest {keep_last}"
    for pattern in protected:
        targets = (entry.name, os.path.basename(entry.path), entry.path, *entry.parts)
        if any(fnmatch.fnmatch(t, pattern) for t in targets):
            return f"protected by {pattern!r}"
    if entry.aliases:
        return "has alias " + ", ".join(entry.aliases)
    return ""


def execute_cleanup(plan: CleanupPlan) -> CleanupResult:
    """Delete what `plan` says, re-checking each checkpoint just before it goes.

    A checkpoint whose size or mtime changed since it was listed, or that a process has open
    for writing now, is skipped: a live run may be writing it.

    Args:
        plan: From `plan_cleanup`.

    Returns:
        What was deleted and what was skipped, with reasons.
    """
    result = CleanupResult()
    busy = open_for_writing(p for e in plan.delete for p in (e.parts or [e.path]))
    for entry in plan.delete:
        reason = _changed(entry, busy)
        if reason:
            result.skipped.append((entry, reason))
            continue
        try:
            _remove(entry)
        except OSError as exc:
            result.skipped.append((entry, f"could not delete: {exc.strerror or exc}"))
            continue
        result.deleted.append(entry)
        result.freed_bytes += entry.size_bytes
    return result


def _changed(entry: CheckpointEntry, busy: set[str]) -> str:
    files = entry.parts or [entry.path]
    if any(f in busy for f in files):
        return "a process has it open for writing"
    size = 0
    newest = 0.0
    for name in files:
        try:
            st = os.stat(name, follow_symlinks=False)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"cannot stat: {exc.strerror or exc}"
        size += st.st_size
        newest = max(newest, st.st_mtime)
    if size != entry.size_bytes or newest > entry.modified:
        return "changed since it was listed (a run may be writing it)"
    return ""


def _remove(entry: CheckpointEntry) -> None:
    path = Path(entry.path)
    if entry.is_dir:
        shutil.rmtree(path)
        return
    for part in entry.parts or [entry.path]:
        try:
            os.unlink(part)
        except FileNotFoundError:
            continue
