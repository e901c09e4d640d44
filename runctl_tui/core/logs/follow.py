"""Following a local log file with `tail -F` semantics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from stat import S_ISDIR, S_ISREG

from runctl_tui.core.aio import wait_for
from runctl_tui.core.errors import RunctlError
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.logs.assembler import LineAssembler
from runctl_tui.core.logs.tail import read_tail, scan_tail
from runctl_tui.core.logsource import LogChunk

READ_BLOCK = 1024 * 1024
"""Bytes read per step while catching up; one chunk per block."""
WATCH_STEP_MS = 50
"""How often the watcher thread looks at collected file events (bounds the reaction time;
each look takes the GIL, so a shorter step costs CPU even while nothing changes)."""

_log = get_logger("logs")


class _Watcher:
    """Sets `wake` whenever the directory holding the log reports a change to its name."""

    def __init__(self, path: Path, wake: asyncio.Event, poll_interval: float) -> None:
        self._path = path
        self._wake = wake
        self._poll = poll_interval
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch {self._path}")

    async def stop(self) -> None:
        # The stop event makes the watch thread return within one step, so no thread lingers.
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            # Bounded: a watch thread that ignores the stop event must not hang the caller.
            done, _ = await asyncio.wait({self._task}, timeout=2.0)
            if not done:
                _log.warning("file watcher for %s did not stop within 2 s", self._path)

    async def _run(self) -> None:
        from watchfiles import awatch

        name = self._path.name
        parent = self._path.parent
        while not self._stop.is_set():
            if not parent.is_dir():
                with contextlib.suppress(asyncio.TimeoutError):
                    await wait_for(self._stop.wait(), self._poll)
                continue
            try:
                async for _changes in awatch(
                    parent,
                    watch_filter=lambda _change, changed: os.path.basename(changed) == name,
                    debounce=WATCH_STEP_MS * 5,
                    step=WATCH_STEP_MS,
                    stop_event=self._stop,
                    rust_timeout=1000,
                    recursive=False,
                ):
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. inotify limits: polling still works
                _log.info("file events unavailable for %s (%s); polling", parent, exc)
                with contextlib.suppress(asyncio.TimeoutError):
                    await wait_for(self._stop.wait(), self._poll)
            # The directory may have gone and come back: start a new watch on it.


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return (stat.st_dev, stat.st_ino)


class FileLogSource:
    """A local log file, tailed and followed like GNU `tail -F` (follow by name, retry).

    Appends show up within milliseconds (file events through watchfiles, with polling every
    `poll_interval` seconds as a fallback). A truncated file (copytruncate) is re-read from its
    start; a rotated file (renamed, new file created) is read to its end and then the new file
    from its start; a file that does not exist yet, or was deleted, is waited for. Writes that
    reach a renamed or deleted file before its replacement appears are still read, so no line is
    lost or repeated across any of these.
    """

    def __init__(
        self,
        path: Path,
        *,
        poll_interval: float = 0.5,
        max_line_bytes: int = 64 * 1024,
        use_events: bool = True,
        min_read_interval: float = 0.0,
    ) -> None:
        """Create a source; nothing is opened until `follow` runs.

        Args:
            path: The log file (it may not exist yet).
            poll_interval: Seconds between checks when no file event arrives.
            max_line_bytes: Longest line shown in full; longer ones are cut with a marker.
            use_events: Use file events; False polls only (filesystems without inotify).
            min_read_interval: Seconds at least between two reads while the file keeps
                growing (a screen that redraws twice a second needs no more than two reads
                a second); the first append after a quiet spell is still read at once.
        """
        self.path = Path(path)
        self.poll_interval = max(0.01, poll_interval)
        self.max_line_bytes = max_line_bytes
        self.use_events = use_events
        self.min_read_interval = max(0.0, min_read_interval)

    @property
    def description(self) -> str:
        """The path, for the pane title."""
        return str(self.path)

    async def follow(self, initial_lines: int = 200) -> AsyncIterator[LogChunk]:
        """Yield the last `initial_lines` lines, then every new line, until cancelled.

        Args:
            initial_lines: Complete lines in the first chunk (the unterminated line comes as
                its `partial`).

        Yields:
            Chunks of lines; notices when the file is waited for, truncated or replaced.
        """
        wake = asyncio.Event()
        watcher = _Watcher(self.path, wake, self.poll_interval) if self.use_events else None
        if watcher is not None:
            watcher.start()
        follower = _Follower(self.path, self.max_line_bytes)
        try:
            async for chunk in follower.run(
                initial_lines, wake, self.poll_interval, self.min_read_interval
            ):
                yield chunk
        finally:
            follower.close()
            if watcher is not None:
                await watcher.stop()


class _Follower:
    """The state of one follow: the open file, how far it was read, the pending line."""

    def __init__(self, path: Path, max_line_bytes: int) -> None:
        self.path = path
        self.assembler = LineAssembler(max_line_bytes)
        self.fd: int | None = None
        self.ident: tuple[int, int] | None = None
        self.pos = 0
        self.size = 0
        self.orphaned = False

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _open(self) -> os.stat_result | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except PermissionError:
            raise RunctlError(
                f"cannot read {self.path}: permission denied; check its owner and mode"
            ) from None
        stat = os.fstat(fd)
        if not S_ISREG(stat.st_mode) and S_ISDIR(stat.st_mode):
            os.close(fd)
            raise RunctlError(f"{self.path} is a directory, not a log file")
        self.fd, self.ident, self.pos, self.size = fd, _identity(stat), 0, stat.st_size
        self.orphaned = False
        return stat

    def _chunk(self, lines: list[str], notice: str | None = None) -> LogChunk:
        return LogChunk(
            lines=tuple(lines),
            partial=self.assembler.partial,
            notice=notice,
            size=max(self.size, self.pos),
        )

    def _end_line(self) -> list[str]:
        """The pending line, ended because its file ended (truncated, rotated, deleted)."""
        if not self.assembler.has_partial:
            return []
        line = self.assembler.flush_line()
        return [] if line is None else [line]

    async def _drain(self) -> AsyncIterator[LogChunk]:
        assert self.fd is not None
        while True:
            data = os.pread(self.fd, READ_BLOCK, self.pos)
            if not data:
                return
            self.pos += len(data)
            yield self._chunk(self.assembler.feed(data))
            # Let the event loop breathe while catching up on a large backlog.
            await asyncio.sleep(0)

    async def run(
        self, initial_lines: int, wake: asyncio.Event, poll: float, gap: float = 0.0
    ) -> AsyncIterator[LogChunk]:
        """The follow loop: see `FileLogSource.follow` (`gap`: its `min_read_interval`)."""
        path = self.path
        if self._open() is None:
            yield self._chunk([], f"waiting for {path} to appear")
        else:
            assert self.fd is not None
            span = scan_tail(self.fd, self.size, max(0, initial_lines))
            if span.streamed:
                # A huge tail: read it block by block below instead of in one list.
                self.pos = span.starts[0]
                yield self._chunk([])
            else:
                lines = read_tail(self.fd, span, self.assembler)
                self.pos = span.end
                yield self._chunk(lines)
        while True:
            wake.clear()
            if self.fd is None:
                if self._open() is not None:
                    yield self._chunk([], f"{path} appeared; following it from the start")
                    continue
            else:
                async for chunk in self._drain():
                    yield chunk
                stat = os.fstat(self.fd)
                self.size = stat.st_size
                if stat.st_size < self.pos:
                    self.pos = 0
                    yield self._chunk(
                        self._end_line(), f"{path} truncated; reading it from the start"
                    )
                    continue
                try:
                    current: os.stat_result | None = os.stat(path)
                except (FileNotFoundError, NotADirectoryError):
                    current = None
                if current is None and not self.orphaned:
                    self.orphaned = True
                    yield self._chunk([], f"{path} was deleted or moved; waiting for it")
                elif current is not None and _identity(current) == self.ident:
                    self.orphaned = False  # moved back, or a false alarm
                elif current is not None:
                    # Replaced (rotation, or recreation after deletion): finish the old file.
                    async for chunk in self._drain():
                        yield chunk
                    lines = self._end_line()
                    self.close()
                    notice = f"{path} was replaced; following the new file from the start"
                    if self._open() is None:
                        notice = f"{path} was replaced, then removed; waiting for it"
                    yield self._chunk(lines, notice)
                    continue
            read_at = time.monotonic()
            with contextlib.suppress(asyncio.TimeoutError):
                await wait_for(wake.wait(), poll)
            if gap:
                # Appends arriving faster than `gap` are read together: at most one read per
                # `gap`, and none delayed when the file was quiet for longer than that.
                rest = read_at + gap - time.monotonic()
                if rest > 0:
                    await asyncio.sleep(rest)
