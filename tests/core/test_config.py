"""Configuration: lookup order, environment overrides, precise errors, redaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runctl_tui.core import config as cfg
from runctl_tui.core.errors import ConfigError


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


def test_defaults_when_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = cfg.load_config()
    assert config.source is None
    assert config.local.checkpoint_dir == "checkpoints"
    assert config.aws.spot_fallback == "ask"
    assert config.ui.readonly is False


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    monkeypatch.chdir(tmp_path)
    user = write(isolated_home / ".config/runctl/config.toml", '[ui]\ntheme = "user"\n')
    assert cfg.load_config().source == user
    project = write(tmp_path / ".runctl.toml", '[ui]\ntheme = "project"\n')
    assert cfg.load_config().source == project
    named = write(tmp_path / "named.toml", '[ui]\ntheme = "named"\n')
    monkeypatch.setenv("RUNCTL_CONFIG", str(named))
    assert cfg.load_config().ui.theme == "named"
    explicit = write(tmp_path / "explicit.toml", '[ui]\ntheme = "explicit"\n')
    assert cfg.load_config(explicit).ui.theme == "explicit"


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load_config(tmp_path / "nope.toml")


def test_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "[local]\ncheckpoint_dir = 'ok'\nrunctl = = 3\n")
    with pytest.raises(ConfigError) as info:
        cfg.load_config(path)
    assert info.value.line == 3
    assert info.value.column is not None
    assert str(info.value).startswith(f"{path}:3:{info.value.column}: invalid TOML")


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[aws]\nregion = 'eu-west-1'\nspot_fallbak = 'never'\n")
    with pytest.raises(ConfigError) as info:
        cfg.load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3:1: unknown key 'aws.spot_fallbak'")
    assert "Did you mean 'spot_fallback'?" in message


def test_unknown_section_suggests(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[checkpoint]\nkeep_last = 2\n")
    with pytest.raises(
        ConfigError, match=r"unknown section \[checkpoint\]. Did you mean 'checkpoints'"
    ):
        cfg.load_config(path)


def test_wrong_type_names_key_expected_and_found(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[monitor]\npoll_seconds = 'fast'\n")
    with pytest.raises(ConfigError) as info:
        cfg.load_config(path)
    assert str(info.value) == f"{path}:2:1: 'monitor.poll_seconds' must be number, found str 'fast'"


def test_wrong_choice(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[aws]\nspot_fallback = 'maybe'\n")
    with pytest.raises(ConfigError, match="must be one of 'ask', 'on-demand', 'never'"):
        cfg.load_config(path)


def test_integer_accepted_for_float_but_not_bool_for_int(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[monitor]\npoll_seconds = 2\n")
    assert cfg.load_config(path).monitor.poll_seconds == 2.0
    path = write(tmp_path / "d.toml", "[runpod]\ngpu_count = true\n")
    with pytest.raises(ConfigError, match="must be integer, found bool True"):
        cfg.load_config(path)


def test_list_items_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[aws]\nsecurity_group_ids = ['sg-1', 2]\n")
    with pytest.raises(ConfigError, match="must be array of string"):
        cfg.load_config(path)


def test_env_overrides_scalar_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNCTL_UI_READONLY", "yes")
    monkeypatch.setenv("RUNCTL_MONITOR_POLL_SECONDS", "1.5")
    monkeypatch.setenv("RUNCTL_RUNPOD_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("RUNCTL_RUN_ID", "not-a-config-key")
    config = cfg.load_config()
    assert config.ui.readonly is True
    assert config.monitor.poll_seconds == 1.5
    assert config.runpod.api_url == "http://127.0.0.1:9"
    assert config.overrides["ui.readonly"] == "RUNCTL_UI_READONLY"


def test_env_override_with_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCTL_RUNPOD_GPU_COUNT", "two")
    with pytest.raises(ConfigError) as info:
        cfg.load_config()
    assert str(info.value).startswith(
        "env:RUNCTL_RUNPOD_GPU_COUNT: 'runpod.gpu_count' must be integer"
    )


def test_env_unknown_key_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCTL_UI_READNOLY", "1")
    with pytest.raises(ConfigError, match="Did you mean 'readonly'"):
        cfg.load_config()


def test_runpod_key_from_env_is_registered_and_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "rpa_SECRETVALUE1234567890wxyz"
    monkeypatch.setenv("RUNPOD_API_KEY", secret)
    config = cfg.load_config()
    assert config.runpod.api_key == secret
    shown = cfg.effective_toml(config)
    assert secret not in shown
    assert 'api_key = "****wxyz"  # from RUNPOD_API_KEY' in shown


def test_secret_in_world_readable_file_warns(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[runpod]\napi_key = 'rpa_abcdefghijklmnop'\n", mode=0o644)
    config = cfg.load_config(path)
    assert any("chmod 600" in w for w in config.warnings)
    private = write(tmp_path / "p.toml", "[runpod]\napi_key = 'rpa_abcdefghijklmnop'\n", mode=0o600)
    assert cfg.load_config(private).warnings == []


def test_example_round_trips_and_documents_every_key(tmp_path: Path) -> None:
    text = cfg.example_toml()
    for _section, key, _value, _meta in cfg.iter_keys(cfg.Config()):
        assert f"# {key} = " in text, key
    # Uncommenting every key gives a valid file equal to the defaults.
    uncommented = "\n".join(
        line[2:]
        if line.startswith("# ") and " = " in line and not line.startswith("# Any")
        else line
        for line in text.splitlines()
    )
    path = write(tmp_path / "all.toml", uncommented)
    loaded = cfg.load_config(path)
    assert cfg.effective_toml(loaded) == cfg.effective_toml(cfg.Config())


def test_committed_example_matches_schema() -> None:
    example = Path(__file__).parents[2] / "config" / "runctl.example.toml"
    assert example.read_text(encoding="utf-8") == cfg.example_toml(), (
        "config/runctl.example.toml is stale: regenerate with "
        "`python -c 'from runctl_tui.core.config import example_toml; print(example_toml(), end=\"\")'"
        " > config/runctl.example.toml`"
    )
