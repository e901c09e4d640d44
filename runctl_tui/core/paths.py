"""Where runctl keeps its files, following the XDG base directory specification."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "runctl"


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable, "")
    # The spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value) / APP_NAME
    return Path.home() / fallback / APP_NAME


def config_dir() -> Path:
    """`$XDG_CONFIG_HOME/runctl` (default `~/.config/runctl`)."""
    return _xdg("XDG_CONFIG_HOME", ".config")


def state_dir() -> Path:
    """`$XDG_STATE_HOME/runctl` (default `~/.local/state/runctl`): run registry and logs."""
    return _xdg("XDG_STATE_HOME", ".local/state")


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/runctl` (default `~/.cache/runctl`)."""
    return _xdg("XDG_CACHE_HOME", ".cache")


def user_config_file() -> Path:
    """The per-user configuration file."""
    return config_dir() / "config.toml"


def project_config_file() -> Path:
    """The per-project configuration file in the working directory."""
    return Path.cwd() / ".runctl.toml"


def log_file() -> Path:
    """runctl's own structured log (JSON lines, rotated)."""
    return state_dir() / "runctl.log"


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    """Create `path` (and parents) if missing, private to the user; return it."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    return path
