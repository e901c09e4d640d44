"""Listing checkpoints: formats by name, grouping, aliases, name parsing, remote and writing."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from runctl_tui.core.checkpoints import (
    WriteTracker,
    classify_remote,
    list_checkpoints,
    parse_name,
)
from runctl_tui.core.errors import NotFoundError

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "checkpoints"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of every sample with distinct, known modification times."""
    root = tmp_path / "ckpts"
    shutil.copytree(SAMPLES, root, symlinks=True)
    (root / "ground_truth.json").unlink()
    (root / "versions.json").unlink()
    (root / "README.md").unlink()
    (root / "notes.txt").write_text("not a checkpoint")
    return root


def test_lists_every_format_grouped(tree: Path) -> None:
    entries = {e.name: e for e in list_checkpoints(tree)}
    assert set(entries) == {
        "hf_trainer/checkpoint-2",
        "hf_trainer/checkpoint-4",
        "hf_trainer/checkpoint-6",
        "keras/tiny.keras",
        "lightning/epoch=2-step=12.ckpt",
        "lightning/epoch=3-step=16.ckpt",
        "lightning/last.ckpt",
        "safetensors/model.safetensors",
        "safetensors/sharded/model.safetensors.index.json",
        "torch/pytorch_model.bin",
        "torch/state_dict_legacy.pt",
        "torch/state_dict_zip.pt",
        "torch/training_legacy.pth",
        "torch/training_zip.pth",
    }
    hf = entries["hf_trainer/checkpoint-4"]
    assert hf.is_dir and hf.format == "hf-trainer" and hf.step == 4
    files = sorted(p.name for p in (tree / "hf_trainer/checkpoint-4").iterdir())
    assert sorted(Path(p).name for p in hf.parts) == files
    assert hf.size_bytes == sum(
        p.stat().st_size for p in (tree / "hf_trainer/checkpoint-4").iterdir()
    )
    sharded = entries["safetensors/sharded/model.safetensors.index.json"]
    assert sharded.format == "safetensors"
    assert len(sharded.parts) == 4  # three shards and the index
    lightning = entries["lightning/epoch=3-step=16.ckpt"]
    assert (lightning.format, lightning.epoch, lightning.step) == ("lightning", 3, 16)
    assert entries["lightning/last.ckpt"].step is None
    assert entries["keras/tiny.keras"].format == "keras"


def test_symlink_is_an_alias_of_its_target(tree: Path) -> None:
    entries = {e.name: e for e in list_checkpoints(tree)}
    assert "torch/best.pt" not in entries
    assert entries["torch/training_zip.pth"].aliases == ["torch/best.pt"]


def test_broken_symlink_is_listed_with_an_error(tree: Path) -> None:
    (tree / "torch/gone.pt").symlink_to("deleted.pt")
    entry = next(e for e in list_checkpoints(tree) if e.name == "torch/gone.pt")
    assert entry.error is not None and entry.error.startswith("broken symlink")


def test_newest_first(tree: Path) -> None:
    now = time.time()
    for age, name in enumerate(
        ["torch/state_dict_zip.pt", "keras/tiny.keras", "lightning/last.ckpt"]
    ):
        os.utime(tree / name, (now - 10 * age, now - 10 * age))
    names = [e.name for e in list_checkpoints(tree)]
    assert names[:3] == ["torch/state_dict_zip.pt", "keras/tiny.keras", "lightning/last.ckpt"]
    modified = [e.modified for e in list_checkpoints(tree)]
    assert modified == sorted(modified, reverse=True)


def test_missing_directory() -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        list_checkpoints(Path("/nonexistent/ckpts"))


@pytest.mark.parametrize(
    ("name", "step", "epoch", "metrics"),
    [
        ("epoch=3-step=16.ckpt", 16, 3, {}),
        ("epoch=2-val_loss=0.31.ckpt", None, 2, {"val_loss": 0.31}),
        ("checkpoint-500", 500, None, {}),
        ("epoch_7.pt", None, 7, {}),
        ("model_step1000.pt", 1000, None, {}),
        ("ckpt-step000120.json", 120, None, {}),
        ("last.ckpt", None, None, {}),
        ("ep12_it300.pth", 300, 12, {}),
        ("model-00001-of-00003.safetensors", None, None, {}),
    ],
)
def test_parse_name(
    name: str, step: int | None, epoch: int | None, metrics: dict[str, float]
) -> None:
    assert parse_name(name) == (step, epoch, metrics)


