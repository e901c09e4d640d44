"""runctl's own log: JSON lines in the state dir, secrets scrubbed, nothing on the terminal."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from runctl_tui.core import paths
from runctl_tui.core.logging_setup import configure_logging, get_logger
from runctl_tui.core.secrets import redact, register_secret, scrub


def test_redact_shapes() -> None:
    assert redact("") == ""
    assert redact("short") == "****"
    assert redact("rpa_1234567890abcd") == "****abcd"


def test_scrub_replaces_registered_secrets() -> None:
    register_secret("sk-live-ABCDEFGHIJ0123")
    assert scrub("token sk-live-ABCDEFGHIJ0123 used") == "token ****0123 used"


def test_log_is_json_lines_and_scrubbed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "rpa_LOGGED_SECRET_987654321"
    monkeypatch.setenv("RUNPOD_API_KEY", secret)
    path = configure_logging()
    assert path == paths.log_file()
    log = get_logger("test")
    log.info("calling with key %s", secret)
    try:
        raise RuntimeError(f"failed with {secret}")
    except RuntimeError:
        log.exception("boom")
    for handler in logging.getLogger("runctl").handlers:
        handler.flush()
    records = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert records[-2]["message"] == "calling with key ****4321"
    assert records[-1]["level"] == "ERROR"
    assert secret not in Path(path).read_text()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_sets_debug() -> None:
    configure_logging(verbose=1)
    assert logging.getLogger("runctl").level == logging.DEBUG
    configure_logging(verbose=0)
    assert logging.getLogger("runctl").level == logging.INFO
