"""Listing checkpoints under an S3 prefix on a moto server: every page, grouped like local ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from runctl_tui.core.checkpoints import list_s3_checkpoints
from runctl_tui.core.errors import BackendError
from tests.moto_fixture import MotoServer, moto_aws, moto_server  # noqa: F401

BUCKET = "runctl-ckpts"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "checkpoints"


@pytest.fixture
def s3(moto_aws: MotoServer) -> Any:  # noqa: F811
    import boto3

    client = boto3.client("s3", endpoint_url=moto_aws.url, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def _put_many(client: Any, keys: list[str], body: bytes = b"x") -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=BUCKET, Key=k, Body=body), keys))


def test_lists_beyond_one_page(s3: Any) -> None:
    keys = [f"run1/step_{i:05d}.pt" for i in range(1205)]
    _put_many(s3, keys)
    s3.put_object(Bucket=BUCKET, Key="run1/train.log", Body=b"log")
    s3.put_object(Bucket=BUCKET, Key="run2/step_99999.pt", Body=b"other prefix")
    first_page = s3.list_objects_v2(Bucket=BUCKET, Prefix="run1/")
    assert first_page["IsTruncated"] and first_page["KeyCount"] == 1000  # the case we must handle
    entries = list_s3_checkpoints(f"s3://{BUCKET}/run1", s3)
    assert len(entries) == 1205
    assert {e.path for e in entries} == {f"s3://{BUCKET}/{k}" for k in keys}
    assert all(e.location == "s3" and e.format == "torch" for e in entries)
    assert sorted(e.step for e in entries if e.step is not None) == list(range(1205))


def test_groups_trainer_dirs_shards_and_sizes(s3: Any) -> None:
    for path in (SAMPLES / "hf_trainer/checkpoint-4").iterdir():
        s3.put_object(Bucket=BUCKET, Key=f"out/checkpoint-4/{path.name}", Body=path.read_bytes())
    for path in (SAMPLES / "safetensors/sharded").iterdir():
        s3.put_object(Bucket=BUCKET, Key=f"out/model/{path.name}", Body=path.read_bytes())
    body = (SAMPLES / "lightning/epoch=3-step=16.ckpt").read_bytes()
    s3.put_object(Bucket=BUCKET, Key="out/epoch=3-step=16.ckpt", Body=body)
    entries = {e.name: e for e in list_s3_checkpoints(f"s3://{BUCKET}/out/", s3)}
    assert set(entries) == {
        "checkpoint-4",
        "model/model.safetensors.index.json",
        "epoch=3-step=16.ckpt",
    }
    hf = entries["checkpoint-4"]
    assert hf.format == "hf-trainer" and hf.step == 4 and hf.is_dir
    assert hf.size_bytes == sum(
        p.stat().st_size for p in (SAMPLES / "hf_trainer/checkpoint-4").iterdir()
    )
    assert len(entries["model/model.safetensors.index.json"].parts) == 4
    assert entries["epoch=3-step=16.ckpt"].size_bytes == len(body)
    assert (entries["epoch=3-step=16.ckpt"].epoch, entries["epoch=3-step=16.ckpt"].step) == (3, 16)


def test_missing_bucket_is_a_backend_error(s3: Any) -> None:
    with pytest.raises(BackendError, match="cannot list s3://no-such-bucket"):
        list_s3_checkpoints("s3://no-such-bucket/x", s3)
    with pytest.raises(BackendError, match="not an S3 URI"):
        list_s3_checkpoints("/local/path", s3)


def test_cli_lists_an_s3_prefix(s3: Any, tmp_path: Path) -> None:
    _put_many(s3, [f"ckpt/epoch={i}-val_loss=0.{9 - i}.ckpt" for i in range(5)])
    result = subprocess.run(
        [sys.executable, "-m", "runctl_tui", "checkpoint", "list", f"s3://{BUCKET}/ckpt", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 5
    best = [r for r in rows if r["best"]]
    assert [Path(r["path"]).name for r in best] == ["epoch=4-val_loss=0.5.ckpt"]
    assert "Secret" not in result.stdout + result.stderr
