"""Following a log file on a remote machine over SSH, through dropped connections.

On the machine a small follower runs for the duration of one connection: a Python loop (any
`python3`, standard library only) that reads the file by byte offset and sends framed
messages, or `tail -c +OFFSET -F` where there is no Python. This side counts every byte it
has been sent; when the connection drops it reconnects with exponential backoff and jitter
and restarts the follower at exactly that offset, so no line is repeated or lost. The
pending unterminated line is kept across reconnects, so a progress bar half-written when the
connection dropped is continued, not duplicated.

Python follower frames (each header ends with `\\n`):
`S <id> <offset>` start: file identity (`dev:ino`) and the offset data starts at;
`D <n>` then n bytes of file data; `C` caught up with the end of the file;
`T` truncated: reading from 0; `R <id>` replaced (rotated): reading the new file from 0;
`W` the file does not exist (yet); `A <id>` it appeared: reading from 0; `K` keepalive.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shlex
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runctl_tui.core.aio import wait_for
from runctl_tui.core.errors import BackendError
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.logs.assembler import LineAssembler
from runctl_tui.core.logsource import LogChunk
from runctl_tui.core.models import SshEndpoint
from runctl_tui.core.ssh import SshSession, _remote_path_expr

if TYPE_CHECKING:
    import asyncssh

log = get_logger("remote_log")

INITIAL_SCAN_BYTES = 8 * 1024 * 1024
"""At most this much of the file's end is scanned for the first chunk's lines."""
TAIL_FALLBACK_BYTES = 256 * 1024
"""Without Python on the machine, the first chunk comes from this much of the file's end."""

_FOLLOWER = r"""
import os, sys, time
path, want, known, off, iv, scan = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
out = sys.stdout.buffer
parent = os.getppid()
def send(head, data=b""):
    out.write(head.encode() + b"\n" + data)
    out.flush()
def ident(st):
    return "%d:%d" % (st.st_dev, st.st_ino)
def openf():
    try:
        return os.open(path, os.O_RDONLY)
    except OSError:
        return None
def start_of_tail(fd, size, want):
    count = want + (1 if size and os.pread(fd, 1, size - 1) != b"\n" else 0)
    if count <= 0:
        return size
    pos, floor = size - 1, max(0, size - scan)
    while pos > floor:
        lo = max(floor, pos - 65536)
        block = os.pread(fd, pos - lo, lo)
        end = len(block)
        while True:
            i = block.rfind(b"\n", 0, end)
            if i < 0:
                break
            count -= 1
            if count == 0:
                return lo + i + 1
            end = i
        pos = lo
    return floor
def drain(fd, pos):
    while True:
        data = os.pread(fd, 262144, pos)
        if not data:
            return pos
        send("D %d" % len(data), data)
        pos += len(data)
fd, cur, pos = openf(), None, 0
if fd is None:
    send("W")
else:
    st = os.fstat(fd)
    cur = ident(st)
    if want >= 0:
        pos = start_of_tail(fd, st.st_size, want)
    elif known == cur and st.st_size >= off:
        pos = off
    elif known == cur:
        send("T")
    elif known != "-":
        send("R " + cur)
    send("S %s %d" % (cur, pos))
    pos = drain(fd, pos)
send("C")
orphan, quiet = False, 0.0
while os.getppid() == parent:
    time.sleep(iv)
    quiet += iv
    if fd is None:
        fd = openf()
        if fd is None:
            continue
        cur, pos, orphan = ident(os.fstat(fd)), 0, False
        send("A " + cur)
    before = pos
    pos = drain(fd, pos)
    if os.fstat(fd).st_size < pos:
        send("T")
        pos = drain(fd, 0)
    try:
        now = ident(os.stat(path))
    except OSError:
        now = None
    if now is None and not orphan:
        orphan = True
        send("W")
    elif now is not None and now != cur:
        drain(fd, pos)
        os.close(fd)
        fd = openf()
        if fd is None:
            continue
        cur, pos, orphan = ident(os.fstat(fd)), 0, False
        send("R " + cur)
        pos = drain(fd, 0)
    if pos != before:
        quiet = 0.0
    elif quiet >= 10:
        quiet = 0.0
        send("K")
"""


class _Lost(Exception):
    """The follower or the connection ended; reconnect."""


