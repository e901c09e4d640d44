"""`RemoteFileLogSource` over a real SSH server: tail, follow, and dropped connections.

The remote machine is this one: the tests write the log locally and kill the remote follower
(or sshd's process for the connection) by pid to drop the stream mid-follow.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from runctl_tui.core.logsource import LogChunk, LogSource
from runctl_tui.core.models import SshEndpoint
from runctl_tui.core.remote_log import RemoteFileLogSource
from runctl_tui.core.ssh import SshSession
from tests.sshd_fixture import SshServer, free_port, start_asyncssh_server

STEPS = 300


def _pids_with(text: str) -> list[int]:
    """Processes whose command line contains `text` (the test's unique log path)."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def _next(follow: AsyncIterator[LogChunk], timeout: float = 15) -> LogChunk:
    return await asyncio.wait_for(follow.__anext__(), timeout)


def _expected(i: int) -> str:
    return f"step {i} loss={1 / (i + 1):.4f}"


async def _write_steps(path: Path, pauses: dict[int, asyncio.Event]) -> None:
    """Append STEPS lines, often in two writes (a partial line first), some with \\r updates.

    Before finishing step `i` in `pauses`, wait for its event: the test drops the connection
    there while half of line `i` is written, and the rest is written while it is down.
    """
    with path.open("ab", buffering=0) as out:
        for i in range(STEPS):
            line = _expected(i).encode()
            if i % 25 == 0:
                out.write(b"progress 10%\rprogress 60%")
                await asyncio.sleep(0.002)
                out.write(b"\rprogress 100%\n")
            cut = len(line) // 2
            out.write(line[:cut])
            if i in pauses:
                await pauses[i].wait()
            else:
                await asyncio.sleep(0.002)
            out.write(line[cut:] + b"\n")


def _expected_lines() -> list[str]:
    lines = []
    for i in range(STEPS):
        if i % 25 == 0:
            lines.append("progress 100%")
        lines.append(_expected(i))
    return lines


async def _follow_through_drops(
    server: SshServer, tmp_path: Path, method: str, *, kill_connection: bool
) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"old 1\nold 2\nheader\n")
    source = RemoteFileLogSource(
        server.endpoint,
        str(log),
        method=method,
        poll_interval=0.02,
        initial_backoff=0.05,
        max_backoff=0.2,
    )
    assert isinstance(source, LogSource)
    follow = source.follow(initial_lines=1)
    first = await _next(follow)
    assert first.lines == ("header",)
    pauses = {step: asyncio.Event() for step in (STEPS // 4, STEPS // 2, 3 * STEPS // 4)}
    if not kill_connection:
        pauses.pop(3 * STEPS // 4)
    writer = asyncio.create_task(_write_steps(log, pauses))
    lines: list[str] = []
    notices: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while _expected(STEPS - 1) not in lines:
            assert time.monotonic() < deadline, f"stuck after {lines[-3:]}, {notices}"
            chunk = await _next(follow)
            lines.extend(chunk.lines)
            if chunk.notice:
                notices.append(chunk.notice)
            waiting = [s for s, e in sorted(pauses.items()) if not e.is_set()]
            if waiting and _expected(waiting[0] - 1) in lines:
                # The writer is paused half-way through the next line: drop the stream now.
                if kill_connection and len(waiting) == 1:
                    # Kill sshd's own process for the connection: the TCP stream dies.
                    assert server.pid is not None
                    victims = _children_of(server.pid)
                else:
                    victims = _pids_with(str(log))
                assert victims, "found nothing to kill"
                _kill(victims)
                pauses[waiting[0]].set()
        await writer
    finally:
        writer.cancel()
        await follow.aclose()
    assert lines == _expected_lines(), "lines were lost or repeated across reconnects"
    assert sum("reconnecting in" in n for n in notices) >= (3 if kill_connection else 2)
    assert source.reconnects >= (3 if kill_connection else 2)
    # Closing the follow ends the remote follower too: nothing is left on the machine.
    deadline = time.monotonic() + 10
    while _pids_with(str(log)):
        assert time.monotonic() < deadline, "the remote follower outlived the follow"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("method", ["python", "tail"])
async def test_dropped_streams_resume_without_duplicates_or_loss(
    sshd_server: SshServer, tmp_path: Path, method: str
) -> None:
    await _follow_through_drops(
        sshd_server, tmp_path, method, kill_connection=sshd_server.kind == "openssh"
    )


async def test_first_chunk_is_the_tail_and_progress_bars_collapse(
    sshd_server: SshServer, tmp_path: Path
) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(5000)) + b"epoch 1 10%\repoch 1 20%")
    source = RemoteFileLogSource(sshd_server.endpoint, str(log), poll_interval=0.02)
    follow = source.follow(initial_lines=3)
    try:
        first = await _next(follow)
        assert first.lines == ("line 4997", "line 4998", "line 4999")
        assert first.partial == "epoch 1 20%"
        assert first.size == log.stat().st_size
        with log.open("ab") as out:
            out.write(b"\repoch 1 100%\nloss 0.5\n")
        lines: list[str] = []
        while "loss 0.5" not in lines:
            lines.extend((await _next(follow)).lines)
        assert lines == ["epoch 1 100%", "loss 0.5"]
    finally:
        await follow.aclose()
    assert source.description == f"127.0.0.1:{log}"


async def test_missing_file_truncation_and_rotation(sshd_server: SshServer, tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    source = RemoteFileLogSource(sshd_server.endpoint, str(log), poll_interval=0.02)
    follow = source.follow()

    async def until(predicate: str) -> tuple[list[str], list[str]]:
        lines: list[str] = []
        notices: list[str] = []
        while predicate not in lines:
            chunk = await _next(follow)
            lines.extend(chunk.lines)
            notices += [chunk.notice] if chunk.notice else []
        return lines, notices

    try:
        first = await _next(follow)
        assert first.lines == ()
        assert first.notice is not None and "waiting for" in first.notice
        log.write_text("a\nb\n")
        lines, notices = await until("b")
        assert lines == ["a", "b"]
        assert any("appeared" in n for n in notices)

        log.write_text("c\n")  # truncated to a shorter file, then written
        lines, notices = await until("c")
        assert lines == ["c"]
        assert any("truncated" in n for n in notices)

        with log.open("a") as out:
            out.write("d\n")
        log.rename(tmp_path / "later.log.1")
        log.write_text("e\n")
        lines, notices = await until("e")
        assert lines == ["d", "e"]
        assert any("replaced" in n for n in notices)
    finally:
        await follow.aclose()


async def test_cancelling_the_follow_ends_the_remote_follower(
    sshd_server: SshServer, tmp_path: Path
) -> None:
    log = tmp_path / "train.log"
    log.write_text("one\n")
    seen: list[str] = []
    got_one = asyncio.Event()

    async def pane_worker() -> None:
        # What LogView's worker does: iterate until the worker is cancelled.
        async for chunk in RemoteFileLogSource(sshd_server.endpoint, str(log)).follow():
            seen.extend(chunk.lines)
            got_one.set()

    task = asyncio.create_task(pane_worker())
    await asyncio.wait_for(got_one.wait(), 15)
    assert seen == ["one"]
    assert _pids_with(str(log)), "a follower runs on the machine while the pane follows"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 10
    while _pids_with(str(log)):
        assert time.monotonic() < deadline, "the remote follower outlived the cancelled worker"
        await asyncio.sleep(0.05)


async def test_unreachable_machine_is_retried_with_growing_delays(
    sshd_server: SshServer,
) -> None:
    endpoint = SshEndpoint("127.0.0.1", free_port(), sshd_server.user, str(sshd_server.key_path))
    source = RemoteFileLogSource(endpoint, "/tmp/x.log", initial_backoff=0.02, max_backoff=0.08)
    follow = source.follow()
    try:
        notices = [(await _next(follow)).notice for _ in range(4)]
    finally:
        await follow.aclose()
    assert all(n is not None and "reconnecting in" in n for n in notices)
    assert all(n is not None and "reachable" in n for n in notices)
    delays = [source.backoff(attempt) for attempt in range(8)]
    assert all(0.01 <= d <= 0.08 for d in delays)
    assert max(source.backoff(attempt) for attempt in range(10, 20)) <= 0.08


async def test_the_source_is_reachable_from_core_ssh(sshd_server: SshServer) -> None:
    from runctl_tui.core import ssh

    assert ssh.RemoteFileLogSource is RemoteFileLogSource
    async with await SshSession.connect(sshd_server.endpoint) as session:
        assert (await session.run("command -v python3")).ok


@pytest.fixture(scope="module")
def fallback_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = start_asyncssh_server(tmp_path_factory.mktemp("fallback-sshd-logs"))
    yield server
    server.stop()


async def test_follow_through_drops_on_the_asyncssh_fallback_server(
    fallback_server: SshServer, tmp_path: Path
) -> None:
    await _follow_through_drops(fallback_server, tmp_path, "python", kill_connection=False)
