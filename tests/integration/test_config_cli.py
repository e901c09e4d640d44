"""`runctl init`, `config validate`, `config show` as a user runs them: real processes, exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import runctl


def test_version_and_help(tmp_path: Path) -> None:
    from runctl_tui import __version__

    assert runctl("--version", cwd=tmp_path).stdout.strip() == f"runctl {__version__}"
    help_text = runctl("--help", cwd=tmp_path)
    assert help_text.returncode == 0
    assert "init" in help_text.stdout and "config" in help_text.stdout


def test_usage_error_exits_2(tmp_path: Path) -> None:
    result = runctl("no-such-command", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_init_then_validate(tmp_path: Path) -> None:
    first = runctl("init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    written = tmp_path / ".runctl.toml"
    assert written.is_file()
    assert oct(written.stat().st_mode & 0o777) == "0o600"
    assert "[aws]" in written.read_text()
    again = runctl("init", cwd=tmp_path)
    assert again.returncode == 1
    assert "already exists; use --force" in again.stderr
    assert runctl("init", "--force", cwd=tmp_path).returncode == 0
    validate = runctl("config", "validate", cwd=tmp_path)
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout.startswith(f"OK: {written}")


def test_broken_toml_exits_3_with_location(tmp_path: Path) -> None:
    (tmp_path / ".runctl.toml").write_text("[ui]\nreadonly = tru\n")
    result = runctl("config", "validate", cwd=tmp_path)
    assert result.returncode == 3
    assert f"{tmp_path / '.runctl.toml'}:2:12: invalid TOML" in result.stderr


def test_unknown_key_exits_3_with_suggestion(tmp_path: Path) -> None:
    (tmp_path / ".runctl.toml").write_text("[runpod]\ngpu_typ = 'A100'\n")
    result = runctl("config", "validate", cwd=tmp_path)
    assert result.returncode == 3
    assert "unknown key 'runpod.gpu_typ'. Did you mean 'gpu_type'?" in result.stderr


def test_show_never_prints_a_secret(tmp_path: Path) -> None:
    secret = "rpa_THIS_IS_A_SECRET_KEY_0123456789"
    (tmp_path / ".runctl.toml").write_text(f"[runpod]\napi_key = '{secret}'\n")
    os.chmod(tmp_path / ".runctl.toml", 0o644)
    shown = runctl("config", "show", cwd=tmp_path)
    assert shown.returncode == 0
    assert secret not in shown.stdout + shown.stderr
    assert "****6789" in shown.stdout
    assert "readable by group or others" in shown.stderr
    as_json = runctl("config", "show", "--json", cwd=tmp_path)
    data = json.loads(as_json.stdout)
    assert data["runpod"]["api_key"] == "****6789"
    env_secret = "rpa_FROM_ENVIRONMENT_abcdefgh"
    from_env = runctl("config", "show", cwd=tmp_path, env={"RUNPOD_API_KEY": env_secret})
    assert env_secret not in from_env.stdout + from_env.stderr


@pytest.mark.parametrize("variable", ["RUNCTL_UI_MAX_FPS"])
def test_bad_env_value_exits_3(tmp_path: Path, variable: str) -> None:
    result = runctl("config", "validate", cwd=tmp_path, env={variable: "lots"})
    assert result.returncode == 3
    assert f"env:{variable}: 'ui.max_fps' must be integer, found str 'lots'" in result.stderr
