"""The exceptions the core raises: each carries a sentence a user can act on."""

from __future__ import annotations

from pathlib import Path


class RunctlError(Exception):
    """An operation failed; the message says what failed and what to do next.

    The CLI prints the message and exits 1; the dashboard shows it in the pane that failed.
    Messages never contain secrets (see `runctl_tui.core.secrets`).
    """


class ConfigError(RunctlError):
    """A configuration file or variable is invalid.

    Attributes:
        path: The file (or `env:NAME` pseudo-path) the problem is in, if known.
        line: 1-based line of the problem, if known.
        column: 1-based column of the problem, if known.
    """

    def __init__(
        self,
        message: str,
        path: Path | str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.reason = message
        self.path = path
        self.line = line
        self.column = column
        super().__init__(self.location_prefix() + message)

    def location_prefix(self) -> str:
        """`path:line:col: ` (as far as known), the form editors and compilers use."""
        if self.path is None:
            return ""
        parts = [str(self.path)]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts) + ": "


class NotFoundError(RunctlError):
    """A run, machine, checkpoint or file that was named does not exist."""


class BackendError(RunctlError):
    """A provider (RunPod, AWS, SSH) refused or failed a request."""
