"""Local runs with real processes: launch, interpreter choice, locks, reconcile, stop, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runctl_tui.core.backends.local import LocalBackend, parse_nvidia_smi
from runctl_tui.core.config import Config
from runctl_tui.core.errors import NotFoundError, RunctlError
from runctl_tui.core.local_runs import (
    LOCK_NAME,
    demo_script_path,
    latest_checkpoint,
    launch_local_run,
    pid_alive,
    process_start_time,
    read_exit_status,
    read_lock,
    reconcile,
    resume_args,
    resume_local_run,
    run_is_alive,
    stop_run,
    strip_resume_args,
    wait_for_exit,
)
from runctl_tui.core.models import MachineState, Provider, Run, RunStatus
from runctl_tui.core.runs import RunRegistry

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
DEMO = demo_script_path()


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.02)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder as cwd, and a PATH without uv (tests that want uv add it)."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", SYSTEM_PATH)
    return root


@pytest.fixture
def registry() -> RunRegistry:
    return RunRegistry()


def finish(run: Run, timeout: float = 30.0) -> int:
    status = wait_for_exit(run, timeout)
    assert status is not None, Path(run.log_path).read_text()
    return status.exit_code


ECHO_ARGS = """
import json, os, sys
with open(os.path.join(os.environ["RUNCTL_CHECKPOINT_DIR"], "argv.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "executable": sys.executable,
               "env": {k: v for k, v in os.environ.items() if k.startswith("RUNCTL_")},
               "cwd": os.getcwd()}, f)
