# ruff: noqa: F811 - pytest fixtures imported from tests.moto_fixture
"""`runctl aws ...` end to end: moto for EC2 and S3, the sshd fixture standing in for the
instance's SSH (via `[aws] ssh_host_overrides`), and a local IMDSv2 server for spot notices.

The story: spot refused (asked, refused, taken), spot created and waited for, training with
`--data-s3`/`--output-s3` and awkward arguments, a checkpoint reaching S3, a spot interruption
(checkpoint uploaded, run interrupted), resume on a replacement, stop, start, terminate with
the unsynced-checkpoint warning, and no credential anywhere in the output or the log.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from runctl_tui.core import paths
from runctl_tui.core.models import Provider, RunStatus
from runctl_tui.core.runs import RunRegistry
from runctl_tui.testing.imds_server import ImdsServer
from tests.helpers import Cli, wait_for
from tests.moto_fixture import (  # noqa: F401 - fixtures
    FAKE_ACCESS_KEY_ID,
    FAKE_SECRET_ACCESS_KEY,
    REGION,
    MotoServer,
    ec2_event_hook,
    mark_spot_interrupted,
    moto_aws,
    moto_server,
)

pytestmark = pytest.mark.sshd

TRAIN = r"""
import os, signal, sys, time
from pathlib import Path

ckpt = Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
ckpt.mkdir(parents=True, exist_ok=True)
print("argv:", repr(sys.argv[1:]), flush=True)
data = Path(os.environ.get("RUNCTL_DATA_DIR", "data"))
rows = (data / "train.csv").read_text().splitlines() if (data / "train.csv").exists() else []
print("data rows:", len(rows), flush=True)
resume = sys.argv[sys.argv.index("--resume") + 1] if "--resume" in sys.argv else None
step = 0
if resume:
    text = Path(resume).read_text()
    step = int(text.split()[-1])
    print(f"resumed from {resume} at step {step}", flush=True)

def save():
    tmp = ckpt / f"ckpt-{step:05d}.pt.tmp"
    tmp.write_text(f"weights at step {step}")
    os.replace(tmp, ckpt / f"ckpt-{step:05d}.pt")

def on_term(*_):
    save()
    print(f"SIGTERM at step {step}: checkpoint saved", flush=True)
    sys.exit(143)

signal.signal(signal.SIGTERM, on_term)
limit = step + 30 if resume else 10**9
while step < limit:
    step += 1
    if step % 25 == 0:
        save()
        print(f"step {step} loss {1.0 / step:.4f}", flush=True)
    time.sleep(0.02)
save()
print("done", flush=True)
"""

ARGS = ["--label", "two words", "it's", "$HOME", ";echo pwned", "--lr=3e-4"]


@pytest.fixture
def imds() -> Iterator[ImdsServer]:
    with ImdsServer() as server:
        yield server


@pytest.fixture
def world(
    moto_aws: MotoServer,
    sshd_server: Any,
    imds: ImdsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """Config, project, bucket and data for the story."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    (project / "quick.py").write_text(
        "import os, sys\nfrom pathlib import Path\n"
        "print('quick run with', sys.argv[1:], flush=True)\n"
        "ckpt = Path(os.environ['RUNCTL_CHECKPOINT_DIR']); ckpt.mkdir(parents=True, exist_ok=True)\n"
        "(ckpt / 'ckpt-00001.pt').write_text('w')\nprint('saved ckpt-00001.pt', flush=True)\n"
    )
    (project / "idle.py").write_text(
        "import sys, time\nprint(sys.argv[1:], flush=True)\ntime.sleep(120)\n"
    )
    remote = tmp_path / "remote"
    config = tmp_path / "runctl.toml"
    config.write_text(
        "[local]\nuse_uv = false\n"
        "[aws]\n"
        f'remote_dir = "{remote}"\n'
        f'agent_python = "{sys.executable}"\n'
        "forward_credentials = true\n"
        "agent_poll_seconds = 0.2\n"
        f'ssh_user = "{sshd_server.user}"\n'
        f'ssh_key = "{sshd_server.key_path}"\n'
        f'ssh_host_overrides = {{ "*" = "127.0.0.1:{sshd_server.port}" }}\n'
    )
    monkeypatch.setenv("RUNCTL_CONFIG", str(config))
    monkeypatch.setenv("RUNCTL_IMDS_URL", imds.url)
    monkeypatch.setenv("RUNCTL_MONITOR_POLL_SECONDS", "0.3")
    monkeypatch.chdir(project)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="ml-bucket")
    s3.put_object(Bucket="ml-bucket", Key="datasets/v1/train.csv", Body=b"a,1\nb,2\nc,3\n")
    return {"remote": remote, "project": project, "config": config}


