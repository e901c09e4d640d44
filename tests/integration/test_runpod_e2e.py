"""RunPod end to end: the loopback RunPod API server for the pods, Debian's sshd (the sshd
fixture) standing in for each pod's SSH, a temporary directory as the pod's disk.

The story, from the CLI and again from the core API: create -> wait (each state shown) ->
train with awkward arguments (spaces, quotes, `$HOME`, `;`) -> follow the log -> list
checkpoints in one SSH listing -> download one with progress -> stop -> start -> terminate;
and the API key appears nowhere in what runctl printed or logged.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runctl_tui.core import paths
from runctl_tui.core.backends.runpod import RunPodBackend
from runctl_tui.core.config import load_config
from runctl_tui.core.logsource import LogChunk
from runctl_tui.core.models import CreateSpec, MachineState, Provider, RunStatus
from runctl_tui.core.runpod_training import (
    download_from_pod,
    follow_run,
    list_pod_checkpoints,
    start_training,
)
from runctl_tui.core.runs import RunRegistry
from runctl_tui.testing.runpod_server import RunPodTestServer
from tests.helpers import Cli
from tests.runpod_fixture import API_KEY

pytestmark = pytest.mark.sshd

TRAIN = r"""
import os, sys, time
from pathlib import Path

ckpt = Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
ckpt.mkdir(parents=True, exist_ok=True)
print("argv:", repr(sys.argv[1:]), flush=True)
args = sys.argv[1:]
pause = float(args[args.index("--pause") + 1]) if "--pause" in args else 0.05
for step in (1, 2, 3):
    time.sleep(pause)
    tmp = ckpt / f"ckpt-{step:05d}.pt.tmp"
    tmp.write_bytes(bytes([step]) * (1000 * step))
    os.replace(tmp, ckpt / f"ckpt-{step:05d}.pt")
    print(f"step {step} loss {1.0 / step:.4f}", flush=True)
