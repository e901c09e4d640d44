"""`runctl local`, `runctl runs`, `runctl stop` and `runctl checkpoint resume` as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runctl_tui.core.local_runs import demo_script_path, run_is_alive
from runctl_tui.core.models import RunStatus
from runctl_tui.core.runs import RunRegistry
from tests.helpers import runctl

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
DEMO = str(demo_script_path())


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.02)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", SYSTEM_PATH)
    return root


def runs_json() -> list[dict[str, Any]]:
    result = runctl("runs", "--json", "--all")
    assert result.returncode == 0, result.stderr
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("runctl: error: ")
    return lines[0]


def test_foreground_streams_output_and_returns_the_exit_code(project: Path) -> None:
    (project / "train.py").write_text(
        "import sys\nprint('epoch 1 loss=0.5', flush=True)\nprint('oops', file=sys.stderr)\n"
        "sys.exit(5)\n"
    )
    result = runctl("local", "train.py")
    assert result.returncode == 5
    assert "epoch 1 loss=0.5" in result.stdout and "oops" in result.stdout
    assert "exited with code 5" in one_line_error(result)
    (run,) = runs_json()
    assert (run["status"], run["exit_code"]) == ("failed", 5)


def test_script_args_pass_through_verbatim(project: Path) -> None:
    (project / "echo.py").write_text(
        "import json, sys\nopen('argv.json', 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    args = [
        "--epochs",
        "50",
        "--batch-size",
        "128",
        "with space",
        "quote\"s and 's",
        "a; rm -rf /",
        "--background",
        "--config",
        "x.toml",
        "-v",
        "--",
        "--name",
        "$(whoami)",
    ]
    result = runctl("local", "echo.py", *args)
    assert result.returncode == 0, result.stderr
    assert json.loads((project / "argv.json").read_text()) == args
    (run,) = runs_json()
    assert run["args"] == args


def test_background_prints_the_id_and_runs_lists_it(project: Path) -> None:
    result = runctl(
        "local", "--background", "--name", "my exp", DEMO, "--sleep", "0", "--epochs", "1"
    )
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    assert run_id.endswith("-my-exp")
    assert f"runctl stop {run_id}" in result.stderr
    registry = RunRegistry()
    wait_until(lambda: not run_is_alive(registry.get(run_id)))
    runs = runs_json()
    assert [r["id"] for r in runs] == [run_id]
    record = runs[0]
    for key in ("id", "status", "pid", "backend", "machine", "script", "started", "log_path"):
        assert key in record
    assert record["status"] == "succeeded"
    assert record["backend"] == "local" and record["machine"] == "local"
    assert record["checkpoint_dir"] == str(project / "checkpoints")
    assert Path(record["log_path"]) == project / "runs" / run_id / "train.log"
    table = runctl("runs")
    assert run_id in table.stdout and "succeeded" in table.stdout


@pytest.mark.parametrize(
    ("how", "launcher_code"), [("SIGKILL", -9), ("SIGHUP", -1), ("SIGINT", 130)]
)
def test_run_survives_the_death_of_its_launcher(
    project: Path, how: str, launcher_code: int
) -> None:
    """Killing runctl, a hang-up, or Ctrl-C in the foreground never stops the training."""
    (project / "train.py").write_text(
        "import os, time\n"
        "print('waiting', flush=True)\n"
        "while not os.path.exists('release'):\n"
        "    time.sleep(0.02)\n"
        "raise SystemExit(7)\n"
    )
    launcher = subprocess.Popen(
        [sys.executable, "-m", "runctl_tui", "local", "train.py"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    registry = RunRegistry()
    try:
        wait_until(lambda: len(registry.list()) == 1)
        (run,) = registry.list()
        wait_until(lambda: "waiting" in Path(run.log_path).read_text())
        # SIGHUP to the launcher's whole group is what a closed terminal or SSH session sends.
        os.killpg(launcher.pid, getattr(signal, how))
        launcher.wait(timeout=10)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode == launcher_code
    if how == "SIGINT":
        assert launcher.stderr is not None
        assert f"detached from run {run.id}" in launcher.stderr.read().decode()
    assert run_is_alive(run)
    assert registry.get(run.id).status is RunStatus.RUNNING
    (project / "release").write_text("")
    wait_until(lambda: not run_is_alive(run))
    (record,) = runs_json()
    assert (record["status"], record["exit_code"]) == ("failed", 7)


def test_stop_saves_a_checkpoint_and_records_stopped(project: Path) -> None:
    started = runctl("local", "-b", DEMO, "--sleep", "0.1", "--checkpoint-every", "1000")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    log = project / "runs" / run_id / "train.log"
    wait_until(lambda: "step 2 " in log.read_text())
    stopped = runctl("stop", run_id, "--grace", "10")
    assert stopped.returncode == 0, stopped.stderr
    assert f"Stopped run {run_id}" in stopped.stdout
    assert "ckpt-step" in stopped.stdout
    (record,) = runs_json()
    assert (record["status"], record["exit_code"]) == ("stopped", 130)
    (saved,) = (project / "checkpoints").glob("ckpt-step*.json")
    assert json.loads(saved.read_text())["reason"] == "interrupted by SIGINT"
    again = runctl("stop", run_id)
    assert "already ended" in one_line_error(again)


def test_two_runs_on_one_checkpoint_dir_are_refused(project: Path) -> None:
    first = runctl("local", "-b", DEMO, "--sleep", "0.2")
    assert first.returncode == 0, first.stderr
    run_id = first.stdout.strip()
    try:
        second = runctl("local", "-b", DEMO, "--sleep", "0")
        error = one_line_error(second)
        assert f"in use by run {run_id} (pid " in error
    finally:
        assert runctl("stop", run_id, "--grace", "10").returncode == 0


def test_resume_latest_and_checkpoint_resume(project: Path) -> None:
    args = ["--sleep", "0", "--epochs", "2", "--steps-per-epoch", "4", "--checkpoint-every", "2"]
    assert runctl("local", DEMO, *args).returncode == 0
    ckpts = project / "checkpoints"
    newest = ckpts / "ckpt-step000008.json"
    resumed = runctl("local", "--resume-latest", DEMO, *args, "--epochs", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {newest} at step 8 (epoch 2)" in resumed.stdout
    assert "epoch 3/3 step 9 " in resumed.stdout
    chosen = ckpts / "ckpt-step000002.json"
    from_chosen = runctl("checkpoint", "resume", str(chosen), DEMO, *args)
    assert from_chosen.returncode == 0, from_chosen.stderr
    assert f"resumed from {chosen} at step 2 (epoch 1)" in from_chosen.stdout
    assert "epoch 1/2 step 3 " in from_chosen.stdout
    assert "epoch 1/2 step 2 " not in from_chosen.stdout


def test_cmd_resume_with_a_parser_built_by_add_launch_options(project: Path) -> None:
    import argparse

    from runctl_tui.cli.common import Context
    from runctl_tui.cli.local_cmd import add_launch_options, cmd_resume

    args = ["--sleep", "0", "--epochs", "1", "--steps-per-epoch", "4", "--checkpoint-every", "2"]
    assert runctl("local", DEMO, *args).returncode == 0
    parser = argparse.ArgumentParser(prog="runctl checkpoint resume")
    add_launch_options(parser)
    ckpt = project / "checkpoints" / "ckpt-step000002.json"
    parsed = parser.parse_args(["-b", str(ckpt), DEMO, *args])
    assert parsed.checkpoint == str(ckpt)
    assert parsed.script_args == args
    assert cmd_resume(parsed, Context()) == 0
    registry = RunRegistry()
    run = registry.list()[0]
    wait_until(lambda: not run_is_alive(run))
    assert f"resumed from {ckpt} at step 2" in Path(run.log_path).read_text()


def test_bad_input_gets_one_line_and_a_nonzero_exit(project: Path) -> None:
    assert "not found" in one_line_error(runctl("local", "missing.py"))
    (project / "data.bin").write_bytes(b"\x00\x01")
    assert "not executable" in one_line_error(runctl("local", "data.bin"))
    (project / "crash.py").write_text("import no_such_module_here\n")
    error = one_line_error(runctl("local", "--background", "crash.py"))
    assert "exited at once with code 1" in error
    assert "No module named 'no_such_module_here'" in error
    (project / "ok.py").write_text("print('hi')\n")
    (project / "file").write_text("")
    error = one_line_error(runctl("local", "--checkpoint-dir", "file/sub", "ok.py"))
    assert "cannot use" in error and "checkpoint directory" in error
    assert "no run with id 'nope'" in one_line_error(runctl("stop", "nope"))
    assert "no checkpoint found" in one_line_error(runctl("local", "--resume-latest", "ok.py"))
    assert "not found" in one_line_error(runctl("checkpoint", "resume", "gone.json", "ok.py"))