"""


def test_args_env_and_cwd_reach_the_script_verbatim(project: Path, registry: RunRegistry) -> None:
    script = write(project / "echo_args.py", ECHO_ARGS)
    args = [
        "--epochs",
        "50",
        "two words",
        'it\'s "quoted"',
        "x; touch pwned",
        "$HOME",
        "*",
        "--",
        "-v",
        "--config",
        "",
    ]
    run = launch_local_run(Config(), "echo_args.py", args, registry=registry)
    assert finish(run) == 0
    seen = json.loads((project / "checkpoints" / "argv.json").read_text())
    assert seen["argv"] == args
    assert not (project / "pwned").exists()
    assert seen["cwd"] == str(project)
    assert seen["env"] == {
        "RUNCTL_RUN_ID": run.id,
        "RUNCTL_CHECKPOINT_DIR": str(project / "checkpoints"),
        "RUNCTL_LOG_PATH": str(project / "runs" / run.id / "train.log"),
    }
    assert run.script == "echo_args.py"
    assert script.exists()


def test_python_is_used_when_uv_is_absent(project: Path, registry: RunRegistry) -> None:
    write(project / "echo_args.py", ECHO_ARGS)
    run = launch_local_run(Config(), "echo_args.py", [], registry=registry)
    assert finish(run) == 0
    assert run.interpreter == sys.executable
    seen = json.loads((project / "checkpoints" / "argv.json").read_text())
    assert os.path.realpath(seen["executable"]) == os.path.realpath(sys.executable)
    assert registry.get(run.id).interpreter == sys.executable


@pytest.fixture
def uv_shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A fake `uv` on PATH that records its argv, then runs the script with this Python."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    argv_log = tmp_path / "uv-argv.txt"
    shim = write(
        bin_dir / "uv",
        f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{argv_log}'\nshift\nexec '{sys.executable}' \"$@\"\n",
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{SYSTEM_PATH}")
    return shim, argv_log


def test_uv_is_used_when_on_path(
    project: Path, registry: RunRegistry, uv_shim: tuple[Path, Path]
) -> None:
    shim, argv_log = uv_shim
    write(project / "echo_args.py", ECHO_ARGS)
    run = launch_local_run(Config(), "echo_args.py", ["a b", "c;d"], registry=registry)
    assert finish(run) == 0
    assert run.interpreter == f"{shim} run"
    assert argv_log.read_text().splitlines() == ["run", str(project / "echo_args.py"), "a b", "c;d"]
    seen = json.loads((project / "checkpoints" / "argv.json").read_text())
    assert seen["argv"] == ["a b", "c;d"]


def test_use_uv_false_ignores_uv_and_warns_about_pep723(
    project: Path, registry: RunRegistry, uv_shim: tuple[Path, Path]
) -> None:
    _, argv_log = uv_shim
    write(
        project / "needs.py",
        "# /// script\n# dependencies = [\n#   'numpy>=1.26',\n#   'rich',\n# ]\n# ///\nprint('ok')\n",
    )
    config = Config()
    config.local.use_uv = False
    warnings: list[str] = []
    run = launch_local_run(config, "needs.py", [], registry=registry, on_warning=warnings.append)
    assert finish(run) == 0
    assert not argv_log.exists()
    assert run.interpreter == sys.executable
    assert len(warnings) == 1
    assert "numpy>=1.26, rich" in warnings[0]
    assert "use_uv is false" in warnings[0]


def test_pep723_without_uv_warns_naming_dependencies(project: Path, registry: RunRegistry) -> None:
    write(
        project / "needs.py",
        "# /// script\n# requires-python = '>=3.10'\n# dependencies = ['torch==2.4.0']\n# ///\n",
    )
    warnings: list[str] = []
    run = launch_local_run(Config(), "needs.py", [], registry=registry, on_warning=warnings.append)
    assert finish(run) == 0
    assert warnings and "torch==2.4.0" in warnings[0] and "uv is not on PATH" in warnings[0]
    assert "torch==2.4.0" in registry.get(run.id).note
    # The bundled demo declares no dependencies, so it never warns.
    quiet: list[str] = []
    demo = launch_local_run(
        Config(),
        str(DEMO),
        ["--sleep", "0", "--epochs", "1", "--steps-per-epoch", "2"],
        checkpoint_dir="demo-ckpts",
        registry=registry,
        on_warning=quiet.append,
    )
    assert finish(demo) == 0
    assert quiet == []


REAL_UV = Path(sys.executable).parent / "uv"


@pytest.mark.skipif(not REAL_UV.exists(), reason="uv is not installed in this venv")
def test_real_uv_runs_the_demo(
    project: Path, registry: RunRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{REAL_UV.parent}:{SYSTEM_PATH}")
    run = launch_local_run(
        Config(),
        str(DEMO),
        ["--sleep", "0", "--epochs", "1", "--steps-per-epoch", "3"],
        registry=registry,
    )
    assert finish(run, 60) == 0, Path(run.log_path).read_text()
    assert run.interpreter == f"{REAL_UV} run"
    assert "training finished after 3 steps" in Path(run.log_path).read_text()


def test_reconcile_records_the_real_exit_code(project: Path, registry: RunRegistry) -> None:
    write(project / "fails.py", "import sys; print('bad things'); sys.exit(3)\n")
    write(project / "works.py", "print('fine')\n")
    failing = launch_local_run(Config(), "fails.py", [], checkpoint_dir="a", registry=registry)
    working = launch_local_run(Config(), "works.py", [], checkpoint_dir="b", registry=registry)
    finish(failing)
    finish(working)
    changed = {run.id: run for run in reconcile(registry)}
    assert changed[failing.id].status is RunStatus.FAILED
    assert changed[failing.id].exit_code == 3
    assert changed[working.id].status is RunStatus.SUCCEEDED
    assert changed[working.id].exit_code == 0
    assert changed[working.id].ended is not None
    assert reconcile(registry) == []
    assert read_lock(project / "a") is None
    assert "bad things" in Path(failing.log_path).read_text()


def test_a_live_process_with_another_start_time_is_not_the_run(
    project: Path, registry: RunRegistry
) -> None:
    """PID reuse: the recorded pid is alive, but it is another process now."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "fake-run-id"],
        start_new_session=True,
    )
    try:
        wait_until(lambda: process_start_time(proc.pid) is not None)
        real_start = process_start_time(proc.pid)
        assert real_start is not None
        run_dir = project / "runs" / "fake-run-id"
        run_dir.mkdir(parents=True)
        base = Run(
            id="fake-run-id",
            backend=Provider.LOCAL,
            machine="local",
            script="train.py",
            args=(),
            cwd=str(project),
            status=RunStatus.RUNNING,
            started=time.time(),
            log_path=str(run_dir / "train.log"),
            checkpoint_dir=str(project / "checkpoints"),
            pid=proc.pid,
            pid_start_time=real_start,
        )
        registry.add(base)
        # Same pid, same start time, the run id on its command line: still the run.
        assert run_is_alive(base)
        assert reconcile(registry) == []
        # Same pid, different start time: the kernel gave the pid to someone else.
        reused = Run(**{**base.__dict__, "id": "reused", "pid_start_time": real_start - 100})
        registry.add(reused)
        assert pid_alive(proc.pid, real_start)
        assert not pid_alive(proc.pid, real_start - 100)
        assert not run_is_alive(reused)
        changed = reconcile(registry)
        assert [(r.id, r.status) for r in changed] == [("reused", RunStatus.LOST)]
        assert "without recording an exit status" in changed[0].note
        assert registry.get("fake-run-id").status is RunStatus.RUNNING
    finally:
        proc.kill()
        proc.wait()
    changed = reconcile(registry)
    assert [(r.id, r.status) for r in changed] == [("fake-run-id", RunStatus.LOST)]


