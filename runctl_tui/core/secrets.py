"""Keeping secrets off screens, logs and exception text.

Every secret the process learns (from config or the environment) is registered here; `scrub`
replaces any registered value in a string, and `redact` renders one value for display.
"""

from __future__ import annotations

import os
import threading

#: Environment variables whose values are secrets wherever they appear.
SECRET_ENV_VARS = (
    "RUNPOD_API_KEY",
    "RUNCTL_RUNPOD_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
)

_MIN_SECRET_LENGTH = 4
_lock = threading.Lock()
_secrets: set[str] = set()


def redact(value: str) -> str:
    """Show a secret as `****abcd` (its last four characters), or `****` when short or empty."""
    if len(value) <= 8:
        return "****" if value else ""
    return "****" + value[-4:]


def register_secret(value: str | None) -> None:
    """Remember `value` so that `scrub` removes it from any text from now on."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def register_env_secrets(environ: dict[str, str] | None = None) -> None:
    """Register the values of the well-known secret environment variables."""
    env = os.environ if environ is None else environ
    for name in SECRET_ENV_VARS:
        register_secret(env.get(name))


def scrub(text: str) -> str:
    """Return `text` with every registered secret replaced by its redacted form."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, redact(secret))
    return text