@dataclass
class FakeRemoteFile:
    path: str
    size: int
    mtime: float
    is_dir: bool = False
    link_target: str | None = None


def _remote_file_type() -> type:
    try:
        from runctl_tui.core.ssh import RemoteFile

        return RemoteFile  # type: ignore[no-any-return]
    except ImportError:
        return FakeRemoteFile


def test_classify_remote_listing() -> None:
    remote = _remote_file_type()
    files = [
        remote("/workspace/out", 0, 1.0, True, None),
        remote("/workspace/out/checkpoint-10", 0, 5.0, True, None),
        remote("/workspace/out/checkpoint-10/model.safetensors", 100, 5.0, False, None),
        remote("/workspace/out/checkpoint-10/trainer_state.json", 10, 6.0, False, None),
        remote("/workspace/out/checkpoint-20/model.safetensors", 100, 9.0, False, None),
        remote("/workspace/out/epoch=1-step=5.ckpt", 50, 3.0, False, None),
        remote("/workspace/out/best.ckpt", 50, 3.0, False, "epoch=1-step=5.ckpt"),
        remote("/workspace/out/train.log", 5, 9.0, False, None),
    ]
    entries = classify_remote(files, "/workspace/out")
    assert [e.name for e in entries] == ["checkpoint-20", "checkpoint-10", "epoch=1-step=5.ckpt"]
    assert all(e.location == "ssh" for e in entries)
    assert entries[1].size_bytes == 110 and entries[1].modified == 6.0 and entries[1].step == 10
    assert entries[2].aliases == ["best.ckpt"]
    assert entries[2].path == "/workspace/out/epoch=1-step=5.ckpt"


def test_write_tracker_marks_a_growing_file(tmp_path: Path) -> None:
    path = tmp_path / "epoch=1-step=10.ckpt"
    path.write_bytes(b"x" * 10)
    tracker = WriteTracker()
    first = tracker.observe(list_checkpoints(tmp_path))
    assert not first[0].writing
    with open(path, "ab") as handle:
        handle.write(b"y" * 10)
    second = tracker.observe(list_checkpoints(tmp_path))
    assert second[0].writing
    third = tracker.observe(list_checkpoints(tmp_path))
    assert not third[0].writing


def test_temporary_names_are_being_written(tmp_path: Path) -> None:
    (tmp_path / "tmp-checkpoint-30").mkdir()
    (tmp_path / "tmp-checkpoint-30" / "model.safetensors").write_bytes(b"12345678")
    (tmp_path / "model.pt.tmp").write_bytes(b"partial")
    entries = {e.name: e for e in list_checkpoints(tmp_path)}
    assert entries["tmp-checkpoint-30"].writing
    assert entries["model.pt.tmp"].writing


def test_listing_stats_only_checkpoint_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(50):
        (tmp_path / f"step_{i}.pt").write_bytes(b"")
        (tmp_path / f"log_{i}.txt").write_bytes(b"")
    calls: list[str] = []
    original = os.DirEntry.stat
    real_scandir = os.scandir

    class CountingScandir:
        def __init__(self, path: str) -> None:
            self._it = real_scandir(path)

        def __enter__(self) -> CountingScandir:
            return self

        def __exit__(self, *exc: object) -> None:
            self._it.close()

        def __iter__(self) -> CountingScandir:
            return self

        def __next__(self) -> object:
            entry = next(self._it)

            class Counted:
                name = entry.name
                path = entry.path

                def is_file(self, follow_symlinks: bool = True) -> bool:
                    return entry.is_file(follow_symlinks=follow_symlinks)

                def is_symlink(self) -> bool:
                    return entry.is_symlink()

                def is_dir(self, follow_symlinks: bool = True) -> bool:
                    return entry.is_dir(follow_symlinks=follow_symlinks)

                def stat(self, follow_symlinks: bool = True) -> os.stat_result:
                    calls.append(entry.name)
                    return original(entry, follow_symlinks=follow_symlinks)

            return Counted()

    import runctl_tui.core.checkpoints.discovery as discovery

    monkeypatch.setattr(discovery.os, "scandir", CountingScandir)
    entries = list_checkpoints(tmp_path)
    assert len(entries) == 50
    assert sorted(calls) == sorted(f"step_{i}.pt" for i in range(50))