@pytest.fixture
def no_spot_capacity() -> Iterator[None]:
    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params.get("InstanceMarketOptions", {}).get("MarketType") == "spot":
            raise ClientError(
                {"Error": {"Code": "InsufficientInstanceCapacity", "Message": "no capacity"}},
                "RunInstances",
            )

    with ec2_event_hook("before-parameter-build.ec2.RunInstances", refuse):
        yield


def _keys(prefix: str) -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="ml-bucket", Prefix=prefix)
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


def _instance_count() -> int:
    ec2 = boto3.client("ec2", region_name=REGION)
    return sum(len(r["Instances"]) for r in ec2.describe_instances()["Reservations"])


def test_spot_refused_then_on_demand_training_in_the_foreground(
    world: dict[str, Any], no_spot_capacity: None, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(capsys)
    code, _out, err = cli("aws", "create", "g5.xlarge", "--spot")
    assert code == 1
    assert "no spot capacity for g5.xlarge (InsufficientInstanceCapacity" in err
    assert "on-demand ~$1.0060/h" in err and "spot $0.0000/h (live)" in err
    assert "--fallback on-demand" in err
    code, _out, err = cli("aws", "create", "g5.xlarge", "--spot", "--fallback", "never")
    assert code == 1 and "nothing was launched" in err
    assert _instance_count() == 0

    code, out, err = cli(
        "aws", "create", "g5.xlarge", "--spot", "--fallback", "on-demand", "--json"
    )
    assert code == 0, err
    assert "was refused" in err and "launched on-demand" in err and "on-demand ~$1.0060/h" in err
    machine = json.loads(out)
    assert machine["lifecycle"] == "on-demand"
    assert machine["tags"]["runctl:fallback"] == "spot-refused"
    assert _instance_count() == 1

    code, out, _ = cli("aws", "list")
    assert code == 0
    header, row, legend = out.splitlines()
    assert header.split()[:6] == ["ID", "NAME", "TYPE", "GPUS", "MARKET", "STATE"]
    assert machine["id"] in row and "1x NVIDIA A10G" in row and "on-demand" in row
    assert "~$1.0060" in row and legend.startswith("~ estimated")

    override = world["project"] / "prices.json"
    override.write_text('{"as_of": "2026-11", "source": "test", "prices": {"g5.xlarge": 0.5}}')
    with world["config"].open("a") as handle:
        handle.write(f'prices_file = "{override}"\n')
    code, out, _ = cli("aws", "prices", "--json")
    assert code == 0
    prices = json.loads(out)
    assert prices["overridden_by"] == str(override) and prices["on_demand_as_of"] == "2026-11"
    g5 = next(t for t in prices["types"] if t["instance_type"] == "g5.xlarge")
    assert g5["on_demand_per_hour"] == 0.5 and g5["on_demand_is_estimate"] is True
    assert g5["spot_per_hour"] == 0.00001 and g5["spot_is_estimate"] is False
    code, out, _ = cli("aws", "prices")
    assert code == 0 and "ON-DEMAND (est.)" in out and "overridden by" in out

    # A bucket that does not exist stops the run before anything starts.
    code, _out, err = cli(
        "aws", "train", machine["id"], "--output-s3", "s3://no-such-bucket/x", "quick.py"
    )
    assert code == 1 and "S3 bucket no-such-bucket" in err and "does not exist" in err
    assert not list(world["project"].parent.glob("remote/runs/*"))

    # Train in the foreground (the log is followed to the end) without --output-s3 ...
    code, out, err = cli("aws", "train", machine["id"], "quick.py", "a b")
    assert code == 0, err
    assert "quick run with ['a b']" in out and "saved ckpt-00001.pt" in out
    assert f"succeeded on {machine['id']}" in out
    # ... so terminating warns that the checkpoint exists only on the instance.
    code, out, err = cli("aws", "terminate", machine["id"], "--yes")
    assert code == 0, err
    assert "started without --output-s3" in err and "ckpt-00001.pt" in err
    for text in cli.transcript:
        assert FAKE_SECRET_ACCESS_KEY not in text and FAKE_ACCESS_KEY_ID not in text


def test_spot_training_interruption_resume_and_teardown(
    world: dict[str, Any],
    imds: ImdsServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cli = Cli(capsys)
    remote: Path = world["remote"]

    # Create a spot instance and wait for it, each state shown.
    code, out, err = cli("aws", "create", "g5.xlarge", "--spot", "--wait", "--json")
    assert code == 0, err
    machine = json.loads(out)
    instance = machine["id"]
    assert machine["lifecycle"] == "spot" and machine["gpu_count"] == 1
    assert "Launched spot g5.xlarge" in err and "max price = the on-demand price" in err
    assert "waiting for SSH on 127.0.0.1" in err and "SSH answers on 127.0.0.1" in err

    code, out, _ = cli("aws", "list", "--json")
    assert [m["id"] for m in json.loads(out)] == [instance]

    # Train with S3 data in and checkpoints out; arguments with spaces, quotes and $.
    code, out, err = cli(
        "aws",
        "train",
        instance,
        "--data-s3",
        "s3://ml-bucket/datasets/v1/",
        "--output-s3",
        "s3://ml-bucket/runs/exp1",
        "--background",
        "train.py",
        *ARGS,
    )
    assert code == 0, err
    run_id = out.split()[1]
    assert "downloading s3://ml-bucket/datasets/v1/" in err
    run = RunRegistry().get(run_id)
    assert run.backend is Provider.AWS and run.machine == instance
    assert run.status is RunStatus.RUNNING and run.args == tuple(ARGS)
    log_path = Path(run.log_path)
    assert log_path.is_relative_to(remote)
    wait_for(lambda: "data rows: 3" in log_path.read_text(), what="training output")
    assert f"argv: {ARGS!r}" in log_path.read_text()
    assert (remote / "data" / "train.csv").read_bytes() == b"a,1\nb,2\nc,3\n"

    # A checkpoint reaches S3 while training runs.
    wait_for(lambda: _keys("runs/exp1/checkpoints/ckpt-"), what="a checkpoint in S3")
    wait_for(lambda: (log_path.parent / "s3_sync.json").exists(), what="the upload record")

    code, out, err = cli("aws", "monitor", run_id, "--lines", "0")
    assert code == 0, err
    assert f"run {run_id}: running on {instance} running" in out
    assert "in S3:" in out

    # One run at a time on an instance unless asked.
    code, _out, err = cli("aws", "train", instance, "--background", "train.py")
    assert code == 1 and f"already running run {run_id}" in err
    code, out, err = cli(
        "aws", "train", instance, "--background", "--allow-concurrent", "idle.py", "x y"
    )
    assert code == 0, err
    second = out.split()[1]
    code, out, err = cli("aws", "stop-run", second)
    assert code == 0, err
    assert out.startswith(f"run {second}: stopped")
    assert RunRegistry().get(second).status is RunStatus.STOPPED
    assert RunRegistry().get(run_id).status is RunStatus.RUNNING

    # Spot interruption notice: the watcher on the instance signals, uploads, marks.
    imds.set_instance_action("terminate")
    marker_path = log_path.parent / "spot_interruption.json"
    marker = wait_for(
        lambda: (
            marker_path.exists()
            and json.loads(marker_path.read_text()).get("status") == "done"
            and json.loads(marker_path.read_text())
        ),
        what="the interruption marker",
    )
    assert marker["uploaded"] is True
    saved = marker["s3_keys"][0]
    assert saved.startswith("s3://ml-bucket/runs/exp1/checkpoints/ckpt-")
    assert saved.removeprefix("s3://ml-bucket/") in _keys("runs/exp1/checkpoints/")
    assert "checkpoint saved" in log_path.read_text()

    code, out, err = cli("aws", "monitor", run_id, "--lines", "0")
    assert code == 0, err
    assert f"run {run_id}: interrupted" in out and "SPOT INTERRUPTION: terminate" in out
    assert saved in out
    assert RunRegistry().get(run_id).status is RunStatus.INTERRUPTED

    # AWS takes the instance back: shown as interrupted.
    mark_spot_interrupted(instance)
    code, out, _ = cli("aws", "list", "--json")
    (listed,) = [m for m in json.loads(out) if m["id"] == instance]
    assert listed["state"] == "interrupted"
    assert "Spot instance termination" in listed["state_reason"]

    # With auto_resume on, following the run launches a replacement of the same type and
    # resumes the same logical run from the newest checkpoint in S3, then follows it.
    imds.clear_instance_action()
    monkeypatch.setenv("RUNCTL_AWS_AUTO_RESUME", "1")
    code, out, err = cli("aws", "monitor", run_id, "--follow")
    assert code == 0, err
    resumed = RunRegistry().get(run_id)
    replacement = resumed.machine
    assert replacement != instance and resumed.status is RunStatus.SUCCEEDED
    assert f"after spot interruption of {instance}" in resumed.note
    assert f"run {run_id} resumed on {replacement}" in out
    step = int(saved.rsplit("ckpt-", 1)[1].split(".")[0])
    assert "resumed from " in out and f"at step {step}" in out  # the log, streamed
    assert f"run {run_id}: succeeded on {replacement}" in out
    new_log = Path(resumed.log_path)
    assert new_log != log_path and "done" in new_log.read_text()
    assert repr([*ARGS, "--resume"])[:-1] in new_log.read_text()
    code, _out, err = cli("aws", "resume", run_id)
    assert code == 1 and "not interrupted" in err

    code, out, err = cli("aws", "monitor", replacement, "--lines", "5")
    assert code == 0, err
    assert f"run {run_id}: succeeded" in out and "done" in out
    final_key = f"runs/exp1/checkpoints/ckpt-{step + 30:05d}.pt"
    wait_for(lambda: final_key in _keys("runs/exp1/"), what="the final checkpoint in S3")
    wait_for(lambda: "runs/exp1/run/train.log" in _keys("runs/exp1/run/"), what="final log")

    # Stop and start.
    code, out, _ = cli("aws", "stop", replacement)
    assert code == 0 and out.strip() == f"{replacement}: stopped"
    code, out, _ = cli("aws", "start", replacement)
    assert code == 0 and out.strip() == f"{replacement}: running"

    # Everything is in S3: terminate asks for confirmation but has nothing to warn about.
    code, _out, err = cli("aws", "terminate", replacement)
    assert code == 1 and "pass --yes" in err and "not in s3" not in err.lower()
    # A checkpoint written after the uploader finished is only on the instance.
    (Path(resumed.checkpoint_dir) / "ckpt-99999.pt").write_text("late")
    code, out, err = cli("aws", "terminate", replacement, "--yes")
    assert code == 0, err
    assert "ckpt-99999.pt" in err and "is not in s3://ml-bucket/runs/exp1 yet" in err
    assert out.strip() == f"{replacement}: terminated"

    # No credential anywhere: CLI output, runctl's log, the agents' logs.
    logs = [paths.log_file().read_text()] if paths.log_file().exists() else []
    assert logs, "runctl wrote no log"
    agent_logs = [p.read_text() for p in remote.rglob("*.log") if p.name != "train.log"]
    assert agent_logs
    # forward_credentials put them in a private file on the instance, and only there.
    env_files = list((remote / ".runctl" / "env").glob("*.env"))
    assert env_files and all(f.stat().st_mode & 0o077 == 0 for f in env_files)
    for text in cli.transcript + logs + agent_logs:
        assert FAKE_ACCESS_KEY_ID not in text
        assert FAKE_SECRET_ACCESS_KEY not in text
