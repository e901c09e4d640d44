"""End to end: the real `runctl-tui` in a real terminal (tmux), watching a real local run.

The screen is read back with `tmux capture-pane -p`, so these tests see what a user sees.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runctl_tui.core.config import Config
from runctl_tui.core.local_runs import launch_local_run, run_is_alive, stop_run
from runctl_tui.core.models import Provider, RunStatus
from runctl_tui.core.runs import RunRegistry
from tests.helpers import stop_if_running

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

DEMO = Path(__file__).resolve().parents[2] / "runctl_tui" / "examples" / "train_demo.py"
TUI = Path(sys.executable).parent / "runctl-tui"


class Terminal:
    """A tmux session on a private server, 100x30, running one command."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def start(self, command: str, cwd: Path, width: int = 100, height: int = 30) -> None:
        keep = ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME")
        env = " ".join(f"{k}={os.environ[k]}" for k in keep if k in os.environ)
        script = (
            f"cd {cwd} && env -u NO_COLOR {env} TERM=xterm-256color "
            "RUNCTL_MONITOR_POLL_SECONDS=0.5 RUNCTL_LOCAL_USE_UV=0 "
            f"{command}; echo DASHBOARD-EXITED-$?; sleep 60"
        )
        self.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), script)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def wait(self, condition: Callable[[str], bool], what: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if condition(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; screen:\n{text}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(f"runctl-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        yield term
    finally:
        term.close()


def test_dashboard_watches_a_real_run_and_quits_leaving_it_running(
    terminal: Terminal, tmp_path: Path
) -> None:
    config = Config()
    config.local.use_uv = False
    run = launch_local_run(
        config,
        str(DEMO),
        ["--epochs", "1", "--steps-per-epoch", "600", "--sleep", "0.1"],
        cwd=tmp_path,
    )
    try:
        terminal.start(str(TUI), tmp_path)
        screen = terminal.wait(
            lambda s: "▶ running" in s and "loss=" in s, "the run's row and its log"
        )
        assert "Machines" in screen
        assert "local ✓" in screen, "the header says the local backend is fresh"
        assert "q Quit (runs keep going)" in screen
        first_step = terminal.wait(lambda s: "step " in s, "a step in the log")
        terminal.wait(lambda s: s != first_step and "loss=" in s, "the log moving on")

        terminal.keys("?")
        terminal.wait(lambda s: "terminate the selected machine" in s, "help")
        terminal.keys("Escape")
        terminal.wait(lambda s: "terminate the selected machine" not in s, "help closed")

        terminal.keys("/")
        terminal.wait(lambda s: "filter machines" in s, "the filter field")
        terminal.keys("-l", "zzz")
        terminal.wait(lambda s: "▶ running" not in s, "the filter hiding the row")
        # A lone Escape is told from Alt+key by timing, so let the terminal see it alone.
        time.sleep(0.3)
        terminal.keys("Escape")
        terminal.wait(lambda s: "▶ running" in s, "the row back after clearing the filter")
        time.sleep(0.3)

        terminal.keys("q")
        terminal.wait(lambda s: "DASHBOARD-EXITED-0" in s, "the dashboard exiting with 0")
        assert run_is_alive(run), "quitting the dashboard must not stop the run"
        assert RunRegistry().get(run.id).status is RunStatus.RUNNING
    finally:
        stop_run(config, run.id, grace=2)


def test_demo_starts_the_example_and_readonly_refuses(terminal: Terminal, tmp_path: Path) -> None:
    terminal.start(f"{TUI} --demo --readonly", tmp_path)
    try:
        terminal.wait(lambda s: "▶ running" in s and "epoch" in s, "the demo run and its log")
        screen = terminal.wait(lambda s: "READONLY" in s, "the readonly badge")
        assert "vm" in screen or "local" in screen
        terminal.keys("x")
        terminal.wait(lambda s: "readonly" in s.lower() and "Not terminating" in s, "refusal")
        terminal.keys("q")
        terminal.wait(lambda s: "DASHBOARD-EXITED-0" in s, "exit")
    finally:
        config = Config()
        for run in RunRegistry().list(Provider.LOCAL):
            stop_if_running(config, run.id, grace=2)
