"""Local logs: backwards tail, progress-bar collapsing on real captures, bad bytes, memory."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from runctl_tui.core.logs import (
    FileLogSource,
    LineAssembler,
    LineBuffer,
    collapse_carriage_returns,
    strip_ansi,
    tail_lines,
)
from runctl_tui.core.logs import tail as tail_module
from runctl_tui.core.logsource import LogChunk, LogSource

LOGS = Path(__file__).resolve().parent.parent / "data" / "logs"
TQDM_SAMPLES = sorted(LOGS.glob("tqdm-*.log"))
LIGHTNING_SAMPLES = sorted(LOGS.glob("lightning-*.log"))


def truth(sample: Path) -> dict[str, object]:
    return json.loads(sample.with_suffix(".json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def feed_in_pieces(data: bytes, piece: int, max_line_bytes: int = 64 * 1024) -> list[str]:
    assembler = LineAssembler(max_line_bytes)
    lines: list[str] = []
    for offset in range(0, len(data), piece):
        lines.extend(assembler.feed(data[offset : offset + piece]))
    if assembler.has_partial and (last := assembler.flush_line()) is not None:
        lines.append(last)
    return lines


async def until(condition: Callable[[], bool], deadline: float = 10.0) -> None:
    """Poll `condition` until it holds, failing after `deadline` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        if condition():
            return
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


async def collect(source: LogSource, done: Callable[[list[LogChunk]], bool]) -> list[LogChunk]:
    return await collect_n(source, 1000, done)


async def collect_n(
    source: LogSource, initial: int, done: Callable[[list[LogChunk]], bool]
) -> list[LogChunk]:
    chunks: list[LogChunk] = []
    generator = source.follow(initial_lines=initial)

    async def consume() -> None:
        async for chunk in generator:
            chunks.append(chunk)
            if done(chunks):
                return

    try:
        await asyncio.wait_for(consume(), 10)
    finally:
        await generator.aclose()  # type: ignore[attr-defined]
    return chunks


def lines_of(chunks: list[LogChunk]) -> list[str]:
    return [line for chunk in chunks for line in chunk.lines]


# --- progress bars captured from the real libraries -------------------------------------------


@pytest.mark.parametrize("sample", TQDM_SAMPLES, ids=lambda p: p.name)
def test_tqdm_capture_collapses_to_tqdms_own_final_render(sample: Path) -> None:
    expected = truth(sample)["expected_lines"]
    raw = sample.read_bytes()
    assert raw.count(b"\r") > 40, "the capture holds the intermediate states"
    assert tail_lines(sample, 100) == expected
    assert collapse_carriage_returns(raw.decode()).split("\n")[:-1] == expected
    # Arriving in small pieces (a follow catching each write) gives the same lines.
    for piece in (1, 7, 64, 4096):
        assert feed_in_pieces(raw, piece) == expected


@pytest.mark.parametrize("sample", LIGHTNING_SAMPLES, ids=lambda p: p.name)
def test_lightning_capture_shows_final_bar_and_no_validation_flood(sample: Path) -> None:
    bar = truth(sample)
    raw = sample.read_bytes()
    assert raw.count(b"\r") > 30
    lines = tail_lines(sample, 1000)
    assert feed_in_pieces(raw, 5) == lines
    final = lines[-1]
    # The last line is the train bar as Lightning left it: its description, 100 %, n/total
    # and the metrics postfix it reported at the end of training.
    assert final.startswith(f"{bar['desc']}100%|")
    assert f"| {bar['n']}/{bar['total']} [" in final
    assert final.endswith(f", {bar['postfix']}]")
    # Sanity-check and validation bars (nested rows) and intermediate states never become lines.
    assert not [line for line in lines if "Validation" in line or "Sanity Checking" in line]
    epoch_lines = [line for line in lines if line.startswith("Epoch ")]
    assert all("100%" in line for line in epoch_lines)
    assert len(epoch_lines) <= 2 * int(str(bar["epochs"]))


async def test_follow_of_a_progress_bar_updates_partial_not_lines(tmp_path: Path) -> None:
    log = tmp_path / "bar.log"
    log.write_bytes(b"start\n")
    source = FileLogSource(log, poll_interval=0.05)
    chunks: list[LogChunk] = []

    async def follow() -> None:
        async for chunk in source.follow():
            chunks.append(chunk)

    task = asyncio.create_task(follow())
    try:
        await until(lambda: bool(chunks))
        with log.open("ab") as handle:
            for step in range(1, 2001):
                handle.write(f"\rstep {step}/2000".encode())
                if step % 100 == 0:
                    handle.flush()
                    await asyncio.sleep(0)
        await until(lambda: chunks[-1].partial == "step 2000/2000")
        with log.open("ab") as handle:
            handle.write(b"\ndone\n")
        await until(lambda: "done" in lines_of(chunks))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert lines_of(chunks) == ["start", "step 2000/2000", "done"]


