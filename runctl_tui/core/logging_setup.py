"""runctl's own structured log: JSON lines in a rotating file, secrets scrubbed from every record.

Nothing is ever written to the terminal by this logger, so the dashboard's screen stays clean.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import time
from pathlib import Path

from runctl_tui.core import paths
from runctl_tui.core.secrets import register_env_secrets, scrub

LOGGER_NAME = "runctl"
_MAX_BYTES = 5 * 1024 * 1024
_BACKUPS = 3


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and exception text if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        extra = getattr(record, "data", None)
        if isinstance(extra, dict):
            entry["data"] = extra
        return scrub(json.dumps(entry, default=str, ensure_ascii=False))


class RedactingFilter(logging.Filter):
    """Scrubs registered secrets from a record's message and arguments before formatting."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(str(record.msg))
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(scrub(a) if isinstance(a, str) else a for a in args)
        return True


def configure_logging(verbose: int = 0, log_path: Path | None = None) -> Path:
    """Send the `runctl` logger to a rotating JSON-lines file and return its path.

    Args:
        verbose: Each step raises detail (0: INFO, 1+: DEBUG). `RUNCTL_LOG_LEVEL` also sets it.
        log_path: Where to write; default `$XDG_STATE_HOME/runctl/runctl.log`.
    """
    register_env_secrets()
    path = log_path or paths.log_file()
    logger = logging.getLogger(LOGGER_NAME)
    level_name = os.environ.get("RUNCTL_LOG_LEVEL", "").upper()
    level = logging.DEBUG if verbose else getattr(logging, level_name, logging.INFO)
    logger.setLevel(level)
    logger.propagate = False
    for old in list(logger.handlers):
        if isinstance(old, logging.handlers.RotatingFileHandler):
            logger.removeHandler(old)
            old.close()
    handler: logging.Handler
    try:
        paths.ensure_dir(path.parent)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=_MAX_BYTES, backupCount=_BACKUPS, encoding="utf-8"
        )
    except OSError:
        handler = logging.NullHandler()  # A read-only home must not stop the tool.
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    return path


def get_logger(name: str) -> logging.Logger:
    """A child of the `runctl` logger, e.g. `get_logger("runpod")` -> `runctl.runpod`."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}")
