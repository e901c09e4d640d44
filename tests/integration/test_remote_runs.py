"""Remote runs over a real SSH server on 127.0.0.1: detached start, quoting, status, stop."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runctl_tui.core.errors import NotFoundError
from runctl_tui.core.models import RunStatus
from runctl_tui.core.remote_runs import (
    RemoteRunInfo,
    remote_run_status,
    start_remote_run,
    stop_remote_run,
)
from runctl_tui.core.ssh import SshSession
from tests.sshd_fixture import SshServer, start_asyncssh_server

ECHO_ARGS = """\
import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "run_id": os.environ.get("RUNCTL_RUN_ID"),
                  "cwd": os.getcwd(), "extra": os.environ.get("EXTRA")}))
"""

FAIL = "import sys\nprint('failing')\nsys.exit(3)\n"

GRACEFUL = """\
import pathlib, signal, sys, time
def stop(signum, frame):
    print(f"caught {signal.Signals(signum).name}, saving checkpoint", flush=True)
    pathlib.Path("saved.ckpt").write_text("state")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
try:
    print("training", flush=True)
    while True:
        time.sleep(0.05)
except KeyboardInterrupt:
    print("interrupted, saving checkpoint", flush=True)
    pathlib.Path("saved.ckpt").write_text("state")
"""

STUBBORN = """\
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring signals", flush=True)
while True:
    time.sleep(0.05)
