"""What every subcommand shares: exit codes, the lazily loaded config, output helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runctl_tui.core.config import Config, load_config
from runctl_tui.core.secrets import scrub

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3


@dataclass
class Context:
    """Per-invocation state handed to every command handler."""

    config_path: str | None = None
    log_path: Path | None = None
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        """The effective configuration, loaded on first use (warnings go to stderr once)."""
        if self._config is None:
            self._config = load_config(self.config_path)
            for warning in self._config.warnings:
                warn(warning)
        return self._config


def warn(message: str) -> None:
    """Print a warning line to stderr."""
    print(f"runctl: warning: {scrub(message)}", file=sys.stderr)


def fail(message: str, code: int = EXIT_FAILURE) -> int:
    """Print an error sentence to stderr and return `code`, for `return fail(...)`."""
    print(f"runctl: error: {scrub(message)}", file=sys.stderr)
    return code


def print_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout (secrets scrubbed)."""
    print(scrub(json.dumps(data, indent=2, default=str, ensure_ascii=False)))
