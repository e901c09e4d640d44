"""inspect_checkpoint against files written by the real libraries, ground truth from them."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from runctl_tui.core.checkpoints import inspect_checkpoint

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "checkpoints"
TRUTH: dict[str, dict[str, Any]] = json.loads((SAMPLES / "ground_truth.json").read_text())


def test_ground_truth_covers_every_format() -> None:
    formats = {facts["format"] for facts in TRUTH.values()}
    assert formats == {
        "torch-zip",
        "torch-legacy",
        "safetensors",
        "lightning",
        "hf-trainer",
        "keras",
    }


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_inspect_matches_library_ground_truth(name: str) -> None:
    facts = TRUTH[name]
    info = inspect_checkpoint(SAMPLES / name)
    assert info.error is None, info.error
    assert info.format == facts["format"]
    if facts["format"] == "keras":
        # Weights live in an HDF5 member runctl does not open; the archive's JSON says the rest.
        assert info.metadata["keras_version"] == facts["keras_version"]
        assert info.metadata["model"]["name"] == facts["model_name"]
        assert len(info.metadata["model"]["layers"]) == facts["layer_count"]
        assert info.parameter_count is None
        return
    assert info.parameter_count == facts["parameter_count"]
    for key in ("tensor_count", "dtypes", "epoch", "step", "metadata"):
        if key in facts:
            assert getattr(info, key) == facts[key], key
    if "keys" in facts:
        assert sorted(info.keys) == facts["keys"]
    for metric, value in facts.get("metrics", {}).items():
        assert info.metrics[metric] == pytest.approx(value)
    if facts["format"] == "lightning":
        assert info.best_record["name"] == facts["best_model_path_name"]
        assert info.best_record["score"] == pytest.approx(facts["best_model_score"])
        assert info.best_record["monitor"] == "val_loss"
        assert info.best_record["mode"] == "min"
        assert info.metrics["val_loss"] == pytest.approx(facts["current_score"])
        assert info.metadata["lightning_version"] == facts["lightning_version"]
    if facts["format"] == "hf-trainer":
        assert info.best_record["name"] == facts["best_model_checkpoint_name"]
        assert info.best_record["score"] == pytest.approx(facts["best_metric"])
        assert info.keys == facts["files"]
        assert "eval_runtime" not in info.metrics  # timings are not metrics
        if facts["best_model_checkpoint_name"] == Path(name).name:
            # The best checkpoint's own eval_loss is the Trainer's best_metric.
            assert info.metrics["eval_loss"] == pytest.approx(facts["best_metric"])
    if "shards" in facts:
        assert info.metadata["shards"] == facts["shards"]


def test_parameter_count_excludes_optimizer_state() -> None:
    training = inspect_checkpoint(SAMPLES / "torch/training_zip.pth")
    weights_only = inspect_checkpoint(SAMPLES / "torch/state_dict_zip.pt")
    # Adam keeps two moments per weight: counting them would triple the figure.
    assert training.parameter_count == weights_only.parameter_count
    assert "optimizer_state_dict" in training.keys


def test_a_shard_inspects_as_its_whole_model() -> None:
    shard = inspect_checkpoint(SAMPLES / "safetensors/sharded/model-00002-of-00003.safetensors")
    truth = TRUTH["safetensors/sharded/model.safetensors.index.json"]
    assert shard.parameter_count == truth["parameter_count"]


def test_symlink_inspects_as_its_target() -> None:
    alias = inspect_checkpoint(SAMPLES / "torch/best.pt")
    assert alias.step == TRUTH["torch/training_zip.pth"]["step"]


def test_runctl_demo_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ckpt-step000120.json"
    path.write_text(
        json.dumps(
            {
                "runctl_demo_checkpoint": 1,
                "step": 120,
                "epoch": 2,
                "loss": 0.5,
                "val_loss": 0.4,
                "best_val_loss": 0.4,
                "best_path": "ckpt-step000120.json",
                "weights": [0.1, 0.2, 0.3],
                "bias": 0.0,
                "created": 1.0,
            }
        )
    )
    info = inspect_checkpoint(path)
    assert info.error is None
    assert (info.format, info.step, info.epoch) == ("runctl-demo", 120, 2)
    assert info.metrics == {"loss": 0.5, "val_loss": 0.4, "best_val_loss": 0.4}
    assert info.parameter_count == 4
    other = tmp_path / "ckpt-other.json"
    other.write_text(json.dumps({"step": 1}))
    assert "not a runctl demo checkpoint" in (inspect_checkpoint(other).error or "")


# ---- truncated and corrupt files: an error sentence, never an exception -------------------


def _cut(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("torch/training_zip.pth", "truncated: zip central directory missing"),
        ("lightning/last.ckpt", "truncated: zip central directory missing"),
        ("keras/tiny.keras", "truncated: zip central directory missing"),
        ("torch/training_legacy.pth", "truncated"),
        ("torch/state_dict_legacy.pt", "truncated"),
        ("safetensors/model.safetensors", "truncated"),
    ],
)
def test_file_cut_in_half_reports_truncation(sample: str, expected: str, tmp_path: Path) -> None:
    path = _cut(SAMPLES / sample, tmp_path / Path(sample).name)
    info = inspect_checkpoint(path)
    assert info.error is not None
    assert info.error.startswith(expected), info.error


def test_safetensors_cut_in_the_data_section(tmp_path: Path) -> None:
    src = SAMPLES / "safetensors/model.safetensors"
    path = _cut(src, tmp_path / "model.safetensors", 0.95)
    info = inspect_checkpoint(path)
    assert info.error is not None
    assert info.error.startswith("truncated: tensor data should end at byte")


def test_empty_and_garbage_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert inspect_checkpoint(empty).error == "empty file: nothing was written"
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"hello, this is not a checkpoint\n" * 10)
    assert (inspect_checkpoint(garbage).error or "").startswith("not a PyTorch file")
    bad_header = tmp_path / "bad.safetensors"
    bad_header.write_bytes((10).to_bytes(8, "little") + b"{not json}")
    assert (inspect_checkpoint(bad_header).error or "").startswith(
        "corrupt: the safetensors header"
    )


def test_flipped_byte_in_zip_member_is_a_crc_error(tmp_path: Path) -> None:
    path = tmp_path / "flipped.pth"
    shutil.copy(SAMPLES / "torch/training_zip.pth", path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("training_zip/data.pkl")
    data = bytearray(path.read_bytes())
    # The member's bytes begin after its local header (30 bytes + name + extra field).
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    error = inspect_checkpoint(path).error
    assert error is not None
    assert "CRC" in error


def test_random_byte_flips_never_crash(tmp_path: Path) -> None:
    import random

    rng = random.Random(1234)
    samples = [
        "torch/training_zip.pth",
        "torch/training_legacy.pth",
        "lightning/last.ckpt",
        "safetensors/model.safetensors",
        "keras/tiny.keras",
    ]
    errors = 0
    for sample in samples:
        original = (SAMPLES / sample).read_bytes()
        for trial in range(40):
            data = bytearray(original)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            path = tmp_path / f"{trial}-{Path(sample).name}"
            path.write_bytes(bytes(data))
            info = inspect_checkpoint(path)  # must not raise
            errors += info.error is not None
            assert info.format
    assert errors > 0


# ---- reading a big file's header reads none of its tensor data ---------------------------

TWO_GB = 2 * 1024**3


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


needs_proc_io = pytest.mark.skipif(
    not Path("/proc/self/io").exists(), reason="counts bytes read through Linux /proc/self/io"
)


def sparse_safetensors(path: Path, size: int = TWO_GB) -> None:
    """A valid safetensors file whose single tensor is `size` bytes of holes (costs no disk)."""
    header = json.dumps(
        {
            "__metadata__": {"step": "9000"},
            "weight": {"dtype": "F32", "shape": [size // 4], "data_offsets": [0, size]},
        }
    ).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as handle:
        handle.write(len(header).to_bytes(8, "little") + header)
        handle.truncate(8 + len(header) + size)


def sparse_torch_zip(path: Path, data_pkl: bytes, prefix: str, size: int = TWO_GB) -> None:
    """A torch zip holding a real data.pkl and a `size`-byte sparse storage entry.

    Written member by member like torch's writer (stored, uncompressed); the big member's
    CRC is left 0 because nothing reads its bytes, which is the point.
    """
    import struct
    import zlib

    members: list[tuple[str, bytes | int]] = [
        (f"{prefix}/data.pkl", data_pkl),
        (f"{prefix}/byteorder", b"little"),
        (f"{prefix}/data/0", size),
        (f"{prefix}/version", b"3\n"),
    ]
    central = b""
    with open(path, "wb") as handle:
        for name, payload in members:
            offset = handle.tell()
            raw_name = name.encode()
            length = payload if isinstance(payload, int) else len(payload)
            crc = 0 if isinstance(payload, int) else zlib.crc32(payload)
            handle.write(
                struct.pack(
                    "<IHHHHHIIIHH",
                    0x04034B50,
                    20,
                    0,
                    0,
                    0,
                    0x21,
                    crc,
                    length,
                    length,
                    len(raw_name),
                    0,
                )
                + raw_name
            )
            if isinstance(payload, int):
                handle.seek(payload, 1)  # a hole: no bytes written
            else:
                handle.write(payload)
            central += (
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50, 20, 20, 0, 0, 0, 0x21, crc, length, length,
                    len(raw_name), 0, 0, 0, 0, 0, offset,
                )
                + raw_name
            )  # fmt: skip
        start = handle.tell()
        handle.write(central)
        handle.write(
            struct.pack(
                "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), start, 0
            )
        )


@needs_proc_io
def test_big_safetensors_header_reads_no_tensor_data(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    sparse_safetensors(path)
    assert path.stat().st_size > TWO_GB
    inspect_checkpoint(tmp_path / "warm-up.safetensors")  # import everything before counting
    before = _bytes_read()
    info = inspect_checkpoint(path)
    read = _bytes_read() - before
    assert info.error is None, info.error
    assert info.parameter_count == TWO_GB // 4
    assert info.step == 9000
    assert read < 64 * 1024, f"read {read} bytes of a {TWO_GB}-byte file"


@needs_proc_io
def test_big_torch_zip_reads_only_data_pkl(tmp_path: Path) -> None:
    with zipfile.ZipFile(SAMPLES / "torch/state_dict_zip.pt") as archive:
        data_pkl = archive.read("state_dict_zip/data.pkl")
    path = tmp_path / "big.pt"
    sparse_torch_zip(path, data_pkl, "big")
    assert path.stat().st_size > TWO_GB
    with zipfile.ZipFile(path) as archive:  # a well-formed archive to the standard library too
        assert archive.getinfo("big/data/0").file_size == TWO_GB
    inspect_checkpoint(SAMPLES / "torch/state_dict_zip.pt")
    before = _bytes_read()
    info = inspect_checkpoint(path)
    read = _bytes_read() - before
    assert info.error is None, info.error
    assert info.format == "torch-zip"
    assert info.tensor_count == TRUTH["torch/state_dict_zip.pt"]["tensor_count"]
    assert read < 1024 * 1024, f"read {read} bytes of a {TWO_GB}-byte file"


def test_shard_index_naming_files_elsewhere_is_refused(tmp_path: Path) -> None:
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "../../etc/passwd"}}))
    info = inspect_checkpoint(index)
    assert info.error is not None
    assert "outside its folder" in info.error


def test_missing_shard_is_reported(tmp_path: Path) -> None:
    shutil.copytree(SAMPLES / "safetensors/sharded", tmp_path / "m")
    (tmp_path / "m/model-00002-of-00003.safetensors").unlink()
    info = inspect_checkpoint(tmp_path / "m/model.safetensors.index.json")
    assert info.error == "incomplete: shard model-00002-of-00003.safetensors is missing (1 of 3)"
