"""The plain data of the checkpoint browser: a listed checkpoint and an inspected one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

FORMATS = (
    "safetensors",
    "torch-zip",
    "torch-legacy",
    "lightning",
    "hf-trainer",
    "keras",
    "runctl-demo",
)
"""Formats `inspect_checkpoint` reports. A listing may also say `torch` (zip or legacy is only
known once the first bytes are read)."""


@dataclass(slots=True)
class CheckpointEntry:
    """One checkpoint found by a listing (local, SSH or S3); only names and stat data."""

    path: str
    """Local path, remote path, or `s3://bucket/key`."""
    name: str
    """Path relative to the listed root (what the browser shows)."""
    format: str
    size_bytes: int
    modified: float
    """Epoch seconds of the newest file in the checkpoint."""
    step: int | None = None
    epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    """Metrics written into the name (Lightning's `val_loss=0.12`)."""
    aliases: list[str] = field(default_factory=list)
    """Names of symlinks in the listing that point here (`best.pt -> epoch_7.pt`)."""
    parts: list[str] = field(default_factory=list)
    """Every file that belongs to this checkpoint (shards, index, a directory's files)."""
    is_dir: bool = False
    location: str = "local"
    """`local`, `ssh` or `s3`."""
    link_target: str | None = None
    """Set when the entry itself is a symlink to something outside the listing."""
    writing: bool = False
    """True while the checkpoint's size is still changing (a run is writing it)."""
    error: str | None = None
    """Why the entry cannot be used (a broken symlink), else None."""
    best: bool = False
    best_reason: str = ""

    def modified_iso(self) -> str:
        """`modified` as ISO 8601 in UTC."""
        return dt.datetime.fromtimestamp(self.modified, tz=dt.timezone.utc).isoformat()

    def to_json(self) -> dict[str, Any]:
        """The `runctl checkpoint list --json` object."""
        return {
            "path": self.path,
            "name": self.name,
            "format": self.format,
            "size_bytes": self.size_bytes,
            "modified": self.modified_iso(),
            "step": self.step,
            "epoch": self.epoch,
            "best": self.best,
            "metrics": self.metrics,
            "aliases": self.aliases,
            "location": self.location,
            "writing": self.writing,
            "error": self.error,
        }


@dataclass
class CheckpointInfo:
    """What `inspect_checkpoint` learned from a file's headers, never from its tensor data."""

    path: str
    format: str
    size_bytes: int
    tensor_count: int | None = None
    parameter_count: int | None = None
    """Elements of the model weights only (the state dict), not optimizer state."""
    dtypes: dict[str, int] = field(default_factory=dict)
    epoch: int | float | None = None
    step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    best_record: dict[str, Any] = field(default_factory=dict)
    """The format's own record of the best checkpoint: `path`, `score`, `monitor`, `mode`."""
    refused: list[str] = field(default_factory=list)
    """Globals the pickle named that the reader refused (and never imported)."""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `runctl checkpoint inspect --json` object."""
        return {
            "path": self.path,
            "format": self.format,
            "size_bytes": self.size_bytes,
            "tensor_count": self.tensor_count,
            "parameter_count": self.parameter_count,
            "dtypes": self.dtypes,
            "epoch": self.epoch,
            "step": self.step,
            "metrics": self.metrics,
            "keys": self.keys,
            "metadata": self.metadata,
            "best_record": self.best_record,
            "refused": self.refused,
            "error": self.error,
        }