print("done", flush=True)
"""

ARGS = ["--label", "two words", "it's", "$HOME", ";echo pwned", "--lr=3e-4"]
GPU = "NVIDIA GeForce RTX 4090"


@pytest.fixture
def world(
    sshd_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """The RunPod server (pods' SSH at the sshd fixture), config, and a project to train."""
    public_key = Path(str(sshd_server.key_path) + ".pub")
    keys = [public_key.read_text().strip()] if public_key.exists() else ["ssh-ed25519 AAAA x"]
    server = RunPodTestServer(
        api_key=API_KEY,
        ssh_host=sshd_server.host,
        ssh_port=sshd_server.port,
        ssh_user=sshd_server.user,
        ssh_keys=keys,
        step_seconds=None,
        step_polls=1,
    ).start()
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    (project / ".gitignore").write_text("data/\n")
    (project / "data").mkdir()
    (project / "data" / "big.bin").write_bytes(b"x" * 10_000)
    remote = tmp_path / "pod-disk" / "project"
    config = tmp_path / "runctl.toml"
    config.write_text(
        "[local]\nuse_uv = false\n"
        "[runpod]\n"
        f'api_url = "{server.url}"\n'
        f'remote_dir = "{remote}"\n'
        f'ssh_key = "{sshd_server.key_path}"\n'
        "wait_timeout_seconds = 30.0\n"
        "max_retries = 2\n"
        "[monitor]\npoll_seconds = 0.2\n"
    )
    config.chmod(0o600)
    monkeypatch.setenv("RUNCTL_CONFIG", str(config))
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
    monkeypatch.chdir(project)
    try:
        yield {"server": server, "remote": remote, "project": project, "tmp": tmp_path}
    finally:
        server.stop()


def test_cli_story(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    server: RunPodTestServer = world["server"]
    remote: Path = world["remote"]
    cli = Cli(capsys)

    code, out, err = cli("runpod", "create", "--name", "e2e", "--volume", "10", "--wait", "--json")
    assert code == 0, err
    assert f"creating 1 x {GPU} (SECURE) at $0.69/h (catalog price; stock HIGH)" in err
    assert "created: PROVISIONING in US-KS-2, billed $0.69/h" in err
    states = [line.strip() for line in err.splitlines()[2:]]
    assert states[:2] == ["PROVISIONING", "STARTING"]
    assert states[2].startswith("RUNNING: SSH answers at ")
    pod = json.loads(out)
    pod_id = pod["id"]
    assert pod["status"] == "RUNNING" and pod["ssh"]["port"] == server.ssh_port

    code, out, err = cli("runpod", "list", "--json")
    assert code == 0, err
    assert [p["id"] for p in json.loads(out)] == [pod_id]

    code, out, err = cli("runpod", "train", "e2e", "train.py", *ARGS)
    assert code == 0, err
    assert f"argv: {ARGS!r}" in out
    assert "step 3 loss 0.3333" in out and out.rstrip().endswith("(exit code 0)")
    assert "synced" in err and ("by rsync" in err or "by sftp" in err)
    assert not (remote / "data").exists()  # .gitignore'd
    assert not (remote.parent / "pwned").exists()
    (run,) = RunRegistry().list(Provider.RUNPOD)
    assert run.machine == pod_id and run.args == tuple(ARGS)
    assert run.status is RunStatus.SUCCEEDED and run.exit_code == 0
    assert run.cwd == str(remote)

    code, out, err = cli("runpod", "monitor", pod_id, "-n", "2")
    assert code == 0, err
    assert f"pod {pod_id} (e2e): RUNNING, 1 x {GPU}, SECURE US-KS-2, $0.69/h" in out
    assert f"run {run.id}: succeeded (exit code 0)" in out
    assert out.rstrip().splitlines()[-2:] == ["step 3 loss 0.3333", "done"]

    code, out, err = cli("runpod", "monitor", pod_id, "--container", "-n", "1")
    assert code == 0, err
    assert out.rstrip().endswith("Container is running")

    # A second run in the background, followed by `monitor --follow` until it ends.
    # (3 s of steps: `monitor` starts following well before the run ends.)
    code, out, err = cli(
        "runpod", "train", pod_id, "--background", "train.py", "second run", "--pause", "1"
    )
    assert code == 0, err
    assert f"runctl runpod monitor {pod_id} --follow" in out
    code, out, err = cli("runpod", "monitor", pod_id, "--follow")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].endswith("running; train.py second run --pause 1")
    assert "argv: ['second run', '--pause', '1']" in lines
    assert lines[-2:] == ["done", lines[-1]] and lines[-1].endswith(": succeeded (exit code 0)")

    code, out, err = cli("runpod", "checkpoints", "e2e", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [c["name"] for c in listed] == ["ckpt-00003.pt", "ckpt-00002.pt", "ckpt-00001.pt"]
    assert [c["size_bytes"] for c in listed] == [3000, 2000, 1000]
    assert listed[0]["path"] == f"{remote}/checkpoints/ckpt-00003.pt"

    dest = world["tmp"] / "downloads"
    dest.mkdir()
    code, out, err = cli("runpod", "download", "e2e", "ckpt-00002.pt", str(dest))
    assert code == 0, err
    assert (dest / "ckpt-00002.pt").read_bytes() == bytes([2]) * 2000
    assert "2.0 kB / 2.0 kB (100%)" in err
    assert f"to {dest / 'ckpt-00002.pt'}" in out

    code, out, err = cli("runpod", "stop", "e2e")
    assert (code, out.strip()) == (0, f"pod {pod_id}: EXITED ($0.00/h)")
    code, out, err = cli("runpod", "stop", "e2e")
    assert code == 1
    assert (
        f"cannot stop pod {pod_id} while it is EXITED; valid actions now: start, terminate." in err
    )
    code, out, err = cli("runpod", "checkpoints", "e2e")
    assert code == 1 and "RunPod's SSH proxy" in err
    code, out, err = cli("runpod", "start", "e2e")
    assert (code, out.strip()) == (0, f"pod {pod_id}: STARTING ($0.69/h)")

    code, out, err = cli("runpod", "terminate", "e2e")
    assert code == 1 and "pass --yes to confirm" in err
    assert server.pods[pod_id].status != "TERMINATED"
    code, out, err = cli("runpod", "terminate", "e2e", "--yes")
    assert code == 0, err
    assert server.pods[pod_id].status == "TERMINATED"
    code, out, err = cli("runpod", "list", "--json")
    assert json.loads(out) == []

    log_text = paths.log_file().read_text()
    assert "runpod" in log_text
    everything = "\n".join([*cli.transcript, log_text])
    assert API_KEY not in everything
    assert server.requests and all(
        r.headers.get("authorization") == f"Bearer {API_KEY}" for r in server.requests
    )


def test_a_busy_pod_refuses_a_second_run_until_it_is_stopped(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(capsys)
    code, out, err = cli("runpod", "create", "--name", "busy", "--wait", "--json")
    assert code == 0, err
    pod_id = json.loads(out)["id"]
    code, out, err = cli("runpod", "train", "busy", "-b", "train.py", "--pause", "20")
    assert code == 0, err
    (first,) = RunRegistry().list(Provider.RUNPOD)

    # Two trainings would share the GPU and the checkpoint folder: refused, with the ways out.
    code, out, err = cli("runpod", "train", "busy", "-b", "train.py")
    assert code == 1
    assert f"pod busy is already running run {first.id}" in err
    assert f"runctl runpod stop-run {first.id}" in err and "--allow-concurrent" in err
    assert [run.id for run in RunRegistry().list(Provider.RUNPOD)] == [first.id]

    code, out, err = cli(
        "runpod", "train", "busy", "-b", "--allow-concurrent", "train.py", "--pause", "20"
    )
    assert code == 0, err
    second, _ = RunRegistry().list(Provider.RUNPOD)
    assert second.id != first.id and second.status is RunStatus.RUNNING

    # By pod name: its newest run; by run id: that run. The pod stays up.
    code, out, err = cli("runpod", "stop-run", "busy")
    assert code == 0, err
    assert out.startswith(f"run {second.id}: stopped")
    code, out, err = cli("runpod", "stop-run", first.id)
    assert code == 0, err
    assert out.startswith(f"run {first.id}: stopped")
    assert {run.status for run in RunRegistry().list(Provider.RUNPOD)} == {RunStatus.STOPPED}
    assert world["server"].pods[pod_id].status == "RUNNING"
    code, out, err = cli("runpod", "stop-run", "not-a-pod-or-run")
    assert code == 1 and "not-a-pod-or-run" in err

    code, out, err = cli("runpod", "train", "busy", "train.py")
    assert code == 0, err
    assert out.rstrip().endswith("succeeded (exit code 0)")
    code, out, err = cli("runpod", "terminate", "busy", "--yes")
    assert code == 0, err


async def test_core_api_story(world: dict[str, Any]) -> None:
    server: RunPodTestServer = world["server"]
    config = load_config()
    backend = RunPodBackend(config)
    registry = RunRegistry()
    try:
        machine = await backend.create(CreateSpec(Provider.RUNPOD, GPU, name="core"))
        seen: list[str] = []
        ready = await backend.wait_until_ready(
            machine.id, poll_seconds=0.05, on_change=lambda m, ssh: seen.append(m.raw_state)
        )
        assert seen == ["PROVISIONING", "STARTING", "RUNNING"]
        assert ready.ssh is not None and ready.ssh.port == server.ssh_port

        said: list[str] = []
        started = await start_training(
            config,
            backend,
            "core",
            "train.py",
            [*ARGS, "--pause", "0.3"],
            progress=said.append,
            registry=registry,
        )
        assert started.sync.files_sent >= 2  # train.py and .gitignore, never data/
        assert any(line.startswith("syncing") for line in said)
        assert registry.get(started.run.id).backend is Provider.RUNPOD

        chunks: list[LogChunk] = []
        final = await follow_run(
            backend, started.run, chunks.append, poll_seconds=0.1, registry=registry
        )
        lines = [line for chunk in chunks for line in chunk.lines]
        assert ast.literal_eval(lines[0].removeprefix("argv: ")) == [*ARGS, "--pause", "0.3"]
        assert lines[-1] == "done"
        assert final.status is RunStatus.SUCCEEDED

        entries = await list_pod_checkpoints(ready, started.run.checkpoint_dir)
        assert [e.name for e in entries] == ["ckpt-00003.pt", "ckpt-00002.pt", "ckpt-00001.pt"]
        progress: list[tuple[int, int]] = []
        target = world["tmp"] / "core-download" / "ckpt-00003.pt"
        size = await download_from_pod(
            ready, entries[0].path, target, progress=lambda d, t: progress.append((d, t))
        )
        assert size == 3000 and target.read_bytes() == bytes([3]) * 3000
        assert progress[0] == (0, 3000) and progress[-1] == (3000, 3000)

        container = backend.container_logs(machine.id)
        first = await container.follow(initial_lines=5).__anext__()
        assert "sshd: Server listening on 0.0.0.0 port 22." in first.lines

        stopped = await backend.stop(machine.id)
        assert stopped.state is MachineState.STOPPED and stopped.price_per_hour == 0.0
        again = await backend.start(machine.id)
        assert again.raw_state == "STARTING"
        await backend.wait_until_ready(machine.id, poll_seconds=0.05)
        await backend.terminate(machine.id)
        assert (await backend.get(machine.id)).state is MachineState.TERMINATED
        assert await backend.list_machines() == []
    finally:
        await backend.aclose()
