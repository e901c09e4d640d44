"""Read a safetensors file's header: an 8-byte little-endian length, then that much JSON.

Nothing past the header is read, so a multi-GB file costs one small read. The header is
checked against the file's size, which is how a truncated file is recognised.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runctl_tui.core.checkpoints.pickle_reader import CheckpointReadError

MAX_HEADER_BYTES = 100 * 1024 * 1024
"""The safetensors library's own limit on the JSON header."""

DTYPE_NAMES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}
"""safetensors dtype codes -> the torch names every other format reports."""


@dataclass
class SafetensorsHeader:
    """The tensors a safetensors file declares and its free-form `__metadata__`."""

    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    """name -> (dtype, shape)."""
    metadata: dict[str, str] = field(default_factory=dict)
    data_bytes: int = 0
    """Size of the data section the header declares."""

    @property
    def parameter_count(self) -> int:
        """Total elements across all tensors."""
        total = 0
        for _, shape in self.tensors.values():
            count = 1
            for dim in shape:
                count *= dim
            total += count
        return total

    def dtype_counts(self) -> dict[str, int]:
        """dtype (torch's name, e.g. `float16`) -> number of tensors of that dtype."""
        counts: dict[str, int] = {}
        for code, _ in self.tensors.values():
            dtype = DTYPE_NAMES.get(code, code.lower())
            counts[dtype] = counts.get(dtype, 0) + 1
        return counts


def read_header(path: Path) -> SafetensorsHeader:
    """Parse the header of the safetensors file at `path`.

    Args:
        path: The `.safetensors` file.

    Returns:
        The declared tensors and metadata.

    Raises:
        CheckpointReadError: The file is truncated or its header is not valid safetensors.
    """
    with open(path, "rb") as handle:
        raw_length = handle.read(8)
        if len(raw_length) < 8:
            raise CheckpointReadError(
                "truncated: the file is shorter than the 8-byte safetensors header length"
            )
        (length,) = struct.unpack("<Q", raw_length)
        if length > MAX_HEADER_BYTES:
            raise CheckpointReadError(
                f"corrupt: safetensors header length {length} is not plausible "
                "(not a safetensors file, or its first bytes are damaged)"
            )
        raw = handle.read(length)
        handle.seek(0, 2)
        file_size = handle.tell()
    if len(raw) < length:
        raise CheckpointReadError(
            f"truncated: the safetensors header needs {length} bytes but the file ends after "
            f"{len(raw)}"
        )
    header = parse_header_bytes(raw)
    available = file_size - 8 - length
    if header.data_bytes > available:
        raise CheckpointReadError(
            f"truncated: tensor data should end at byte {8 + length + header.data_bytes} but "
            f"the file has {file_size} bytes"
        )
    return header


def parse_header_bytes(raw: bytes) -> SafetensorsHeader:
    """Parse the JSON header bytes of a safetensors file (without the length prefix).

    Raises:
        CheckpointReadError: The JSON is invalid or an entry is malformed.
    """
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointReadError(
            f"corrupt: the safetensors header is not valid JSON ({exc})"
        ) from None
    if not isinstance(document, dict):
        raise CheckpointReadError("corrupt: the safetensors header is not a JSON object")
    header = SafetensorsHeader()
    for name, entry in document.items():
        if name == "__metadata__":
            if isinstance(entry, dict):
                header.metadata = {str(k): str(v) for k, v in entry.items()}
            continue
        dtype, shape, end = _entry(name, entry)
        header.tensors[name] = (dtype, shape)
        header.data_bytes = max(header.data_bytes, end)
    return header


def _entry(name: str, entry: Any) -> tuple[str, tuple[int, ...], int]:
    if not isinstance(entry, dict):
        raise CheckpointReadError(f"corrupt: safetensors entry {name!r} is not an object")
    dtype = entry.get("dtype")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if (
        not isinstance(dtype, str)
        or not isinstance(shape, list)
        or not all(isinstance(d, int) and d >= 0 for d in shape)
        or not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and o >= 0 for o in offsets)
        or offsets[1] < offsets[0]
    ):
        raise CheckpointReadError(
            f"corrupt: safetensors entry {name!r} lacks a valid dtype, shape or data_offsets"
        )
    return dtype, tuple(shape), offsets[1]


def read_index(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Read a sharded model's `*.safetensors.index.json`: (tensor -> shard file, metadata).

    Raises:
        CheckpointReadError: The index is not valid JSON or has no weight_map.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointReadError(f"corrupt: the shard index is not valid JSON ({exc})") from None
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointReadError("corrupt: the shard index has no weight_map")
    metadata = document.get("metadata")
    return {str(k): str(v) for k, v in weight_map.items()}, (
        metadata if isinstance(metadata, dict) else {}
    )
