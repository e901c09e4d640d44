"""`runctl checkpoint list|inspect|cleanup|resume` as a user runs them: real processes, real files."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import runctl

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "checkpoints"
TRUTH = json.loads((SAMPLES / "ground_truth.json").read_text())
DEMO = Path(__file__).resolve().parents[2] / "runctl_tui" / "examples" / "train_demo.py"


def _age(path: Path, seconds_ago: float) -> None:
    stamp = time.time() - seconds_ago
    for target in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(target, (stamp, stamp), follow_symlinks=False)


def test_list_json_newest_first_with_best(tmp_path: Path) -> None:
    root = tmp_path / "lightning"
    shutil.copytree(SAMPLES / "lightning", root)
    _age(root / "epoch=2-step=12.ckpt", 300)
    _age(root / "epoch=3-step=16.ckpt", 200)
    _age(root / "last.ckpt", 100)
    result = runctl("checkpoint", "list", str(root), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [Path(r["path"]).name for r in rows] == [
        "last.ckpt",
        "epoch=3-step=16.ckpt",
        "epoch=2-step=12.ckpt",
    ]
    for row in rows:
        assert {"path", "format", "size_bytes", "modified", "step", "epoch", "best"} <= row.keys()
        stamp = dt.datetime.fromisoformat(row["modified"])
        assert abs(stamp.timestamp() - Path(row["path"]).stat().st_mtime) < 1e-3
        assert row["size_bytes"] == Path(row["path"]).stat().st_size
        assert row["format"] == "lightning"
    assert [r["best"] for r in rows] == [False, True, False]
    assert (rows[1]["epoch"], rows[1]["step"]) == (3, 16)
    # last.ckpt's name says nothing: epoch and step come from its header.
    truth = TRUTH["lightning/last.ckpt"]
    assert (rows[0]["epoch"], rows[0]["step"]) == (truth["epoch"], truth["step"])
    names_only = json.loads(
        runctl("checkpoint", "list", str(root), "--json", "--names-only", cwd=tmp_path).stdout
    )
    assert names_only[0]["step"] is None


def test_list_text_marks_best_and_alias(tmp_path: Path) -> None:
    result = runctl("checkpoint", "list", str(SAMPLES / "torch"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if "training_zip.pth" in ln)
    assert "alias best.pt" in line
    assert "torch-zip" in line
    legacy = next(ln for ln in result.stdout.splitlines() if "training_legacy.pth" in ln)
    assert "torch-legacy" in legacy


def test_list_missing_directory_exits_1(tmp_path: Path) -> None:
    result = runctl("checkpoint", "list", str(tmp_path / "nope"), cwd=tmp_path)
    assert result.returncode == 1
    assert "does not exist" in result.stderr


def test_inspect_json_fields(tmp_path: Path) -> None:
    result = runctl(
        "checkpoint", "inspect", str(SAMPLES / "torch/training_legacy.pth"), "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    truth = TRUTH["torch/training_legacy.pth"]
    assert info["format"] == "torch-legacy"
    assert info["size_bytes"] == (SAMPLES / "torch/training_legacy.pth").stat().st_size
    assert info["tensor_count"] == truth["tensor_count"]
    assert info["parameter_count"] == truth["parameter_count"]
    assert info["dtypes"] == truth["dtypes"]
    assert (info["epoch"], info["step"]) == (truth["epoch"], truth["step"])
    assert info["metrics"] == pytest.approx(truth["metrics"])
    assert sorted(info["keys"]) == truth["keys"]
    assert info["metadata"] == {}
    assert info["error"] is None
    st = json.loads(
        runctl(
            "checkpoint",
            "inspect",
            str(SAMPLES / "safetensors/model.safetensors"),
            "--json",
            cwd=tmp_path,
        ).stdout
    )
    assert st["metadata"] == TRUTH["safetensors/model.safetensors"]["metadata"]


def test_inspect_truncated_exits_1_with_sentence(tmp_path: Path) -> None:
    data = (SAMPLES / "torch/training_zip.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    result = runctl("checkpoint", "inspect", str(cut), "--json", cwd=tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"].startswith("truncated: zip central directory missing")
    assert "truncated: zip central directory missing" in result.stderr
    plain = runctl("checkpoint", "inspect", str(cut), cwd=tmp_path)
    assert plain.returncode == 1
    assert "Traceback" not in plain.stderr


def test_cleanup_dry_run_then_yes(tmp_path: Path) -> None:
    root = tmp_path / "ckpts"
    root.mkdir()
    real = (SAMPLES / "torch/state_dict_zip.pt").read_bytes()
    for i in range(1, 6):
        path = root / f"epoch={i}-val_loss={[0.9, 0.1, 0.5, 0.4, 0.3][i - 1]}.ckpt"
        path.write_bytes(real + b"\0" * 1000 * i)  # readable (zip found from the end), sized apart
        _age(path, 100 - i)
    (root / "pinned.ckpt").write_bytes(b"p")
    _age(root / "pinned.ckpt", 1000)
    (tmp_path / ".runctl.toml").write_text('[checkpoints]\nprotected = ["pinned*"]\n')
    before = sorted(p.name for p in root.iterdir())

    dry = runctl(
        "checkpoint", "cleanup", str(root), "--keep-last", "2", "--dry-run", "--json", cwd=tmp_path
    )
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert sorted(d["name"] for d in plan["delete"]) == [
        "epoch=1-val_loss=0.9.ckpt",
        "epoch=3-val_loss=0.5.ckpt",
    ]
    assert plan["freed_bytes"] == 2 * len(real) + 1000 + 3000
    reasons = {k["name"]: k["reason"] for k in plan["keep"]}
    assert reasons["pinned.ckpt"] == "protected by 'pinned*'"
    assert reasons["epoch=2-val_loss=0.1.ckpt"].startswith("best: lowest val_loss")
    assert sorted(p.name for p in root.iterdir()) == before  # a dry run deletes nothing

    text = runctl("checkpoint", "cleanup", str(root), "--keep-last", "2", "--dry-run", cwd=tmp_path)
    freed = 2 * len(real) + 4000
    assert f"2 to delete, freeing {freed / 1024:.1f} KiB ({freed} bytes)" in text.stdout

    refused = runctl("checkpoint", "cleanup", str(root), "--keep-last", "2", cwd=tmp_path)
    assert refused.returncode == 1
    assert "pass --yes" in refused.stderr
    assert sorted(p.name for p in root.iterdir()) == before

    done = runctl("checkpoint", "cleanup", str(root), "--keep-last", "2", "--yes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "deleted 2 checkpoint(s)" in done.stdout
    assert sorted(p.name for p in root.iterdir()) == sorted(
        set(before) - {"epoch=1-val_loss=0.9.ckpt", "epoch=3-val_loss=0.5.ckpt"}
    )


def test_resume_from_a_demo_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("runctl_tui.cli.local_cmd")
    ckpts = tmp_path / "ckpts"
    env = {"RUNCTL_LOCAL_USE_UV": "0"}
    first = subprocess.run(
        [sys.executable, str(DEMO), "--epochs", "1", "--steps-per-epoch", "10", "--sleep", "0",
         "--checkpoint-every", "5", "--checkpoint-dir", str(ckpts)],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    listed = json.loads(
        runctl("checkpoint", "list", str(ckpts), "--json", cwd=tmp_path, env=env).stdout
    )
    newest = listed[0]
    assert newest["format"] == "runctl-demo" and newest["step"] == 10
    resumed = runctl(
        "checkpoint", "resume", newest["path"], str(DEMO),
        "--epochs", "2", "--steps-per-epoch", "10", "--sleep", "0", "--checkpoint-every", "5",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "resuming from" in resumed.stderr
    assert "resumed from" in resumed.stdout
    steps = [
        e["step"]
        for e in json.loads(runctl("checkpoint", "list", str(ckpts), "--json", cwd=tmp_path).stdout)
    ]
    assert max(steps) == 20
