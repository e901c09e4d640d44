"""Small programs runctl copies to an instance and runs there, beside the training process.

They use only the standard library and boto3 and never import the rest of runctl_tui, so they
run with whatever Python the instance has (`[aws] agent_python`).
"""

from __future__ import annotations

from pathlib import Path

AGENT_FILES = ("s3_sync.py", "spot_watcher.py")


def agent_dir() -> Path:
    """The folder holding the agent scripts in this installation."""
    return Path(__file__).resolve().parent
