"""`runctl monitor` as a user runs it: a real process, real files, real exit codes."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import runctl


class Monitor:
    """A `runctl monitor --follow` process whose stdout and stderr lines are collected."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runctl_tui", "monitor", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RUNCTL_MONITOR_LOG_POLL_SECONDS": "0.1"},
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._queue: queue.Queue[None] = queue.Queue()
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))
            self._queue.put(None)

    def wait(self, condition: Callable[[], bool], what: str, deadline: float = 20.0) -> None:
        end = time.monotonic() + deadline
        while not condition():
            remaining = end - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                raise AssertionError(
                    f"timed out waiting for {what}; stdout={self.stdout} stderr={self.stderr}"
                )
            try:
                self._queue.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                pass

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=20)


@pytest.fixture
def monitor_factory() -> Iterator[Callable[..., Monitor]]:
    started: list[Monitor] = []

    def start(*args: str, cwd: Path) -> Monitor:
        monitor = Monitor(*args, cwd=cwd)
        started.append(monitor)
        return monitor

    yield start
    for monitor in started:
        if monitor.proc.poll() is None:
            monitor.proc.kill()
            monitor.proc.wait()


def test_monitor_prints_the_collapsed_plain_tail(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"one\ntwo\n\x1b[31mred\x1b[0m\nepoch 1  10%\repoch 1 100%\nlast")
    result = runctl("monitor", "--log", str(log), "-n", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["red", "epoch 1 100%", "last"]


def test_monitor_usage_and_missing_file_errors(tmp_path: Path) -> None:
    no_args = runctl("monitor", cwd=tmp_path)
    assert no_args.returncode == 2
    assert "--log" in no_args.stderr
    missing = runctl("monitor", "--log", str(tmp_path / "nope.log"), cwd=tmp_path)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and "--follow" in missing.stderr
    no_dir = runctl("monitor", "--checkpoint", str(tmp_path / "none"), cwd=tmp_path)
    assert no_dir.returncode == 1
    for extra in ((), ("--follow",)):
        a_dir = runctl("monitor", "--log", str(tmp_path), *extra, cwd=tmp_path)
        assert a_dir.returncode == 1
        assert "is a directory, not a log file" in a_dir.stderr


def test_monitor_follows_log_and_checkpoints_at_once(
    tmp_path: Path, monitor_factory: Callable[..., Monitor]
) -> None:
    log = tmp_path / "train.log"
    log.write_text("old 1\nold 2\nold 3\n")
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "epoch=0-step=10.ckpt").write_bytes(b"x" * 100)
    monitor = monitor_factory(
        "--log", str(log), "--checkpoint", str(checkpoints), "--follow", "-n", "2", cwd=tmp_path
    )
    monitor.wait(lambda: "old 3" in monitor.stdout, "the initial tail")
    monitor.wait(
        lambda: any("epoch=0-step=10.ckpt" in line for line in monitor.stdout), "existing ckpt"
    )
    assert "old 1" not in monitor.stdout
    with log.open("a") as handle:
        handle.write("step 1\rstep 2\rstep 3\nloss 0.5\n")
    monitor.wait(lambda: "loss 0.5" in monitor.stdout, "appended lines")
    (checkpoints / "epoch=1-step=20.ckpt").write_bytes(b"y" * 200)
    hf = checkpoints / "checkpoint-500"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"z" * 64)
    monitor.wait(
        lambda: any("epoch=1-step=20.ckpt" in line for line in monitor.stdout), "a new ckpt"
    )
    monitor.wait(lambda: any("checkpoint-500" in line for line in monitor.stdout), "HF dir")
    # Rotation while following: the new file is read from its start.
    shutil.move(log, tmp_path / "train.log.1")
    log.write_text("fresh file\n")
    monitor.wait(lambda: "fresh file" in monitor.stdout, "the rotated-in file")
    assert monitor.interrupt() == 130
    log_lines = [line for line in monitor.stdout if not line.startswith("checkpoint ")]
    assert log_lines == ["old 2", "old 3", "step 3", "loss 0.5", "fresh file"]
    assert any("replaced" in line or "deleted" in line for line in monitor.stderr)
    printed = [line for line in monitor.stdout if line.startswith("checkpoint ")]
    assert len(printed) == 3, printed


def test_monitor_follow_waits_for_a_log_that_does_not_exist_yet(
    tmp_path: Path, monitor_factory: Callable[..., Monitor]
) -> None:
    log = tmp_path / "later.log"
    monitor = monitor_factory("--log", str(log), "--follow", cwd=tmp_path)
    monitor.wait(lambda: any("waiting" in line for line in monitor.stderr), "waiting notice")
    log.write_text("hello\n")
    monitor.wait(lambda: monitor.stdout == ["hello"], "the late file's line")
    assert monitor.interrupt() == 130