"""

NASTY_ARGS = [
    "plain",
    "with spaces  inside",
    'it\'s "quoted"',
    "a; touch INJECTED; echo b",
    "$HOME `id` $(id)",
    "",
    "--lr=3e-4",
    "line\nbreak",
    "*",
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj dir"
    root.mkdir()
    for name, text in {
        "echo_args.py": ECHO_ARGS,
        "fail.py": FAIL,
        "graceful.py": GRACEFUL,
        "stubborn.py": STUBBORN,
    }.items():
        (root / name).write_text(text)
    return root


async def wait_final(
    session: SshSession, info: RemoteRunInfo, timeout: float = 30
) -> tuple[RunStatus, int | None]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, code = await remote_run_status(session, info)
        if status.is_final:
            return status, code
        await _pause()
    raise AssertionError(f"run {info} did not end within {timeout} s")


async def wait_for_text(path: Path, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        await _pause()
    raise AssertionError(f"{text!r} never appeared in {path}")


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.05)


async def test_arguments_arrive_intact_and_the_run_is_recorded(
    sshd_server: SshServer, project: Path
) -> None:
    async with await SshSession.connect(sshd_server.endpoint) as session:
        info = await start_remote_run(
            session,
            remote_dir=str(project),
            script="echo_args.py",
            args=NASTY_ARGS,
            env={"EXTRA": "x y;z"},
            run_id="r-quote-1",
        )
        assert await wait_final(session, info) == (RunStatus.SUCCEEDED, 0)
    run_dir = project / "runs" / "r-quote-1"
    assert info.log_path == str(run_dir / "train.log")
    assert info.exit_code_path == str(run_dir / "exit_code")
    assert Path(info.pid_path).read_text().strip() == str(info.pid)
    assert info.interpreter == sys.executable or "python" in info.interpreter
    seen = json.loads(Path(info.log_path).read_text())
    assert seen == {
        "argv": NASTY_ARGS,
        "run_id": "r-quote-1",
        "cwd": str(project),
        "extra": "x y;z",
    }
    assert not (project / "INJECTED").exists()
    assert (run_dir / "exit_code").read_text().strip() == "0"


async def test_failure_missing_script_and_reused_run_id(
    sshd_server: SshServer, project: Path
) -> None:
    async with await SshSession.connect(sshd_server.endpoint) as session:
        info = await start_remote_run(
            session, remote_dir=str(project), script="fail.py", run_id="r-fail"
        )
        assert await wait_final(session, info) == (RunStatus.FAILED, 3)
        assert Path(info.log_path).read_text() == "failing\n"
        with pytest.raises(NotFoundError, match="sync the project first"):
            await start_remote_run(
                session, remote_dir=str(project), script="absent.py", run_id="r-x"
            )
        with pytest.raises(NotFoundError, match="does not exist"):
            await start_remote_run(
                session, remote_dir=str(project / "nope"), script="fail.py", run_id="r-y"
            )
        with pytest.raises(Exception, match="already has a folder"):
            await start_remote_run(
                session, remote_dir=str(project), script="fail.py", run_id="r-fail"
            )


async def test_run_outlives_the_connection_and_stops_on_sigint(
    sshd_server: SshServer, project: Path
) -> None:
    async with await SshSession.connect(sshd_server.endpoint) as session:
        info = await start_remote_run(
            session,
            remote_dir=str(project),
            script="graceful.py",
            run_id="r-int",
            env={"HF_TOKEN": SECRET},
        )
    await wait_for_text(Path(info.log_path), "training")
    # The environment reaches the run through a private file, never a command line.
    env_file = Path(info.run_dir) / "env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert f"HF_TOKEN={SECRET}" in env_file.read_text()
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if _has(p, SECRET)]
    async with await SshSession.connect(sshd_server.endpoint) as session:
        assert await remote_run_status(session, info) == (RunStatus.RUNNING, None)
        status, code = await stop_remote_run(session, info, grace_seconds=10)
        assert (status, code) == (RunStatus.STOPPED, 0)
        # Asked again later, the run stays stopped (not "succeeded").
        assert await remote_run_status(session, info) == (RunStatus.STOPPED, 0)
    assert "interrupted, saving checkpoint" in Path(info.log_path).read_text()
    assert (project / "saved.ckpt").read_text() == "state"


async def test_stop_escalates_to_sigkill_and_a_killed_run_is_lost(
    sshd_server: SshServer, project: Path
) -> None:
    async with await SshSession.connect(sshd_server.endpoint) as session:
        info = await start_remote_run(
            session, remote_dir=str(project), script="stubborn.py", run_id="r-kill"
        )
        await wait_for_text(Path(info.log_path), "ignoring signals")
        started = time.monotonic()
        assert await stop_remote_run(session, info, grace_seconds=0.3) == (
            RunStatus.STOPPED,
            None,
        )
        assert time.monotonic() - started < 10
        assert not _group_alive(info.pid)

        other = await start_remote_run(
            session, remote_dir=str(project), script="stubborn.py", run_id="r-lost"
        )
        await wait_for_text(Path(other.log_path), "ignoring signals")
        os.killpg(other.pid, signal.SIGKILL)  # As an out-of-memory kill or a reboot would.
        assert await wait_final(session, other) == (RunStatus.LOST, None)
        # Stopping a run that already ended changes nothing.
        assert await stop_remote_run(session, other, grace_seconds=0.3) == (RunStatus.LOST, None)


SECRET = "hf_not-a-real-token-5a1e"


def _has(path: Path, text: str) -> bool:
    try:
        return text.encode() in path.read_bytes()
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


async def test_uv_run_is_used_when_uv_is_on_the_machine(
    sshd_server: SshServer, project: Path, tmp_path: Path
) -> None:
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        pytest.fail(f"uv is a dev dependency and should be at {uv}")
    env = {
        "PATH": f"{uv.parent}:/usr/local/bin:/usr/bin:/bin",
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_CONFIG": "1",
        "UV_PYTHON": sys.executable,
    }
    async with await SshSession.connect(sshd_server.endpoint) as session:
        info = await start_remote_run(
            session,
            remote_dir=str(project),
            script="echo_args.py",
            args=["a b", "c;d"],
            env=env,
            run_id="r-uv",
        )
        status = await wait_final(session, info, timeout=60)
        assert status == (RunStatus.SUCCEEDED, 0), Path(info.log_path).read_text()
    assert info.interpreter == f"{uv} run"
    last = Path(info.log_path).read_text().strip().splitlines()[-1]
    assert json.loads(last)["argv"] == ["a b", "c;d"]


@pytest.fixture(scope="module")
def fallback_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = start_asyncssh_server(tmp_path_factory.mktemp("fallback-sshd-runs"))
    yield server
    server.stop()


async def test_remote_runs_through_the_asyncssh_fallback_server(
    fallback_server: SshServer, project: Path
) -> None:
    async with await SshSession.connect(fallback_server.endpoint) as session:
        info = await start_remote_run(
            session,
            remote_dir=str(project),
            script="echo_args.py",
            args=NASTY_ARGS,
            run_id="r-fallback",
        )
        assert await wait_final(session, info) == (RunStatus.SUCCEEDED, 0)
        assert json.loads(Path(info.log_path).read_text())["argv"] == NASTY_ARGS
        stubborn = await start_remote_run(
            session, remote_dir=str(project), script="graceful.py", run_id="r-fb-stop"
        )
        await wait_for_text(Path(stubborn.log_path), "training")
        assert await stop_remote_run(session, stubborn, grace_seconds=5) == (
            RunStatus.STOPPED,
            0,
        )
