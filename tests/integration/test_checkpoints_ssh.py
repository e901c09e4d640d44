"""A remote checkpoint folder over real SSH (one listing round trip) looks like the local one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runctl_tui.core.checkpoints import classify_remote, list_checkpoints

ssh = pytest.importorskip("runctl_tui.core.ssh")

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "checkpoints"


def _fields(entries: list) -> list[tuple[object, ...]]:  # type: ignore[type-arg]
    return sorted(
        (e.name, e.format, e.size_bytes, e.step, e.epoch, tuple(e.aliases), len(e.parts), e.is_dir)
        for e in entries
    )


async def test_remote_listing_matches_local(sshd_server: object, tmp_path: Path) -> None:
    root = tmp_path / "run"
    shutil.copytree(SAMPLES / "lightning", root / "lightning")
    shutil.copytree(SAMPLES / "torch", root / "torch", symlinks=True)
    shutil.copytree(SAMPLES / "hf_trainer/checkpoint-4", root / "out/checkpoint-4")
    shutil.copytree(SAMPLES / "safetensors/sharded", root / "sharded")
    (root / "train.log").write_text("not a checkpoint\n")
    local = list_checkpoints(root)
    async with await ssh.SshSession.connect(sshd_server.endpoint) as session:  # type: ignore[attr-defined]
        files = await session.list_files(str(root))
    remote = classify_remote(files, str(root))
    assert _fields(remote) == _fields(local)
    assert all(e.location == "ssh" for e in remote)
    by_name = {e.name: e for e in remote}
    assert by_name["torch/training_zip.pth"].aliases == ["torch/best.pt"]
    assert by_name["out/checkpoint-4"].step == 4
    for entry in local:
        assert by_name[entry.name].modified == pytest.approx(entry.modified, abs=1.0)
