"""runctl's own demo checkpoints: `ckpt-*.json` written by `runctl_tui/examples/train_demo.py`.

A JSON object with `"runctl_demo_checkpoint": 1` and step/epoch/loss keys; nothing else claims
that marker, so any other JSON file is not ours.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runctl_tui.core.checkpoints.pickle_reader import CheckpointReadError

MARKER = "runctl_demo_checkpoint"
MAX_BYTES = 16 * 1024 * 1024


def read_demo(path: Path) -> dict[str, Any]:
    """The demo checkpoint's JSON object.

    Raises:
        CheckpointReadError: Truncated or not a runctl demo checkpoint.
    """
    with open(path, "rb") as handle:
        raw = handle.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise CheckpointReadError("refused: a demo checkpoint is never this large")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointReadError(f"truncated or corrupt JSON: {exc}") from None
    if not isinstance(document, dict) or document.get(MARKER) != 1:
        raise CheckpointReadError(f'not a runctl demo checkpoint: no "{MARKER}": 1 key')
    return document