@dataclass
class _Position:
    """Where the follow is: file identity and the next byte offset to read."""

    ident: str | None = None
    offset: int = 0
    started: bool = False
    """Whether the first chunk (the tail) has been sent."""


class RemoteFileLogSource:
    """A log file on a remote machine, tailed and followed over SSH.

    Survives dropped connections (reconnects with exponential backoff and jitter, resuming at
    the exact byte offset), truncation and rotation (with the Python follower; the `tail`
    fallback reports them as notices but cannot place them exactly in the stream).
    """

    def __init__(
        self,
        endpoint: SshEndpoint,
        path: str,
        *,
        poll_interval: float = 0.25,
        max_line_bytes: int = 64 * 1024,
        initial_backoff: float = 1.0,
        max_backoff: float = 30.0,
        connect_timeout: float = 20.0,
        method: str | None = None,
    ) -> None:
        """Create a source; nothing connects until `follow` runs.

        Args:
            endpoint: The machine.
            path: The log file on the machine (absolute or `~/...`).
            poll_interval: Seconds between the remote follower's looks at the file.
            max_line_bytes: Longest line shown in full; longer ones are cut with a marker.
            initial_backoff: First reconnect delay in seconds; doubles per failure.
            max_backoff: Longest reconnect delay in seconds.
            connect_timeout: Seconds allowed for one connection attempt.
            method: Force `python` or `tail`; None: Python when the machine has python3.
        """
        if method not in (None, "python", "tail"):
            raise ValueError(f"unknown follow method {method!r}")
        self.endpoint = endpoint
        self.path = path
        self.poll_interval = max(0.02, poll_interval)
        self.max_line_bytes = max_line_bytes
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.connect_timeout = connect_timeout
        self.method = method
        self.reconnects = 0
        """How many times `follow` has reconnected (for tests and the pane's status)."""

    @property
    def description(self) -> str:
        """`host:path`, for the pane title."""
        return f"{self.endpoint.host}:{self.path}"

    def backoff(self, attempt: int) -> float:
        """Delay before reconnect attempt `attempt` (0-based): exponential, capped, jittered."""
        ceiling = min(self.max_backoff, self.initial_backoff * (2**attempt))
        return float(ceiling * random.uniform(0.5, 1.0))

    async def follow(self, initial_lines: int = 200) -> AsyncIterator[LogChunk]:
        """Yield the last `initial_lines` lines, then new lines as they come, until cancelled.

        Args:
            initial_lines: Complete lines in the first chunk.

        Yields:
            Chunks of lines; notices for reconnects, truncation, rotation, a missing file.
        """
        assembler = LineAssembler(self.max_line_bytes)
        position = _Position()
        attempt = 0
        while True:
            reason = ""
            session: SshSession | None = None
            try:
                session = await SshSession.connect(self.endpoint, timeout=self.connect_timeout)
                if position.started:
                    self.reconnects += 1
                    yield LogChunk(partial=assembler.partial, notice="reconnected")
                stream = self._stream(session, assembler, position, initial_lines)
                async with contextlib.aclosing(stream):
                    async for chunk in stream:
                        attempt = 0
                        yield chunk
                reason = "the remote follower ended"
            except _Lost as exc:
                reason = str(exc)
            except BackendError as exc:
                reason = str(exc)
            except (OSError, asyncio.IncompleteReadError) as exc:
                reason = f"connection lost ({exc or type(exc).__name__})"
            except Exception as exc:
                import asyncssh

                if not isinstance(exc, asyncssh.Error):
                    raise
                reason = f"connection lost ({exc.reason or type(exc).__name__})"
            finally:
                if session is not None:
                    with contextlib.suppress(Exception):
                        await session.close()
            delay = self.backoff(attempt)
            attempt += 1
            shown = f"{delay:.0f}" if delay >= 1 else f"{delay:.1f}"
            log.info("log follow interrupted: %s", reason)
            yield LogChunk(
                partial=assembler.partial,
                notice=f"{reason.rstrip('.')}; reconnecting in {shown} s",
                size=position.offset,
            )
            await asyncio.sleep(delay)

    def _command(self, position: _Position, initial_lines: int) -> str:
        """The remote command: the Python follower, or `tail -F` without python3."""
        path = _remote_path_expr(self.path)
        want = -1 if position.started else max(0, initial_lines)
        known = shlex.quote(position.ident or "-")
        python = (
            f"exec python3 -c {shlex.quote(_FOLLOWER)} {path} {want} {known} "
            f"{position.offset} {self.poll_interval} {INITIAL_SCAN_BYTES}"
        )
        if position.started:
            # Resume at the offset, or from 0 when the file is now shorter (truncated).
            start = (
                f'if [ "$z" -lt {position.offset} ]; then echo T; s=0; '
                f"else s={position.offset}; fi; "
            )
        else:
            start = f"s=$(($z > {TAIL_FALLBACK_BYTES} ? $z - {TAIL_FALLBACK_BYTES} : 0)); "
        tail = (
            f"f={path}; "
            'if [ -e "$f" ]; then z=$(wc -c < "$f"); else z=0; fi; '
            f"{start}"
            'printf "X %s %s\\n" "$s" "$z"; '
            # GNU tail's --pid ends it when this SSH session's process goes away.
            "if tail --version >/dev/null 2>&1; then "
            'exec tail --pid=$PPID -c +$(($s + 1)) -F "$f"; '
            'else exec tail -c +$(($s + 1)) -F "$f"; fi'
        )
        if self.method == "tail":
            return tail
        if self.method == "python":
            return python
        return f"if command -v python3 >/dev/null 2>&1; then {python}; else {tail}; fi"

    async def _stream(
        self,
        session: SshSession,
        assembler: LineAssembler,
        position: _Position,
        initial_lines: int,
    ) -> AsyncGenerator[LogChunk, None]:
        """Run one follower and translate its output into chunks until it ends."""
        process = await session.start_process(self._command(position, initial_lines))
        try:
            reader = _FrameReader(process.stdout)
            head = await reader.line()
            if head.startswith(b"X ") or head == b"T":
                inner = self._stream_tail(
                    process.stderr, reader, head, assembler, position, initial_lines
                )
            else:
                inner = self._stream_frames(reader, head, assembler, position, initial_lines)
            async with contextlib.aclosing(inner):
                async for chunk in inner:
                    yield chunk
        except _Lost as exc:
            # Say why the follower ended when it said so (e.g. a Python traceback).
            detail = b""
            with contextlib.suppress(Exception):
                detail = await wait_for(process.stderr.read(4096), 1.0)
            last = detail.decode("utf-8", "replace").strip().splitlines()[-1:]
            raise _Lost(f"{exc}: {last[0]}" if last else str(exc)) from exc
        finally:
            process.close()

    async def _stream_frames(
        self,
        reader: _FrameReader,
        frame: bytes,
        assembler: LineAssembler,
        position: _Position,
        initial_lines: int,
    ) -> AsyncGenerator[LogChunk, None]:
        """The Python follower's frames (see the module docstring)."""
        pending: list[str] = []
        notice: str | None = None
        while True:
            kind, _, rest = frame.decode("ascii", "replace").partition(" ")
            if kind == "D":
                data = await reader.exactly(int(rest))
                position.offset += len(data)
                pending.extend(assembler.feed(data))
                if position.started and not reader.buffered():
                    yield self._chunk(assembler, position, pending, notice)
                    pending, notice = [], None
            elif kind == "S":
                ident, _, offset = rest.partition(" ")
                position.ident, position.offset = ident, int(offset)
            elif kind == "C":
                if not position.started:
                    position.started = True
                    pending = pending[-initial_lines:] if initial_lines > 0 else []
                    yield self._chunk(assembler, position, pending, notice)
                elif pending or notice:
                    yield self._chunk(assembler, position, pending, notice)
                pending, notice = [], None
            elif kind in ("T", "R", "A"):
                pending.extend(_end_line(assembler))
                position.offset = 0
                if rest:
                    position.ident = rest
                notice = {
                    "T": f"{self.path} truncated; reading it from the start",
                    "R": f"{self.path} was replaced; following the new file from the start",
                    "A": f"{self.path} appeared; following it from the start",
                }[kind]
                if position.started:
                    yield self._chunk(assembler, position, pending, notice)
                    pending, notice = [], None
            elif kind == "W":
                position.started = True
                yield self._chunk(assembler, position, pending, f"waiting for {self.path}")
                pending, notice = [], None
            elif kind != "K":
                raise _Lost(f"unexpected output from the remote follower: {frame[:80]!r}")
            frame = await reader.line()

    async def _stream_tail(
        self,
        stderr: asyncssh.SSHReader[bytes],
        reader: _FrameReader,
        head: bytes,
        assembler: LineAssembler,
        position: _Position,
        initial_lines: int,
    ) -> AsyncGenerator[LogChunk, None]:
        """The `tail -F` fallback: raw bytes after an `X <start> <size>` header.

        tail's own notices (truncation, replacement) arrive on stderr, which is not ordered
        with the data: after one of them the byte offset is a best guess.
        """
        notice: str | None = None
        pending: list[str] = []
        if head == b"T":
            pending = _end_line(assembler)
            notice = f"{self.path} truncated; reading it from the start"
            head = await reader.line()
        _, start, size = head.decode("ascii", "replace").split()
        position.offset = int(start)
        catch_up = int(size)
        skip_partial = not position.started and position.offset > 0
        if not position.started and position.offset >= catch_up:
            position.started = True
            yield self._chunk(assembler, position, pending, notice)
            pending, notice = [], None
        data_task: asyncio.Future[bytes] = asyncio.ensure_future(reader.some())
        note_task: asyncio.Future[bytes] | None = asyncio.ensure_future(stderr.readline())
        try:
            while True:
                waiting: set[asyncio.Future[bytes]] = {data_task}
                if note_task is not None:
                    waiting.add(note_task)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if note_task is not None and note_task in done:
                    text = note_task.result().decode("utf-8", "replace").strip()
                    note_task = asyncio.ensure_future(stderr.readline()) if text else None
                    if any(word in text for word in ("truncated", "replaced", "appeared")):
                        pending.extend(_end_line(assembler))
                        position.offset = 0
                    if text:
                        notice = text.removeprefix("tail: ")
                got_data = data_task in done
                if got_data:
                    data = data_task.result()
                    if not data:
                        raise _Lost("the remote tail ended")
                    data_task = asyncio.ensure_future(reader.some())
                    position.offset += len(data)
                    if skip_partial:
                        cut = data.find(b"\n")
                        data = b"" if cut < 0 else data[cut + 1 :]
                        skip_partial = cut < 0
                    pending.extend(assembler.feed(data))
                if not position.started:
                    if position.offset < catch_up:
                        continue
                    position.started = True
                    pending = pending[-initial_lines:] if initial_lines > 0 else []
                    got_data = True
                if got_data or pending or notice:
                    yield self._chunk(assembler, position, pending, notice)
                    pending, notice = [], None
        finally:
            data_task.cancel()
            if note_task is not None:
                note_task.cancel()

    def _chunk(
        self,
        assembler: LineAssembler,
        position: _Position,
        lines: list[str],
        notice: str | None,
    ) -> LogChunk:
        return LogChunk(
            lines=tuple(lines), partial=assembler.partial, notice=notice, size=position.offset
        )


def _end_line(assembler: LineAssembler) -> list[str]:
    if not assembler.has_partial:
        return []
    line = assembler.flush_line()
    return [] if line is None else [line]


class _FrameReader:
    """Buffered reads of header lines and exact byte counts from an SSH stream."""

    def __init__(self, stream: object) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._eof = False

    def buffered(self) -> bool:
        return bool(self._buffer)

    async def _fill(self) -> None:
        if self._eof:
            raise _Lost("the remote follower ended")
        data = await getattr(self._stream, "read")(262144)  # noqa: B009
        if not data:
            self._eof = True
            raise _Lost("the remote follower ended")
        self._buffer += data

    async def line(self) -> bytes:
        while True:
            cut = self._buffer.find(b"\n")
            if cut >= 0:
                head = bytes(self._buffer[:cut])
                del self._buffer[: cut + 1]
                return head
            if len(self._buffer) > 4096:
                raise _Lost("the remote follower sent a malformed header")
            await self._fill()

    async def exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            await self._fill()
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def some(self) -> bytes:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        if self._eof:
            return b""
        data = await getattr(self._stream, "read")(262144)  # noqa: B009
        if not data:
            self._eof = True
        return bytes(data)
