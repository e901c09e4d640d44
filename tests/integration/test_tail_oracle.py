"""GNU `tail -n +1 -F` is the oracle: it and FileLogSource follow the same scripted writer.

The writer appends, copy-truncates, rotates by rename, deletes and recreates the file, and
creates it late. After every step both readers are awaited (polling with a deadline) until
they have caught up; at the end their line sequences must be identical to each other and to
what the writer wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from runctl_tui.core.logs import FileLogSource

TAIL = shutil.which("tail")
pytestmark = pytest.mark.skipif(TAIL is None, reason="GNU tail is not installed")

DEADLINE = 10.0


async def until(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Poll `condition` until it holds; fail with `what` after `deadline` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class TailReader:
    """GNU tail in a subprocess, its stdout split into lines and its stderr kept."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self.stderr = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            TAIL or "tail",
            "-n",
            "+1",
            "-F",
            # tail polls when it cannot use inotify (it cannot while the file is missing);
            # a short interval keeps the test fast without changing what it outputs.
            "-s",
            "0.02",
            str(self.path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "LC_ALL": "C"},
        )
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            self.lines.append(line.decode().rstrip("\n"))

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while line := await self._proc.stderr.readline():
            self.stderr += line.decode()

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class OurReader:
    """FileLogSource.follow in a task, its lines and notices collected."""

    def __init__(self, source: FileLogSource) -> None:
        self.source = source
        self.lines: list[str] = []
        self.notices: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async for chunk in self.source.follow(initial_lines=1_000_000):
            self.lines.extend(chunk.lines)
            if chunk.notice:
                self.notices.append(chunk.notice)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def readers(path: Path, *, use_events: bool) -> AsyncIterator[tuple[TailReader, OurReader]]:
    tail = TailReader(path)
    ours = OurReader(FileLogSource(path, poll_interval=0.05, use_events=use_events))
    await tail.start()
    ours.start()
    try:
        yield tail, ours
    finally:
        await tail.stop()
        await ours.stop()


def append(path: Path, lines: list[str]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(f"{line}\n" for line in lines))


@pytest.mark.parametrize("use_events", [True, False], ids=["events", "polling"])
async def test_tail_F_oracle_line_for_line(tmp_path: Path, use_events: bool) -> None:
    log = tmp_path / "train.log"
    expected: list[str] = []

    async def step(lines: list[str], what: str) -> None:
        expected.extend(lines)
        n = len(expected)
        await until(lambda: len(tail.lines) >= n, f"tail after {what}: {tail.lines[-3:]}")
        await until(lambda: len(ours.lines) >= n, f"ours after {what}: {ours.lines[-3:]}")
        assert tail.lines == expected, what
        assert ours.lines == expected, what

    async with readers(log, use_events=use_events) as (tail, ours):
        # Late creation: both readers start before the file exists.
        await until(lambda: "cannot open" in tail.stderr, "tail to report the missing file")
        await until(lambda: bool(ours.notices), "our waiting notice")
        assert "waiting" in ours.notices[0]
        batch = [f"epoch 1 step {i} loss {1 / (i + 1):.4f}" for i in range(5)]
        append(log, batch)
        await step(batch, "late creation")

        batch = [f"epoch 1 step {i} loss {1 / (i + 1):.4f}" for i in range(5, 40)]
        append(log, batch)
        await step(batch, "append")

        # copytruncate, as logrotate does it: copy away, then truncate in place.
        shutil.copy(log, tmp_path / "train.log.1")
        os.truncate(log, 0)
        await until(lambda: "truncated" in tail.stderr, "tail to see the truncation")
        await until(lambda: any("truncated" in n for n in ours.notices), "our truncation notice")
        batch = ["after truncate 1", "after truncate 2"]
        append(log, batch)
        await step(batch, "copytruncate")

        # Rotation by rename, then a new file under the old name.
        os.replace(log, tmp_path / "train.log.1")
        batch = [f"rotated file line {i}" for i in range(3)]
        append(log, batch)
        await step(batch, "rename rotation")

        # Deletion, then recreation.
        log.unlink()
        await until(lambda: "inaccessible" in tail.stderr, "tail to see the deletion")
        await until(lambda: any("deleted" in n for n in ours.notices), "our deletion notice")
        batch = ["recreated 1", "recreated 2"]
        append(log, batch)
        await step(batch, "deletion and recreation")

        # A burst of many writes, some lines split across writes.
        batch = [f"burst {i} " + "x" * (i % 97) for i in range(3000)]
        payload = "".join(f"{line}\n" for line in batch).encode()
        with log.open("ab") as handle:
            for offset in range(0, len(payload), 4093):
                handle.write(payload[offset : offset + 4093])
                handle.flush()
        await step(batch, "burst")

    assert tail.lines == ours.lines == expected


async def test_writes_to_renamed_file_before_replacement_are_kept(tmp_path: Path) -> None:
    """An app that keeps writing to the renamed file until it reopens loses nothing here."""
    log = tmp_path / "app.log"
    append(log, ["first"])
    ours = OurReader(FileLogSource(log, poll_interval=0.05))
    ours.start()
    try:
        await until(lambda: ours.lines == ["first"], "the initial line")
        with log.open("a", encoding="utf-8") as handle:
            os.replace(log, tmp_path / "app.log.1")
            await until(lambda: any("deleted" in n for n in ours.notices), "the move notice")
            handle.write("written after the rename\n")
            handle.flush()
            await until(lambda: len(ours.lines) == 2, "the line written to the renamed file")
        append(log, ["new file"])
        await until(lambda: len(ours.lines) == 3, "the new file's line")
        assert ours.lines == ["first", "written after the rename", "new file"]
    finally:
        await ours.stop()
