"""Is a checkpoint still being written? Size changing between two looks, a temporary name,
or (on Linux) a process holding one of its files open for writing."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from runctl_tui.core.checkpoints.records import CheckpointEntry

O_ACCMODE = 0o3


class WriteTracker:
    """Remembers each checkpoint's size and mtime across listings; a change means `writing`.

    The dashboard keeps one per watched directory and feeds it every fresh listing; an entry
    stays `writing` until a later look sees the same size and mtime again.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, float]] = {}

    def observe(self, entries: Iterable[CheckpointEntry]) -> list[CheckpointEntry]:
        """Mark entries whose size or mtime changed since the previous look; return them all.

        Args:
            entries: A fresh listing.

        Returns:
            The same entries, `writing` set where the checkpoint is still changing.
        """
        result = list(entries)
        seen: dict[str, tuple[int, float]] = {}
        for entry in result:
            now = (entry.size_bytes, entry.modified)
            before = self._seen.get(entry.path)
            if before is not None and before != now:
                entry.writing = True
            seen[entry.path] = now
        self._seen = seen
        return result

    @property
    def any_known(self) -> bool:
        """Whether a previous look exists to compare with."""
        return bool(self._seen)


def open_for_writing(paths: Iterable[str]) -> set[str]:
    """Which of `paths` some process on this machine has open for writing (Linux /proc).

    Args:
        paths: Absolute file paths.

    Returns:
        The subset open with O_WRONLY or O_RDWR by any process we may inspect; empty where
        /proc is not available.
    """
    wanted = {os.path.realpath(p) for p in paths}
    found: set[str] = set()
    proc = Path("/proc")
    if not wanted or not proc.is_dir():
        return found
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        fd_dir = pid_dir / "fd"
        try:
            fds = list(os.scandir(fd_dir))
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target not in wanted:
                continue
            if _flags_write(pid_dir / "fdinfo" / fd.name):
                found.add(target)
    return found


def _flags_write(fdinfo: Path) -> bool:
    try:
        text = fdinfo.read_text()
    except OSError:
        return True  # cannot tell: treat as writing, which only ever protects a file
    for line in text.splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & O_ACCMODE != 0
    return True
