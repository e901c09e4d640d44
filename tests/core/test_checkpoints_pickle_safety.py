"""A malicious checkpoint is reported, never executed, in every container torch uses."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from runctl_tui.core.checkpoints import inspect_checkpoint
from runctl_tui.core.checkpoints.pickle_reader import RestrictedUnpickler

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "checkpoints"


class CallsOsSystem:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class CallsEval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class CallsSubprocess:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (subprocess.call, (["touch", str(self.marker)],))


PAYLOADS = [CallsOsSystem, CallsEval, CallsSubprocess]
EXPECTED_NAME = {
    CallsOsSystem: os.system.__module__ + ".system",
    CallsEval: "builtins.eval",
    CallsSubprocess: "subprocess.call",
}


def _evil_state_dict(payload: Any) -> dict[str, Any]:
    # Hidden among ordinary values, as a poisoned "model" would be.
    return {"epoch": 3, "loss": 0.5, "state_dict": {"w": payload}}


def _zip_with_data_pkl(src: Path, dst: Path, data_pkl: bytes) -> None:
    """Copy a real torch zip, replacing its data.pkl (what an attacker edits)."""
    with zipfile.ZipFile(src) as original, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        for item in original.infolist():
            data = data_pkl if item.filename.endswith("/data.pkl") else original.read(item)
            out.writestr(item, data)


def _legacy_with_pickle(src: Path, dst: Path, body: bytes) -> None:
    """A real legacy file's magic, protocol and sys-info pickles, then the attacker's pickle."""
    raw = src.read_bytes()
    stream = io.BytesIO(raw)
    for _ in range(3):
        RestrictedUnpickler(stream).load()  # the three header pickles: ints and a dict
    dst.write_bytes(raw[: stream.tell()] + body + pickle.dumps([], protocol=2))


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("container", ["plain", "zip", "legacy", "lightning"])
def test_malicious_pickle_is_reported_not_executed(
    payload: type, container: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    body = pickle.dumps(_evil_state_dict(payload(marker)), protocol=2)
    if container == "plain":
        path = tmp_path / "evil.pt"
        path.write_bytes(body)
    elif container == "zip":
        path = tmp_path / "evil.pth"
        _zip_with_data_pkl(SAMPLES / "torch/training_zip.pth", path, body)
    elif container == "lightning":
        path = tmp_path / "epoch=1-step=2.ckpt"
        _zip_with_data_pkl(SAMPLES / "lightning/last.ckpt", path, body)
    else:
        path = tmp_path / "evil_legacy.pt"
        _legacy_with_pickle(SAMPLES / "torch/state_dict_legacy.pt", path, body)

    info = inspect_checkpoint(path)

    assert not marker.exists(), "the pickle's code ran"
    assert info.error is not None
    assert info.error.startswith("unsafe: the pickle tries to call"), info.error
    assert EXPECTED_NAME[payload] in info.refused
    assert "ran nothing" in info.error


def test_refused_globals_are_never_imported() -> None:
    # `this` prints the Zen of Python when imported: a module nobody has loaded yet.
    if "this" in sys.modules:
        pytest.skip("`this` already imported in this process")
    body = b"\x80\x02cthis\nThing\nq\x00)\x81q\x01."  # NEWOBJ of this.Thing
    unpickler = RestrictedUnpickler(io.BytesIO(body))
    result = unpickler.load()
    assert "this" not in sys.modules
    assert unpickler.refused == ["this.Thing"]
    assert repr(result) == "<refused this.Thing>"


def test_harmless_unknown_class_is_refused_but_the_rest_is_read() -> None:
    # A real Trainer training_args.bin pickles transformers classes: refused, not imported,
    # reported as an error sentence that says nothing was run.
    info = inspect_checkpoint(SAMPLES / "hf_trainer/checkpoint-2/training_args.bin")
    assert "transformers.training_args.TrainingArguments" in info.refused
    assert info.error is not None
    assert info.error.startswith("refused to import transformers.training_args.TrainingArguments")
    assert "transformers" not in sys.modules


def test_numpy_and_rng_state_read_without_refusals() -> None:
    info = inspect_checkpoint(SAMPLES / "hf_trainer/checkpoint-2/rng_state.pth")
    assert info.error is None
    assert info.refused == []
    assert set(info.keys) >= {"python", "numpy", "cpu"}


def test_inspector_imports_no_ml_library() -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from runctl_tui.core.checkpoints import inspect_checkpoint, list_checkpoints\n"
        f"root = Path({str(SAMPLES)!r})\n"
        "for entry in list_checkpoints(root):\n"
        "    inspect_checkpoint(Path(entry.path))\n"
        "inspect_checkpoint(root / 'hf_trainer/checkpoint-2/rng_state.pth')\n"
        "bad = [m for m in ('torch', 'numpy', 'safetensors', 'transformers', 'keras', 'lightning', "
        "'h5py') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_allowed_constructors_cannot_allocate_huge_buffers(tmp_path: Path) -> None:
    # bytearray(N) from the file would zero-fill N bytes: refused, never allocated.
    body = b"\x80\x02c__builtin__\nbytearray\nq\x00\x8a\x05\x00\x00\x00\x00\x10\x85q\x01Rq\x02."
    path = tmp_path / "bomb.pt"
    path.write_bytes(body)
    info = inspect_checkpoint(path)
    assert info.error is not None
    assert "refused bytearray()" in info.error