# --- text helpers --------------------------------------------------------------------------------


def test_strip_ansi_removes_colour_and_cursor_codes_but_lines_keep_them() -> None:
    coloured = "\x1b[1;31mERROR\x1b[0m loss \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x1b[2K"
    assert strip_ansi(coloured) == "ERROR loss link "
    assert feed_in_pieces(coloured.encode() + b"\n", 3) == [coloured]


def test_collapse_handles_crlf_padding_and_backspaces() -> None:
    assert collapse_carriage_returns("a\r\nb") == "a\nb"
    assert collapse_carriage_returns("10%\r100%     \r50%") == "50%"
    assert collapse_carriage_returns("abc\b\bX") == "aXc"
    assert collapse_carriage_returns("\rrow below\x1b[A\nmain") == "main"


def test_invalid_utf8_and_nul_regions_are_shown_not_fatal(tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    log.write_bytes(b"ok \xff\xfe\xc3 end\n" + b"\x00" * 5000 + b"\nbell\x07\nlast\n")
    lines = tail_lines(log, 10)
    assert lines[0] == "ok \ufffd\ufffd\ufffd end"
    assert lines[1] == "␀×5000"
    assert lines[2:] == ["bell␇", "last"]


def test_50_mb_line_is_cut_with_marker_in_bounded_memory(tmp_path: Path) -> None:
    log = tmp_path / "huge.log"
    block = b"y" * (1024 * 1024)
    with log.open("wb") as handle:
        handle.write(b"before\n")
        for _ in range(50):
            handle.write(block)
        handle.write(b"\nafter\n")
    total = 50 * len(block)
    tracemalloc.start()
    try:
        lines = tail_lines(log, 3)
        _, peak_tail = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assembler = LineAssembler()
        followed: list[str] = []
        with log.open("rb") as handle:
            while piece := handle.read(1024 * 1024):
                followed.extend(assembler.feed(piece))
        _, peak_follow = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    marker = f" … [line truncated: {total:,} bytes]"
    assert lines[0] == "before" and lines[2] == "after"
    assert lines[1] == "y" * (64 * 1024) + marker
    assert followed == lines
    assert peak_tail < 4 * 1024 * 1024, peak_tail
    assert peak_follow < 8 * 1024 * 1024, peak_follow


def test_tail_of_a_huge_file_reads_only_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "big.log"
    with log.open("wb") as handle:
        handle.truncate(5 * 1024**3)  # 5 GB, sparse: costs no disk
        handle.seek(0, os.SEEK_END)
        handle.write(b"".join(f"line {i}\n".encode() for i in range(1000)))
    read: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, length: int, offset: int) -> bytes:
        data = real_pread(fd, length, offset)
        read.append(len(data))
        return data

    monkeypatch.setattr(tail_module.os, "pread", counting_pread)
    assert tail_lines(log, 50) == [f"line {i}" for i in range(950, 1000)]
    assert sum(read) < 1024 * 1024


def test_tail_lines_counts_the_unterminated_line_and_edge_cases(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    log.write_bytes(b"")
    assert tail_lines(log, 5) == []
    log.write_bytes(b"\n")
    assert tail_lines(log, 5) == [""]
    log.write_bytes(b"a\nb\nc\npart")
    assert tail_lines(log, 2) == ["c", "part"]
    assert tail_lines(log, 10) == ["a", "b", "c", "part"]
    assert tail_lines(log, 0) == []
    with pytest.raises(FileNotFoundError):
        tail_lines(tmp_path / "missing.log", 5)


def test_tail_of_many_lines_beyond_the_bulk_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tail_module, "BULK_READ_BYTES", 1000)
    log = tmp_path / "m.log"
    log.write_bytes(
        b"".join(f"{i} \x1b[32mok\x1b[0m\r{i} done\n".encode() for i in range(500)) + b"tail"
    )
    assert tail_lines(log, 3) == ["498 done", "499 done", "tail"]


# --- following ----------------------------------------------------------------------------------


async def test_follow_starts_at_the_tail_with_partial_and_size(tmp_path: Path) -> None:
    log = tmp_path / "f.log"
    log.write_bytes(b"".join(f"{i}\n".encode() for i in range(100)) + b"epoch 3 50%\repoch 3 60%")
    source = FileLogSource(log)
    assert isinstance(source, LogSource)
    assert source.description == str(log)
    generator = source.follow(initial_lines=5)
    first = await generator.__anext__()
    await generator.aclose()  # type: ignore[attr-defined]
    assert first.lines == ("95", "96", "97", "98", "99")
    assert first.partial == "epoch 3 60%"
    assert first.size == log.stat().st_size