def test_process_start_time_is_when_the_process_started() -> None:
    before = time.time()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        start = process_start_time(proc.pid)
        assert start is not None
        assert before - 1.5 <= start <= time.time() + 1.5
        assert process_start_time(os.getpid()) != start
    finally:
        proc.kill()
        proc.wait()
    assert process_start_time(proc.pid) is None


def test_stopping_a_run_that_already_ended_keeps_its_real_status(
    project: Path, registry: RunRegistry
) -> None:
    write(project / "works.py", "print('fine')\n")
    run = launch_local_run(Config(), "works.py", [], registry=registry)
    assert finish(run) == 0
    with pytest.raises(RunctlError, match="already ended \\(succeeded\\)"):
        stop_run(Config(), run.id, registry=registry)
    assert registry.get(run.id).status is RunStatus.SUCCEEDED


def test_zombies_count_as_ended() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_until(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] == "Z")
    assert process_start_time(proc.pid) is None
    assert not pid_alive(proc.pid, None)
    proc.wait()


def long_demo(registry: RunRegistry, *extra: str, **kwargs: object) -> Run:
    return launch_local_run(
        Config(),
        str(DEMO),
        ["--sleep", "0.1", "--checkpoint-every", "1000", *extra],
        registry=registry,
        **kwargs,  # type: ignore[arg-type]
    )


def test_second_run_on_one_checkpoint_dir_is_refused(project: Path, registry: RunRegistry) -> None:
    first = long_demo(registry)
    try:
        lock = read_lock(project / "checkpoints")
        assert lock is not None
        assert lock.run_id == first.id
        with pytest.raises(RunctlError) as caught:
            long_demo(registry)
        message = str(caught.value)
        assert first.id in message
        assert f"pid {first.pid}" in message
        assert "started" in message
        assert f"runctl stop {first.id}" in message
        # The same directory named differently is the same directory.
        with pytest.raises(RunctlError, match=first.id):
            long_demo(registry, checkpoint_dir=str(project / "checkpoints" / ".." / "checkpoints"))
        assert len(registry.list()) == 1
        # Another directory is fine.
        other = long_demo(registry, checkpoint_dir="other")
        stop_run(Config(), other.id, grace=5, registry=registry)
    finally:
        stop_run(Config(), first.id, grace=5, registry=registry)
    assert read_lock(project / "checkpoints") is None


