"""Fixtures every test gets: an isolated home, so no developer's config, state or keys leak in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sshd_fixture import sshd_server  # noqa: F401

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point HOME and the XDG directories at a fresh folder and drop runctl/cloud variables."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_DATA_HOME", ".local/share"),
    ):
        monkeypatch.setenv(name, str(home / sub))
    import os

    for name in list(os.environ):
        if name.startswith(("RUNCTL_", "RUNPOD_", "AWS_")):
            monkeypatch.delenv(name, raising=False)
    # boto3 must never find real credentials or reach AWS from a test.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config-absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials-absent"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home


@pytest.fixture
def data_dir() -> Path:
    """The committed sample artifacts (see tests/data/README.md for how each was made)."""
    return DATA_DIR