async def test_partial_line_is_kept_when_the_file_is_truncated(tmp_path: Path) -> None:
    log = tmp_path / "p.log"
    log.write_bytes(b"a\nhalf a li")
    source = FileLogSource(log, poll_interval=0.05)

    def seen(chunks: list[LogChunk]) -> bool:
        if chunks and chunks[-1].partial == "half a li" and not any(c.notice for c in chunks):
            os.truncate(log, 0)
            log.write_bytes(b"x\n")
        return "x" in lines_of(chunks)

    chunks = await collect(source, seen)
    assert lines_of(chunks) == ["a", "half a li", "x"]
    assert any(c.notice and "truncated" in c.notice for c in chunks)


async def test_follow_cancels_cleanly_and_stops_its_watcher(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text("x\n")
    before = {t.get_name() for t in asyncio.all_tasks()}
    source = FileLogSource(log)

    async def run() -> None:
        async for _chunk in source.follow():
            pass

    task = asyncio.create_task(run())
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    leftover = {t.get_name() for t in asyncio.all_tasks()} - before
    assert not [name for name in leftover if name.startswith("watch ")]


# --- bounded buffer ---------------------------------------------------------------------------------


def test_line_buffer_keeps_the_newest_lines_with_stable_numbers() -> None:
    buffer = LineBuffer(max_lines=1000)
    for start in range(0, 100_000, 500):
        buffer.add(LogChunk(lines=tuple(str(i) for i in range(start, start + 500)), size=start))
    assert len(buffer) == 1000
    assert buffer.total == 100_000
    assert buffer.first_number == 99_000
    assert buffer.line(99_000) == "99000"
    assert buffer.line(99_999) == "99999"
    with pytest.raises(IndexError):
        buffer.line(98_999)
    buffer.add(LogChunk(partial="50%"))
    assert buffer.text_lines()[-2:] == ["99999", "50%"]
    assert buffer.size == 99_500


def test_huge_tail_requests_stream_instead_of_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tail_module, "MAX_STARTS_KEPT", 50)
    monkeypatch.setattr(tail_module, "SCAN_BLOCK", 64)
    log = tmp_path / "many.log"
    log.write_bytes(b"".join(f"{i}\n".encode() for i in range(1000)) + b"part")
    fd = os.open(log, os.O_RDONLY)
    try:
        span = tail_module.scan_tail(fd, log.stat().st_size, 700)
        assert span.streamed and len(span.starts) == 1
        assert span.starts[0] == sum(len(f"{i}\n") for i in range(300))
        listed = tail_module.scan_tail(fd, log.stat().st_size, 40)
        assert not listed.streamed and len(listed.starts) == 41
    finally:
        os.close(fd)
    assert tail_lines(log, 701) == [str(i) for i in range(300, 1000)] + ["part"]
    assert tail_lines(log, 5000)[0] == "0"


async def test_follow_with_a_huge_initial_request_streams_the_file(tmp_path: Path) -> None:
    log = tmp_path / "stream.log"
    log.write_bytes(b"".join(f"{i}\n".encode() for i in range(300_000)))
    total = 0

    def done(chunks: list[LogChunk]) -> bool:
        nonlocal total
        total = sum(len(c.lines) for c in chunks)
        return total >= 300_000

    chunks = await collect_n(FileLogSource(log), 10**9, done)
    assert lines_of(chunks)[:2] == ["0", "1"] and lines_of(chunks)[-1] == "299999"
    assert total == 300_000
    assert len(chunks) > 1, "the backlog arrives in several chunks, not one list"


async def test_a_streaming_log_is_read_at_most_once_per_min_read_interval(tmp_path: Path) -> None:
    """A pane that draws twice a second needs no more than two reads a second: appends that
    keep coming are read together, every line still arrives once and in order."""
    log = tmp_path / "s.log"
    log.write_text("start\n")
    source = FileLogSource(log, poll_interval=0.05, min_read_interval=1.0)
    reads: list[tuple[float, tuple[str, ...]]] = []
    started = asyncio.Event()

    async def follow() -> None:
        async for chunk in source.follow():
            if chunk.lines:
                reads.append((time.monotonic(), chunk.lines))
                started.set()
            if chunk.lines and chunk.lines[-1] == "line 29":
                return

    task = asyncio.create_task(follow())
    await asyncio.wait_for(started.wait(), 10)
    for index in range(30):  # 30 appends over ~0.9 s
        with log.open("a") as fh:
            fh.write(f"line {index}\n")
        await asyncio.sleep(0.03)
    await asyncio.wait_for(task, 10)
    lines = [line for _, chunk in reads for line in chunk]
    assert lines == ["start", *(f"line {index}" for index in range(30))]
    # Without the interval each append would be a read of its own (30); with it, reads are
    # at least a second apart.
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(reads)]
    assert len(reads) <= 4
    assert all(gap >= 0.9 for gap in gaps)