def test_stale_lock_is_taken_over_with_a_notice(project: Path, registry: RunRegistry) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ckpt = project / "checkpoints"
    ckpt.mkdir()
    (ckpt / LOCK_NAME).write_text(
        json.dumps({"run_id": "old-run", "pid": dead.pid, "pid_start_time": 1.0, "started": 1.0})
    )
    write(project / "works.py", "print('fine')\n")
    notices: list[str] = []
    run = launch_local_run(Config(), "works.py", [], registry=registry, on_warning=notices.append)
    assert len(notices) == 1
    assert "stale lock" in notices[0] and "old-run" in notices[0]
    assert finish(run) == 0
    assert read_lock(ckpt) is None


def test_stop_saves_a_checkpoint_and_records_stopped(project: Path, registry: RunRegistry) -> None:
    run = long_demo(registry)
    log = Path(run.log_path)
    wait_until(lambda: "step 3 " in log.read_text())
    stopped = stop_run(Config(), run.id, grace=10, registry=registry)
    assert stopped.status is RunStatus.STOPPED
    assert stopped.exit_code == 130
    assert "SIGINT" in stopped.note
    saved = sorted((project / "checkpoints").glob("ckpt-step*.json"))
    assert len(saved) == 1
    state = json.loads(saved[0].read_text())
    assert state["runctl_demo_checkpoint"] == 1
    assert state["reason"] == "interrupted by SIGINT"
    assert state["step"] >= 3
    assert not run_is_alive(run)
    assert read_lock(project / "checkpoints") is None
    assert registry.get(run.id) == stopped
    with pytest.raises(RunctlError, match="already ended"):
        stop_run(Config(), run.id, registry=registry)


def test_stop_escalates_when_the_script_ignores_signals(
    project: Path, registry: RunRegistry
) -> None:
    write(
        project / "stubborn.py",
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n",
    )
    run = launch_local_run(Config(), "stubborn.py", [], registry=registry)
    wait_until(lambda: "ready" in Path(run.log_path).read_text())
    started = time.monotonic()
    stopped = stop_run(Config(), run.id, grace=0.3, registry=registry)
    assert time.monotonic() - started < 5
    assert stopped.status is RunStatus.STOPPED
    assert "SIGKILL" in stopped.note
    assert not run_is_alive(run)


def test_resume_starts_from_the_chosen_checkpoint(project: Path, registry: RunRegistry) -> None:
    args = ["--sleep", "0", "--epochs", "2", "--steps-per-epoch", "5", "--checkpoint-every", "5"]
    first = launch_local_run(Config(), str(DEMO), args, registry=registry)
    assert finish(first) == 0
    ckpts = sorted((project / "checkpoints").glob("ckpt-step*.json"))
    assert [p.name for p in ckpts] == ["ckpt-step000005.json", "ckpt-step000010.json"]
    assert latest_checkpoint(project / "checkpoints") == ckpts[-1]
    chosen = ckpts[0]
    resumed = launch_local_run(
        Config(), str(DEMO), args, resume_from=str(chosen.relative_to(project)), registry=registry
    )
    assert finish(resumed) == 0
    log = Path(resumed.log_path).read_text()
    assert f"resumed from {chosen} at step 5 (epoch 1)" in log
    step_lines = [line for line in log.splitlines() if " loss=" in line]
    assert step_lines[0].startswith("epoch 2/2 step 6 ")
    assert len(step_lines) == 5
    assert resumed.args[-2:] == ("--resume", str(chosen))
    assert f"resumed from {chosen}" in resumed.note


def test_demo_trains_writes_metrics_and_best_checkpoint(
    project: Path, registry: RunRegistry
) -> None:
    run = launch_local_run(
        Config(),
        str(DEMO),
        ["--sleep", "0", "--epochs", "3", "--steps-per-epoch", "20", "--checkpoint-every", "10"],
        registry=registry,
    )
    assert finish(run) == 0
    points = [
        json.loads(line)
        for line in (Path(run.log_path).parent / "metrics.jsonl").read_text().splitlines()
    ]
    losses = [p["loss"] for p in points if "loss" in p]
    val = [p["val_loss"] for p in points if "val_loss" in p]
    assert len(losses) == 60 and len(val) == 3
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 * 0.8
    ckpt_dir = project / "checkpoints"
    best = ckpt_dir / "best.json"
    assert best.is_symlink()
    states = {p.name: json.loads(p.read_text()) for p in ckpt_dir.glob("ckpt-step*.json")}
    lowest = min(states, key=lambda name: states[name]["val_loss"])
    assert os.readlink(best) == lowest
    assert latest_checkpoint(ckpt_dir) == ckpt_dir / "ckpt-step000060.json"


