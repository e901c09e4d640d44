"""What the dashboard remembers between sessions: the last selection and the last train form.

A small JSON file in the XDG state dir (`dashboard.json`), written atomically; an unreadable or
corrupt file is treated as empty (losing a remembered selection must never stop the dashboard).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runctl_tui.core import paths


def default_state_path() -> Path:
    """`$XDG_STATE_HOME/runctl/dashboard.json`."""
    return paths.state_dir() / "dashboard.json"


@dataclass
class TrainFormValues:
    """The last values of the train form."""

    script: str = ""
    args: str = ""
    checkpoint_dir: str = ""


@dataclass
class SessionState:
    """Remembered dashboard state."""

    selected: str = ""
    """Key of the selected machine (`local:local`, `runpod:abc`)."""
    train: TrainFormValues = field(default_factory=TrainFormValues)


def load_session_state(path: Path | None = None) -> SessionState:
    """Read the remembered state; missing or broken files give the defaults.

    Args:
        path: The file (default `default_state_path()`).

    Returns:
        The state.
    """
    target = path or default_state_path()
    try:
        data: Any = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return SessionState()
    if not isinstance(data, dict):
        return SessionState()
    train = data.get("train") if isinstance(data.get("train"), dict) else {}
    assert isinstance(train, dict)
    return SessionState(
        selected=str(data.get("selected", "")),
        train=TrainFormValues(
            script=str(train.get("script", "")),
            args=str(train.get("args", "")),
            checkpoint_dir=str(train.get("checkpoint_dir", "")),
        ),
    )


def save_session_state(state: SessionState, path: Path | None = None) -> None:
    """Write the state atomically (temp file + rename), private to the user.

    Args:
        state: What to remember.
        path: The file (default `default_state_path()`).
    """
    target = path or default_state_path()
    paths.ensure_dir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=".dashboard-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(state), handle, indent=2)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
