"""Checkpoints: find them (local, SSH, S3), inspect them safely, rank them, clean them up.

Nothing here imports torch or unpickles with the standard unpickler: checkpoints are untrusted
input (see `pickle_reader`).
"""

from __future__ import annotations

from runctl_tui.core.checkpoints.best import BestChoice, find_best
from runctl_tui.core.checkpoints.cleanup import (
    CleanupPlan,
    CleanupResult,
    execute_cleanup,
    plan_cleanup,
)
from runctl_tui.core.checkpoints.discovery import (
    FileFact,
    classify,
    classify_remote,
    list_checkpoints,
    list_s3_checkpoints,
    parse_name,
)
from runctl_tui.core.checkpoints.inspect import InspectCache, fill_from_headers, inspect_checkpoint
from runctl_tui.core.checkpoints.records import FORMATS, CheckpointEntry, CheckpointInfo
from runctl_tui.core.checkpoints.writing import WriteTracker, open_for_writing

__all__ = [
    "FORMATS",
    "BestChoice",
    "CheckpointEntry",
    "CheckpointInfo",
    "CleanupPlan",
    "CleanupResult",
    "FileFact",
    "InspectCache",
    "WriteTracker",
    "classify",
    "classify_remote",
    "execute_cleanup",
    "fill_from_headers",
    "find_best",
    "inspect_checkpoint",
    "list_checkpoints",
    "list_s3_checkpoints",
    "open_for_writing",
    "parse_name",
    "plan_cleanup",
]