def test_demo_by_default_lasts_a_few_minutes() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.parse_args([])
    assert 60 <= args.epochs * args.steps_per_epoch * args.sleep <= 600


def test_demo_launches_from_any_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: RunRegistry
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("PATH", SYSTEM_PATH)
    run = launch_local_run(
        Config(), str(DEMO), ["--sleep", "0", "--epochs", "1", "--steps-per-epoch", "2"]
    )
    assert finish(run) == 0
    assert run.cwd == str(elsewhere)
    assert (elsewhere / "checkpoints" / "ckpt-step000002.json").exists()
    assert registry.get(run.id).id == run.id


def test_bad_input_gets_sentences(project: Path, registry: RunRegistry) -> None:
    config = Config()
    with pytest.raises(NotFoundError, match="not found"):
        launch_local_run(config, "missing.py", [], registry=registry)
    (project / "folder").mkdir()
    with pytest.raises(RunctlError, match="is a directory"):
        launch_local_run(config, "folder", [], registry=registry)
    write(project / "data.csv", "a,b\n")
    with pytest.raises(RunctlError, match="not executable; make it executable"):
        launch_local_run(config, "data.csv", [], registry=registry)
    write(project / "train.py", "print(1)\n")
    write(project / "afile", "x")
    with pytest.raises(RunctlError, match=r"cannot use .* as the checkpoint directory"):
        launch_local_run(config, "train.py", [], checkpoint_dir="afile/ckpts", registry=registry)
    with pytest.raises(NotFoundError, match=r"checkpoint nope\.pt not found"):
        launch_local_run(config, "train.py", [], resume_from="nope.pt", registry=registry)
    with pytest.raises(NotFoundError, match="no run with id"):
        stop_run(config, "no-such-run", registry=registry)
    assert registry.list() == []
    assert not (project / "runs").exists() or list((project / "runs").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_checkpoint_dir_is_refused(project: Path, registry: RunRegistry) -> None:
    locked = project / "locked"
    locked.mkdir(mode=0o500)
    write(project / "train.py", "print(1)\n")
    with pytest.raises(RunctlError, match=r"cannot use .*locked as the checkpoint directory"):
        launch_local_run(Config(), "train.py", [], checkpoint_dir="locked", registry=registry)


def test_executable_scripts_run_directly(project: Path, registry: RunRegistry) -> None:
    script = write(project / "train.sh", '#!/bin/sh\necho "shell got: $1"\nexit 4\n')
    script.chmod(0o755)
    run = launch_local_run(Config(), "./train.sh", ["a b"], registry=registry)
    assert finish(run) == 4
    assert run.interpreter == "direct"
    assert "shell got: a b" in Path(run.log_path).read_text()
    status = read_exit_status(run)
    assert status is not None and status.signal is None


def test_resume_flag_is_configurable(tmp_path: Path) -> None:
    config = Config()
    assert resume_args(config, tmp_path / "c.pt") == ["--resume", str(tmp_path / "c.pt")]
    config.local.resume_flag = "--ckpt_path={path} --resume-mode full"
    assert resume_args(config, Path("/x/y z.pt")) == [
        "--ckpt_path=/x/y z.pt",
        "--resume-mode",
        "full",
    ]


def test_latest_checkpoint_ignores_pointers_and_other_files(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "missing") is None
    (tmp_path / "notes.txt").write_text("x")
    assert latest_checkpoint(tmp_path) is None
    old = tmp_path / "model-1.pt"
    new = tmp_path / "checkpoint-500"
    old.write_bytes(b"1")
    new.mkdir()
    os.utime(old, (1000, 1000))
    os.utime(new, (2000, 2000))
    (tmp_path / "best.pt").symlink_to(old.name)
    (tmp_path / LOCK_NAME).write_text("{}")
    assert latest_checkpoint(tmp_path) == new


async def test_local_backend_lists_this_computer_and_refuses_lifecycle_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", SYSTEM_PATH)
    backend = LocalBackend(Config())
    machines = await backend.list_machines()
    assert len(machines) == 1
    machine = machines[0]
    assert (machine.provider, machine.id, machine.state) == (
        Provider.LOCAL,
        "local",
        MachineState.RUNNING,
    )
    assert machine.price_per_hour is None
    assert machine.cost_so_far() is None
    assert await backend.offers() == []
    for call in (backend.stop("local"), backend.start("local"), backend.terminate("local")):
        with pytest.raises(RunctlError):
            await call
    from runctl_tui.core.models import CreateSpec

    with pytest.raises(RunctlError, match="cannot create"):
        await backend.create(CreateSpec(provider=Provider.LOCAL, machine_type="x"))
    await backend.aclose()


def test_nvidia_smi_parsing() -> None:
    names, gpus = parse_nvidia_smi(
        "0, NVIDIA GeForce RTX 4090, 87, 12000, 24564\n1, NVIDIA GeForce RTX 4090, [N/A], 0, 24564\n"
    )
    assert names == ["NVIDIA GeForce RTX 4090"] * 2
    assert gpus[0].utilisation_percent == 87.0
    assert gpus[0].memory_percent == pytest.approx(48.85, abs=0.01)
    assert gpus[1].utilisation_percent is None


def test_wrapper_is_in_its_own_session(project: Path, registry: RunRegistry) -> None:
    write(project / "sleepy.py", "import time; print('up', flush=True); time.sleep(30)\n")
    run = launch_local_run(Config(), "sleepy.py", [], registry=registry)
    try:
        assert run.pid is not None
        assert os.getsid(run.pid) == run.pid != os.getsid(0)
        assert os.getpgid(run.pid) == run.pid
    finally:
        os.killpg(run.pid or 0, signal.SIGKILL)
        wait_until(lambda: not run_is_alive(run))
    changed = reconcile(registry)
    assert [(r.id, r.status) for r in changed] == [(run.id, RunStatus.LOST)]


def test_resume_local_run_reuses_the_run_without_stacking_resume_flags(
    project: Path, registry: RunRegistry
) -> None:
    args = ["--sleep", "0", "--epochs", "1", "--steps-per-epoch", "6", "--checkpoint-every", "2"]
    first = launch_local_run(Config(), str(DEMO), args, registry=registry)
    assert finish(first) == 0
    ckpts = project / "checkpoints"
    second = resume_local_run(Config(), first, str(ckpts / "ckpt-step000004.json"))
    assert finish(second) == 0
    assert second.args == (*args, "--resume", str(ckpts / "ckpt-step000004.json"))
    third = resume_local_run(Config(), second, str(ckpts / "ckpt-step000002.json"))
    assert finish(third) == 0
    assert third.args == (*args, "--resume", str(ckpts / "ckpt-step000002.json"))
    assert (third.cwd, third.checkpoint_dir) == (first.cwd, first.checkpoint_dir)
    assert "resumed from" in Path(third.log_path).read_text()


def test_strip_resume_args_follows_the_configured_flag() -> None:
    config = Config()
    assert strip_resume_args(config, ["--lr", "1", "--resume", "/a/b.pt"]) == ["--lr", "1"]
    assert strip_resume_args(config, ["--lr", "1"]) == ["--lr", "1"]
    assert strip_resume_args(config, ["--resume"]) == ["--resume"]
    config.local.resume_flag = "--ckpt_path={path}"
    assert strip_resume_args(config, ["-x", "--ckpt_path=/c.ckpt"]) == ["-x"]
    assert strip_resume_args(config, ["-x", "--other=/c.ckpt"]) == ["-x", "--other=/c.ckpt"]
