"""`MetricsStream`: series from a log stream, over a real SSH server and from chunks."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runctl_tui.core.logsource import LogChunk
from runctl_tui.core.metrics.stream import MetricsStream
from runctl_tui.core.metrics.tracker import read_metrics
from runctl_tui.core.remote_log import RemoteFileLogSource
from tests.sshd_fixture import SshServer

DEMO = Path(__file__).resolve().parents[2] / "runctl_tui" / "examples" / "train_demo.py"


def _run_demo(folder: Path) -> tuple[list[str], list[dict[str, float]]]:
    """The bundled demo's real console lines and the records it wrote itself (ground truth)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUNCTL_LOG_PATH": str(folder / "x")}
    done = subprocess.run(
        [sys.executable, str(DEMO), "--sleep", "0", "--checkpoint-dir", str(folder / "ck")],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return done.stdout.splitlines(), records


async def _until(stream_iter: AsyncIterator[bool], stream: MetricsStream, ok: object) -> None:
    """Consume the stream until `ok()` holds (deadline 20 s)."""
    deadline = time.monotonic() + 20
    while not ok():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out; series {list(stream.series)}"
        await asyncio.wait_for(stream_iter.__anext__(), 20)


async def test_remote_log_over_ssh_becomes_series(sshd_server: SshServer, tmp_path: Path) -> None:
    lines, records = _run_demo(tmp_path / "demo")
    truth = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val_truth = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    assert len(truth) == 300 and len(val_truth) == 5
    log = tmp_path / "remote" / "train.log"
    log.parent.mkdir()
    half = len(lines) // 2
    log.write_text("\n".join(lines[:half]) + "\n")

    source = RemoteFileLogSource(sshd_server.endpoint, str(log), poll_interval=0.05)
    stream = MetricsStream(source, clock=time.time)
    follow = stream.follow(tick=1.0)
    try:
        await _until(follow, stream, lambda: len(stream.series.get("loss", ())) >= 140)
        # The rest is written while the stream follows, partly as half lines.
        with log.open("a") as out:
            for line in lines[half:]:
                out.write(line[:7])
                out.flush()
                out.write(line[7:] + "\n")
        await _until(follow, stream, lambda: stream.lines == len(lines))

        loss = stream.series["loss"]
        assert [s for s, _ in loss] == [float(s) for s, _ in truth]
        assert [v for _, v in loss] == pytest.approx([v for _, v in truth], abs=6e-5)
        # The per-epoch evaluations are there (checkpoint lines also print a val_loss).
        val = dict(stream.series["val_loss"].points())
        for step, value in val_truth:
            assert val[float(step)] == pytest.approx(value, abs=6e-5)
        # The same series as reading the finished log as a local file.
        assert stream.points() == read_metrics(log)
        assert stream.series["lr"].values[0] == pytest.approx(0.5, abs=1e-4)
        # A healthy run: no divergence, no stall.
        assert stream.alerts(divergence_factor=3.0, stall_seconds=600) == []

        with log.open("a") as out:
            out.write("epoch 6/5 step 301 loss=nan lr=0.0500\n")
        await _until(follow, stream, lambda: len(stream.series["loss"]) == 301)
        (alert,) = stream.alerts(divergence_factor=3.0, stall_seconds=600)
        assert alert.kind == "nonfinite" and "NaN at step 301" in alert.message
    finally:
        await follow.aclose()


class _Chunks:
    """A LogSource giving fixed chunks, then staying silent (a stalled run)."""

    description = "chunks"

    def __init__(self, chunks: list[LogChunk]) -> None:
        self.chunks = chunks

    async def follow(self, initial_lines: int = 200) -> AsyncIterator[LogChunk]:
        for chunk in self.chunks:
            yield chunk
        await asyncio.Event().wait()


def test_partial_lines_only_count_when_they_are_complete_bar_redraws() -> None:
    stream = MetricsStream(_Chunks([]))
    # A half-written plain line is not parsed; its completed form is, once.
    assert not stream.feed(LogChunk(partial="step 5 loss=0.5"))
    assert stream.feed(LogChunk(lines=("step 5 loss=0.5312",)))
    assert stream.series["loss"].points() == [(5.0, 0.5312)]
    # tqdm redraws arrive as partials ending with `]`: each new postfix counts once.
    bar = " {}%|#| {}/100 [00:01<00:20, 4.5it/s, acc={}]"
    assert stream.feed(LogChunk(partial=bar.format(5, 5, 0.25)))
    assert not stream.feed(LogChunk(partial=bar.format(5, 5, 0.25)))
    assert not stream.feed(LogChunk(partial=bar.format(6, 6, 0.2)[:-8]))
    assert stream.feed(LogChunk(partial=bar.format(7, 7, 0.5)))
    assert stream.series["acc"].values == [0.25, 0.5]


def test_truncation_starts_afresh_and_stall_is_seen_on_quiet_ticks() -> None:
    now = [1000.0]
    chunks = [
        LogChunk(lines=tuple(f"step {i} loss={1 / i:.4f}" for i in range(1, 30))),
        LogChunk(notice="train.log truncated; reading it from the start"),
        LogChunk(lines=("step 1 loss=2.0",)),
    ]
    stream = MetricsStream(_Chunks(chunks), clock=lambda: now[0])

    async def run() -> list[bool]:
        seen: list[bool] = []
        follow = stream.follow(tick=0.05)
        async for changed in follow:
            seen.append(changed)
            if len(seen) == 3:
                assert stream.series["loss"].points() == [(1.0, 2.0)]
                now[0] += 601
            if len(seen) == 4:
                await follow.aclose()
                break
        return seen

    assert asyncio.run(run()) == [True, True, True, False]
    (stall,) = stream.alerts(divergence_factor=3.0, stall_seconds=600)
    assert stall.kind == "stall"
    assert not math.isnan(stream.series["loss"].values[0])


async def test_source_errors_surface() -> None:
    class Broken:
        description = "broken"

        async def follow(self, initial_lines: int = 200) -> AsyncIterator[LogChunk]:
            yield LogChunk(lines=("step 1 loss=1.0",))
            raise OSError("disk gone")

    stream = MetricsStream(Broken())
    with pytest.raises(OSError, match="disk gone"):
        async for _ in stream.follow(tick=1.0):
            pass
    assert len(stream.series["loss"]) == 1
