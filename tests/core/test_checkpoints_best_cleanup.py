"""Best-checkpoint choice and cleanup: format records first, then the metric; never a live file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runctl_tui.core.checkpoints import (
    execute_cleanup,
    find_best,
    list_checkpoints,
    open_for_writing,
    plan_cleanup,
)

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "checkpoints"


def _copy(sub: str, dst: Path) -> Path:
    shutil.copytree(SAMPLES / sub, dst / sub, symlinks=True)
    return dst / sub


def _age(path: Path, seconds_ago: float) -> None:
    stamp = time.time() - seconds_ago
    targets = [path, *path.rglob("*")] if path.is_dir() else [path]
    for target in targets:
        os.utime(target, (stamp, stamp), follow_symlinks=False)


def test_best_from_trainer_state(tmp_path: Path) -> None:
    root = _copy("hf_trainer", tmp_path)
    for age, name in enumerate(["checkpoint-6", "checkpoint-4", "checkpoint-2"]):
        _age(root / name, 100 * age)
    entries = list_checkpoints(root)
    choice = find_best(entries)
    assert choice is not None
    assert choice.entry.name == "checkpoint-4"  # trainer_state.json's best_model_checkpoint
    assert "best_model_checkpoint" in choice.reason
    assert [e.name for e in entries if e.best] == ["checkpoint-4"]


def test_best_from_lightning_callback_state(tmp_path: Path) -> None:
    root = _copy("lightning", tmp_path)
    choice = find_best(list_checkpoints(root))
    assert choice is not None
    assert choice.entry.name == "epoch=3-step=16.ckpt"
    assert choice.metric == "val_loss"
    assert "best_model_path" in choice.reason


def test_best_by_configured_metric_from_names(tmp_path: Path) -> None:
    for name in (
        "epoch=1-val_loss=0.50.ckpt",
        "epoch=2-val_loss=0.20.ckpt",
        "epoch=3-val_loss=0.35.ckpt",
    ):
        (tmp_path / name).write_bytes(b"not read: the name says it all")
    entries = list_checkpoints(tmp_path)
    low = find_best(entries, read_contents=False)
    assert low is not None and low.entry.name == "epoch=2-val_loss=0.20.ckpt"
    high = find_best(entries, mode="max", read_contents=False)
    assert high is not None and high.entry.name == "epoch=1-val_loss=0.50.ckpt"
    assert [e.name for e in entries if e.best] == ["epoch=1-val_loss=0.50.ckpt"]


def test_best_by_loss_read_from_headers(tmp_path: Path) -> None:
    # No val_loss anywhere: the metric falls back to `loss`, read from each file's pickle.
    root = _copy("torch", tmp_path)
    shutil.copy(SAMPLES / "torch/training_zip.pth", root / "other.pth")
    choice = find_best(list_checkpoints(root), metric="val_loss")
    assert choice is not None
    assert choice.metric == "loss"
    assert choice.score == pytest.approx(0.4321)


def test_cleanup_keeps_newest_best_protected_and_aliases(tmp_path: Path) -> None:
    for i in range(1, 7):
        path = tmp_path / f"epoch={i}-val_loss={1.0 / i if i != 2 else 0.01:.3f}.ckpt"
        path.write_bytes(b"x" * 100 * i)
        _age(path, 100 - i)
    (tmp_path / "keep-me.pt").write_bytes(b"k")
    _age(tmp_path / "keep-me.pt", 1000)
    (tmp_path / "old.pt").write_bytes(b"o" * 7)
    _age(tmp_path / "old.pt", 2000)
    (tmp_path / "aliased.pt").write_bytes(b"a")
    _age(tmp_path / "aliased.pt", 3000)
    (tmp_path / "best.pt").symlink_to("aliased.pt")
    entries = list_checkpoints(tmp_path)
    find_best(entries, read_contents=False)
    plan = plan_cleanup(entries, keep_last=2, protected=["keep-*"])
    kept = {e.name: reason for e, reason in plan.keep}
    deleted = sorted(e.name for e in plan.delete)
    assert deleted == [
        "epoch=1-val_loss=1.000.ckpt",
        "epoch=3-val_loss=0.333.ckpt",
        "epoch=4-val_loss=0.250.ckpt",
        "old.pt",
    ]
    assert kept["epoch=6-val_loss=0.167.ckpt"] == "one of the newest 2"
    assert kept["epoch=5-val_loss=0.200.ckpt"] == "one of the newest 2"
    assert kept["epoch=2-val_loss=0.010.ckpt"].startswith("best: lowest val_loss")
    assert kept["keep-me.pt"] == "protected by 'keep-*'"
    assert kept["aliased.pt"] == "has alias best.pt"
    assert plan.freed_bytes == 100 + 300 + 400 + 7

    result = execute_cleanup(plan)
    assert sorted(e.name for e in result.deleted) == deleted
    assert result.freed_bytes == plan.freed_bytes
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(
        ["aliased.pt", "best.pt", "keep-me.pt", *[n for n in kept if n.startswith("epoch")]]
    )


def test_cleanup_deletes_trainer_dirs_and_shard_sets_whole(tmp_path: Path) -> None:
    root = _copy("hf_trainer", tmp_path)
    for age, name in enumerate(["checkpoint-6", "checkpoint-4", "checkpoint-2"]):
        _age(root / name, 100 * age)
    entries = list_checkpoints(root)
    find_best(entries)
    plan = plan_cleanup(entries, keep_last=1)
    assert [e.name for e in plan.delete] == ["checkpoint-2"]
    execute_cleanup(plan)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-4", "checkpoint-6"]

    shards = _copy("safetensors/sharded", tmp_path)
    entries = list_checkpoints(shards)
    plan = plan_cleanup(entries, keep_last=0)
    execute_cleanup(plan)
    assert sorted(p.name for p in shards.iterdir()) == ["config.json"]


@pytest.mark.skipif(not Path("/proc/self/fdinfo").exists(), reason="Linux /proc")
def test_a_file_a_live_process_is_writing_is_never_deleted(tmp_path: Path) -> None:
    live = tmp_path / "epoch=1-step=10.ckpt"
    live.write_bytes(b"old")
    _age(live, 500)
    done = tmp_path / "epoch=0-step=5.ckpt"
    done.write_bytes(b"old")
    _age(done, 600)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; f = open(sys.argv[1], 'ab'); print('open', flush=True); sys.stdin.read()",
            str(live),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "open"
        assert open_for_writing([str(live), str(done)]) == {str(live)}
        entries = list_checkpoints(tmp_path)
        # Planned without knowing about the writer: execution still re-checks and skips it.
        plan = plan_cleanup(entries, keep_last=0)
        assert {e.name for e in plan.delete} == {live.name, done.name}
        result = execute_cleanup(plan)
        assert [e.name for e in result.deleted] == [done.name]
        assert [(e.name, r) for e, r in result.skipped] == [
            (live.name, "a process has it open for writing")
        ]
        assert live.exists()
        # Planned with the writer known: it is kept, with the reason.
        busy = open_for_writing([str(live)])
        plan = plan_cleanup(list_checkpoints(tmp_path), keep_last=0, writing=busy)
        assert [(e.name, r) for e, r in plan.keep] == [(live.name, "being written by a live run")]
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(timeout=10)


def test_a_file_that_changed_since_listing_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "epoch=1-step=10.ckpt"
    path.write_bytes(b"abc")
    _age(path, 100)
    plan = plan_cleanup(list_checkpoints(tmp_path), keep_last=0)
    with open(path, "ab") as handle:
        handle.write(b"more")
    result = execute_cleanup(plan)
    assert result.deleted == []
    assert result.skipped[0][1].startswith("changed since it was listed")
    assert path.exists()


def test_an_unreadable_newest_file_takes_no_keep_slot(tmp_path: Path) -> None:
    from runctl_tui.core.checkpoints import InspectCache

    good = tmp_path / "epoch=1-step=10.ckpt"
    shutil.copy(SAMPLES / "lightning/epoch=2-step=12.ckpt", good)
    _age(good, 100)
    data = (SAMPLES / "lightning/last.ckpt").read_bytes()
    crashed = tmp_path / "epoch=2-step=20.ckpt"
    crashed.write_bytes(data[: len(data) // 3])
    _age(crashed, 10)
    cache = InspectCache()
    entries = list_checkpoints(tmp_path)
    plan = plan_cleanup(
        entries, keep_last=1, is_readable=lambda e: cache(Path(e.path)).error is None
    )
    assert [e.name for e in plan.delete] == [crashed.name]
    assert [(e.name, r) for e, r in plan.keep] == [(good.name, "one of the newest 1")]
    blind = plan_cleanup(entries, keep_last=1)
    assert [e.name for e in blind.delete] == [good.name]  # what the check prevents
