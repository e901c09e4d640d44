"""Helpers several test modules share: running `runctl`, polling for a condition, a clock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runctl_tui.cli import main
from runctl_tui.core.config import Config
from runctl_tui.core.errors import RunctlError
from runctl_tui.core.local_runs import run_is_alive, stop_run
from runctl_tui.core.runs import RunRegistry


class Clock:
    """A clock the test moves: call it for the time, set `now` to move it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def stop_if_running(config: Config, run_id: str, grace: float = 2) -> None:
    """Clean up after a test: stop a local run unless it has ended on its own.

    A short run can finish between any status check and the stop, so checking first
    and then stopping races; this asks for the stop and accepts "already ended".
    """
    run = RunRegistry().get(run_id)
    if run.status.is_final or not run_is_alive(run):
        return
    try:
        stop_run(config, run_id, grace=grace)
    except RunctlError as error:
        if "already ended" not in str(error):
            raise


def runctl(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m runctl_tui ARGS` in a subprocess (stdin closed) and capture its output.

    Args:
        args: The command line after `runctl`.
        cwd: Working directory; default this process's.
        env: Variables added to this process's environment.
        timeout: Seconds before the run is killed and the test fails.

    Returns:
        The finished process with text stdout and stderr.
    """
    return subprocess.run(
        [sys.executable, "-m", "runctl_tui", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class Cli:
    """Runs `runctl` in this process and keeps every byte it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.transcript: list[str] = []

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = self.capsys.readouterr()
        self.transcript += [captured.out, captured.err]
        return code, captured.out, captured.err


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
) -> Any:
    """Poll `predicate` until it returns something truthy, failing after `timeout` seconds.

    Args:
        predicate: The check.
        timeout: Seconds before the test fails.
        what: Named in the failure.
        interval: Seconds between checks.

    Returns:
        The predicate's first truthy value.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
