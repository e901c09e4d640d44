# ruff: noqa: F811 - pytest fixtures imported from tests.moto_fixture
"""The on-instance agents as real subprocesses: the spot watcher against a local IMDSv2
server, and S3 transfers (download, upload as checkpoints appear, multipart) against moto."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from runctl_tui.agent import agent_dir
from runctl_tui.agent.spot_watcher import Imds
from runctl_tui.testing.imds_server import ImdsServer
from tests.helpers import wait_for
from tests.moto_fixture import (  # noqa: F401 - fixtures
    FAKE_ACCESS_KEY_ID,
    FAKE_SECRET_ACCESS_KEY,
    REGION,
    MotoServer,
    moto_aws,
    moto_server,
)

TRAIN = """
import os, pathlib, signal, sys, time
ck = pathlib.Path(os.environ["CKPT_DIR"]); ck.mkdir(parents=True, exist_ok=True)
steps = int(os.environ.get("STEPS", "0"))
step = 0
def on_term(*_):
    (ck / f"ckpt-{step:05d}.pt").write_bytes(b"weights at step %d" % step)
    print("got SIGTERM, saved checkpoint", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
(ck / "ckpt-00000.pt").write_bytes(b"initial")
while steps == 0 or step < steps:
    step += 1
    time.sleep(0.02)
"""


@pytest.fixture
def imds() -> Iterator[ImdsServer]:
    with ImdsServer() as server:
        yield server


@pytest.fixture
def bucket(moto_aws: MotoServer) -> str:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="ckpts")
    return "ckpts"


def _env_file(path: Path, moto: MotoServer) -> Path:
    path.write_text(
        f"AWS_ENDPOINT_URL={moto.url}\nAWS_DEFAULT_REGION={REGION}\n"
        f"AWS_ACCESS_KEY_ID={FAKE_ACCESS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={FAKE_SECRET_ACCESS_KEY}\n"
    )
    path.chmod(0o600)
    return path


def _clean_env() -> dict[str, str]:
    # The agents must get everything from their env file, as on a real instance.
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def _start_training(tmp_path: Path, steps: int = 0) -> subprocess.Popen[bytes]:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    env = {**os.environ, "CKPT_DIR": str(tmp_path / "ckpt"), "STEPS": str(steps)}
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=(tmp_path / "train.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for(lambda: (tmp_path / "ckpt" / "ckpt-00000.pt").exists(), what="training start")
    return proc


def _watcher(tmp_path: Path, pid: int, imds_url: str, env_file: Path) -> subprocess.Popen[bytes]:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            str(agent_dir() / "spot_watcher.py"),
            "--pid",
            str(pid),
            "--run-dir",
            str(run_dir),
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--output-s3",
            "s3://ckpts/exp1",
            "--env-file",
            str(env_file),
            "--interval",
            "0.1",
            "--grace",
            "15",
        ],
        env={**_clean_env(), "RUNCTL_IMDS_URL": imds_url},
        stdout=(run_dir / "spot_watcher.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_notice_signals_training_uploads_newest_checkpoint_and_writes_marker(
    tmp_path: Path, imds: ImdsServer, moto_aws: MotoServer, bucket: str
) -> None:
    training = _start_training(tmp_path)
    watcher = _watcher(tmp_path, training.pid, imds.url, _env_file(tmp_path / "a.env", moto_aws))
    try:
        # The watcher polls with a token while nothing is announced.
        wait_for(
            lambda: any(r.path.endswith("instance-action") for r in imds.requests),
            what="a poll",
        )
        assert training.poll() is None
        imds.set_instance_action("terminate")
        assert watcher.wait(timeout=30) == 0
        assert training.wait(timeout=5) == 143
    finally:
        for proc in (training, watcher):
            if proc.poll() is None:
                proc.kill()
    marker = json.loads((tmp_path / "run" / "spot_interruption.json").read_text())
    assert marker["status"] == "done" and marker["action"] == "terminate"
    assert marker["training_exited"] is True
    assert marker["signal"] == f"SIGTERM to process group {training.pid}"
    assert marker["uploaded"] is True
    newest = marker["checkpoint"]
    assert newest != "ckpt-00000.pt" and newest.startswith("ckpt-")
    key = f"exp1/checkpoints/{newest}"
    assert marker["s3_keys"] == [f"s3://ckpts/{key}"]
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"]
    assert body.read() == (tmp_path / "ckpt" / newest).read_bytes()
    assert "got SIGTERM" in (tmp_path / "train.log").read_text()
    # IMDSv2: a token was fetched with PUT, and every metadata GET carried a valid one.
    assert imds.requests[0].method == "PUT" and imds.requests[0].status == 200
    gets = [r for r in imds.requests if r.method == "GET"]
    assert gets and all(r.had_valid_token for r in gets)


def test_no_notice_means_no_marker_and_the_watcher_ends_with_training(
    tmp_path: Path, imds: ImdsServer, moto_aws: MotoServer
) -> None:
    training = _start_training(tmp_path, steps=40)
    watcher = _watcher(tmp_path, training.pid, imds.url, _env_file(tmp_path / "a.env", moto_aws))
    try:
        assert training.wait(timeout=20) == 0
        assert watcher.wait(timeout=20) == 0
    finally:
        for proc in (training, watcher):
            if proc.poll() is None:
                proc.kill()
    assert not (tmp_path / "run" / "spot_interruption.json").exists()
    assert "no interruption notice" in (tmp_path / "run" / "spot_watcher.log").read_text()


def test_imds_server_requires_a_token_and_the_client_renews_it(imds: ImdsServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{imds.url}/latest/meta-data/instance-id", timeout=5)
    assert info.value.code == 401
    bad_ttl = urllib.request.Request(f"{imds.url}/latest/api/token", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad_ttl, timeout=5)
    assert info.value.code == 400
    client = Imds(imds.url)
    assert client.get("instance-id") == "i-0123456789abcdef0"
    assert client.instance_action() is None
    imds.revoke_tokens()  # the cached token is now refused: the client must renew it
    imds.set_instance_action("stop")
    action = client.instance_action()
    assert action is not None and action["action"] == "stop" and action["time"].endswith("Z")
    puts = [r for r in imds.requests if r.method == "PUT" and r.status == 200]
    assert len(puts) == 2
    imds.clear_instance_action()
    assert client.instance_action() is None


def _s3_sync(*args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(agent_dir() / "s3_sync.py"), "--env-file", str(env_file), *args],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_download_prefix_across_pages_and_a_single_object(
    tmp_path: Path, moto_aws: MotoServer, bucket: str
) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    for index in range(5):
        s3.put_object(Bucket=bucket, Key=f"data/part-{index}.csv", Body=f"row {index}\n")
    s3.put_object(Bucket=bucket, Key="data/sub/extra.txt", Body=b"x")
    s3.put_object(Bucket=bucket, Key="other/skip.txt", Body=b"no")
    env_file = _env_file(tmp_path / "a.env", moto_aws)
    result = _s3_sync(
        "download", "s3://ckpts/data/", str(tmp_path / "d"), "--page-size", "2", env_file=env_file
    )
    assert result.returncode == 0, result.stderr
    got = sorted(str(p.relative_to(tmp_path / "d")) for p in (tmp_path / "d").rglob("*.*"))
    assert got == [f"part-{i}.csv" for i in range(5)] + ["sub/extra.txt"]
    assert (tmp_path / "d" / "part-3.csv").read_text() == "row 3\n"
    one = _s3_sync("download", "s3://ckpts/other/skip.txt", str(tmp_path / "o"), env_file=env_file)
    assert one.returncode == 0, one.stderr
    assert (tmp_path / "o" / "skip.txt").read_bytes() == b"no"
    missing = _s3_sync("download", "s3://ckpts/nothing", str(tmp_path / "n"), env_file=env_file)
    assert missing.returncode != 0


def test_upload_watch_uploads_checkpoints_as_they_appear_then_final_outputs(
    tmp_path: Path, moto_aws: MotoServer, bucket: str
) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # A stand-in for the training process: alive until we kill it.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    watch = subprocess.Popen(
        [
            sys.executable,
            str(agent_dir() / "s3_sync.py"),
            "--env-file",
            str(_env_file(tmp_path / "a.env", moto_aws)),
            "--multipart-mb",
            "5",
            "upload-watch",
            "--pid",
            str(sleeper.pid),
            "--dir",
            str(ckpt),
            "--output-s3",
            "s3://ckpts/exp2/",
            "--run-dir",
            str(run_dir),
            "--interval",
            "0.2",
        ],
        env=_clean_env(),
        stdout=(tmp_path / "watch.log").open("wb"),
        stderr=subprocess.STDOUT,
    )

    def keys() -> set[str]:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="exp2/")
        return {o["Key"] for o in listed.get("Contents", [])}

    try:
        (ckpt / "epoch-1.pt").write_bytes(os.urandom(1000))
        wait_for(lambda: "exp2/checkpoints/epoch-1.pt" in keys(), what="first checkpoint")
        assert sleeper.poll() is None  # uploaded while training still runs
        big = ckpt / "step-200" / "model.safetensors"
        big.parent.mkdir()
        big.write_bytes(os.urandom(11 * 1024 * 1024))
        wait_for(
            lambda: "exp2/checkpoints/step-200/model.safetensors" in keys(),
            what="big checkpoint",
        )
        (run_dir / "train.log").write_text("epoch 2 loss 0.1\n")
        (run_dir / "exit_code").write_text("0\n")
        (ckpt / "final.pt").write_bytes(b"final")
        sleeper.send_signal(signal.SIGTERM)
        sleeper.wait(timeout=5)
        assert watch.wait(timeout=30) == 0
    finally:
        for proc in (sleeper, watch):
            if proc.poll() is None:
                proc.kill()
    assert {
        "exp2/checkpoints/final.pt",
        "exp2/run/train.log",
        "exp2/run/exit_code",
    } <= keys()
    head = s3.head_object(Bucket=bucket, Key="exp2/checkpoints/step-200/model.safetensors")
    assert head["ContentLength"] == 11 * 1024 * 1024
    assert head["ETag"].strip('"').endswith("-3")  # multipart: 5 + 5 + 1 MiB
    state = json.loads((run_dir / "s3_sync.json").read_text())
    assert set(state["uploaded"]) == {"epoch-1.pt", "step-200/model.safetensors", "final.pt"}
    assert state["finished"] > 0
