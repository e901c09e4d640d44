"""Configuration: TOML files, environment overrides, defaults, and precise errors.

Lookup order (the first file found is used, whole): `--config PATH` or `RUNCTL_CONFIG`,
`./.runctl.toml`, `$XDG_CONFIG_HOME/runctl/config.toml`, then built-in defaults. On top of the
file, `RUNCTL_<SECTION>_<KEY>` overrides any scalar key and `RUNPOD_API_KEY` the RunPod key.
AWS region, profile and endpoint are left to boto3's own variables unless set here.

The schema is the dataclasses below: every key has a type, a default and a doc string, and the
commented example file (`runctl init`, `config/runctl.example.toml`) is rendered from them.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from runctl_tui.core import paths
from runctl_tui.core.errors import ConfigError
from runctl_tui.core.secrets import redact, register_secret

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 in CI's smoke run
    import tomli as tomllib


def _key(default: Any, doc: str, *, secret: bool = False, choices: tuple[str, ...] = ()) -> Any:
    """A config key: its default, its documentation, whether it is a secret, allowed values."""
    meta = {"doc": doc, "secret": secret, "choices": choices}
    if isinstance(default, (list, dict)):
        factory = type(default)
        return field(default_factory=lambda: factory(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class LocalConfig:
    """Runs on this machine."""

    checkpoint_dir: str = _key(
        "checkpoints", "Checkpoint directory, relative to the working directory of the run."
    )
    runs_dir: str = _key(
        "runs", "Where each run's folder (train.log, exit status) goes, relative to the cwd."
    )
    python: str = _key("", "Interpreter for scripts when uv is not used; empty: this Python.")
    use_uv: bool = _key(True, "Run scripts with `uv run` when uv is on PATH (honours PEP 723).")
    stop_grace_seconds: float = _key(
        10.0, "Seconds between SIGINT and SIGTERM (and SIGTERM and SIGKILL) when stopping a run."
    )
    resume_flag: str = _key(
        "--resume {path}", "Arguments appended to resume a script from a checkpoint."
    )


@dataclass
class RunPodConfig:
    """RunPod GPU pods, through RunPod's REST API v2."""

    api_key: str = _key("", "API key; prefer the RUNPOD_API_KEY variable.", secret=True)
    api_url: str = _key("https://api.runpod.io", "Base URL of the REST API (v2 paths).")
    gpu_type: str = _key("NVIDIA GeForce RTX 4090", "Default GPU type id for new pods.")
    gpu_count: int = _key(1, "Default number of GPUs per pod.")
    cloud_type: str = _key(
        "SECURE", "Default cloud tier for new pods.", choices=("SECURE", "COMMUNITY")
    )
    image: str = _key(
        "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04", "Container image."
    )
    container_disk_gb: int = _key(50, "Container disk size in GB.")
    volume_gb: int = _key(20, "Pod volume size in GB (mounted at /workspace).")
    data_centers: list[str] = _key([], "Preferred data centre ids, in order; empty: any.")
    ssh_user: str = _key("root", "SSH user on pods.")
    ssh_key: str = _key("", "Private key for SSH to pods; empty: the SSH agent and ~/.ssh.")
    remote_dir: str = _key("/workspace/project", "Where `train` syncs the project on a pod.")
    timeout_seconds: float = _key(30.0, "Timeout of one API call.")
    max_retries: int = _key(5, "Retries of a call answered 429 or 5xx (exponential backoff).")
    wait_timeout_seconds: float = _key(
        900.0, "How long `create --wait` and `train` wait for RUNNING and for SSH to answer."
    )


@dataclass
class AwsConfig:
    """AWS EC2 instances and S3. Credentials come from boto3's usual chain, never from here."""

    region: str = _key("", "Region; empty: AWS_REGION / AWS_DEFAULT_REGION / the profile's.")
    profile: str = _key("", "Named profile; empty: AWS_PROFILE or the default profile.")
    endpoint_url: str = _key("", "Endpoint override; empty: AWS_ENDPOINT_URL or AWS's own.")
    instance_type: str = _key("g5.xlarge", "Default instance type.")
    ami: str = _key("", "AMI id; empty: the newest AWS Deep Learning AMI for the type.")
    key_name: str = _key("", "EC2 key pair name for new instances.")
    ssh_key: str = _key("", "Private key for SSH to instances; empty: the agent and ~/.ssh.")
    ssh_user: str = _key("ubuntu", "SSH user on instances.")
    security_group_ids: list[str] = _key([], "Security group ids for new instances.")
    subnet_id: str = _key("", "Subnet id; empty: the default VPC's.")
    root_volume_gb: int = _key(100, "Root volume size in GB.")
    iam_instance_profile: str = _key("", "IAM instance profile name (for S3 access).")
    spot: bool = _key(False, "Create spot instances by default.")
    spot_max_price: float = _key(0.0, "Spot price cap in $/h; 0: the on-demand price.")
    spot_fallback: str = _key(
        "ask",
        "When spot capacity is missing: ask (dashboard asks, CLI fails), on-demand, or never.",
        choices=("ask", "on-demand", "never"),
    )
    auto_resume: bool = _key(False, "Replace an interrupted spot instance and resume from S3.")
    output_s3: str = _key("", "Default s3://bucket/prefix for checkpoints and outputs.")
    prices_file: str = _key(
        "", "JSON file of on-demand $/h by instance type, over the shipped one."
    )
    remote_dir: str = _key("~/project", "Where `train` syncs the project on an instance.")
    ssh_host_overrides: dict[str, str] = _key(
        {},
        "Map an instance id or IP (or `*` for every instance) to host[:port] for SSH "
        "(tunnels, bastions, tests).",
    )
    agent_python: str = _key(
        "python3", "Python (with boto3) on instances that runs the S3 and spot-watcher agents."
    )
    forward_credentials: bool = _key(
        False,
        "Copy your AWS credentials to the instance (0600 file) for the S3 agents; only for "
        "instances without an IAM instance profile.",
    )
    wait_timeout_seconds: float = _key(
        900.0, "How long `create --wait` waits for `running` and for SSH to answer."
    )
    agent_poll_seconds: float = _key(
        5.0, "How often the agents on an instance poll for spot notices and new checkpoints."
    )


@dataclass
class CheckpointsConfig:
    """Finding, ranking and cleaning up checkpoints."""

    keep_last: int = _key(3, "How many of the newest checkpoints cleanup keeps.")
    best_metric: str = _key("val_loss", "Metric that ranks checkpoints (then `loss`).")
    best_mode: str = _key("min", "Whether lower or higher is better.", choices=("min", "max"))
    protected: list[str] = _key([], "Paths (globs) that cleanup never deletes.")


@dataclass
class MonitorConfig:
    """Polling, logs and alerts."""

    poll_seconds: float = _key(5.0, "How often cloud backends are polled.")
    quiet_poll_factor: float = _key(
        6.0,
        "Once three polls of a backend in a row changed nothing and none of its machines is"
        " between states, it is polled this many times less often; a change, a machine"
        " between states or an action returns it to poll_seconds.",
    )
    log_poll_seconds: float = _key(0.5, "Polling interval where file events are not available.")
    log_buffer_lines: int = _key(10000, "Lines of log kept in memory per pane.")
    stall_seconds: float = _key(600.0, "A run with no new step for this long is stalled.")
    divergence_factor: float = _key(
        3.0,
        "A loss is diverging when its smoothed curve (median of the last 5 points, then"
        " debiased EMA 0.8) stays above this multiple of the smoothed curve's running minimum"
        " for 2 points in a row, after 10 warm-up points; raw minibatch noise and single"
        " spikes do not count. NaN/inf alerts at once.",
    )
    metrics_regex: list[str] = _key(
        [], "Extra regexes with named groups (step, name, value) for exotic log formats."
    )


@dataclass
class UiConfig:
    """The dashboard."""

    readonly: bool = _key(False, "Disable every action that creates, changes or destroys.")
    theme: str = _key("textual-dark", "Textual theme name.")
    bell: bool = _key(True, "Ring the terminal bell when a run finishes, fails or stalls.")
    max_fps: int = _key(
        1,
        "Upper bound on log pane redraws per second while lines keep coming (a line after a "
        "quiet spell is drawn at once); each redraw of a scrolling log costs a few ms of CPU.",
    )
    ema_weight: float = _key(0.6, "Initial smoothing weight of the loss curves (0 to 0.999).")
    show_all_aws: bool = _key(False, "List every instance in the region, not only runctl's.")


@dataclass
class Config:
    """The effective configuration."""

    local: LocalConfig = field(default_factory=LocalConfig)
    runpod: RunPodConfig = field(default_factory=RunPodConfig)
    aws: AwsConfig = field(default_factory=AwsConfig)
    checkpoints: CheckpointsConfig = field(default_factory=CheckpointsConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    source: Path | None = None
    """The file this came from; None when only defaults (and the environment) apply."""
    overrides: dict[str, str] = field(default_factory=dict)
    """`section.key` -> the environment variable that set it."""
    warnings: list[str] = field(default_factory=list)
    """Problems worth telling the user that did not stop loading (file permissions...)."""


SECTIONS: dict[str, type[Any]] = {
    name: tp
    for name, tp in get_type_hints(Config).items()
    if isinstance(tp, type) and dataclasses.is_dataclass(tp)
}


def _hints(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (list, dict):
        args = ", ".join(_type_name(a) for a in get_args(tp))
        return f"{'array' if origin is list else 'table'} of {args}"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check `value` against type `tp`; return (ok, value converted where lossless)."""
    origin = get_origin(tp)
    if origin is list:
        (item,) = get_args(tp)
        if not isinstance(value, list):
            return False, value
        items = [_coerce(v, item) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if origin is dict:
        _, item = get_args(tp)
        if not isinstance(value, dict):
            return False, value
        entries = {k: _coerce(v, item) for k, v in value.items()}
        return all(ok for ok, _ in entries.values()), {k: v for k, (_, v) in entries.items()}
    if origin in (Union, types.UnionType):  # pragma: no cover - no optional keys yet
        return True, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, tp), value


def _locate(text: str, section: str, key: str | None) -> tuple[int | None, int | None]:
    """Find the line and column of `[section]` or of `key` inside it, in TOML source text."""
    current = ""
    header = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-]+)\s*\]")
    for number, line in enumerate(text.splitlines(), start=1):
        match = header.match(line)
        if match:
            current = match.group(1)
            if key is None and current == section:
                return number, line.index("[") + 1
            continue
        if key is not None and current == section:
            key_match = re.match(rf"^(\s*)[\"']?{re.escape(key)}[\"']?\s*=", line)
            if key_match:
                return number, len(key_match.group(1)) + 1
    return None, None


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _apply_table(
    config: Config, data: Mapping[str, Any], origin: Path | str, text: str | None
) -> None:
    """Validate a parsed TOML document and apply it to `config`."""
    for section_name, section_value in data.items():
        line, col = _locate(text, section_name, None) if text else (None, None)
        if section_name not in SECTIONS:
            hint = _suggest(section_name, list(SECTIONS))
            raise ConfigError(
                f"unknown section [{section_name}].{hint} Known sections: "
                + ", ".join(f"[{s}]" for s in SECTIONS),
                origin,
                line,
                col,
            )
        if not isinstance(section_value, dict):
            raise ConfigError(
                f"'{section_name}' must be a table ([{section_name}]), found "
                + _describe(section_value),
                origin,
                line,
                col,
            )
        section = getattr(config, section_name)
        hints = _hints(type(section))
        for key, value in section_value.items():
            line, col = _locate(text, section_name, key) if text else (None, None)
            if key not in hints:
                hint = _suggest(key, list(hints))
                raise ConfigError(f"unknown key '{section_name}.{key}'.{hint}", origin, line, col)
            _set_key(section, section_name, key, value, hints[key], origin, line, col)


def _set_key(
    section: Any,
    section_name: str,
    key: str,
    value: Any,
    tp: Any,
    origin: Path | str,
    line: int | None,
    col: int | None,
) -> None:
    ok, converted = _coerce(value, tp)
    if not ok:
        raise ConfigError(
            f"'{section_name}.{key}' must be {_type_name(tp)}, found {_describe(value)}",
            origin,
            line,
            col,
        )
    choices = _field(type(section), key).metadata.get("choices", ())
    if choices and converted not in choices:
        raise ConfigError(
            f"'{section_name}.{key}' must be one of {', '.join(map(repr, choices))}, "
            f"found {converted!r}",
            origin,
            line,
            col,
        )
    setattr(section, key, converted)


def _field(cls: type[Any], name: str) -> dataclasses.Field[Any]:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(name)


def _parse_env_value(raw: str, tp: Any) -> Any:
    if tp is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        return raw
    if tp is int:
        try:
            return int(raw)
        except ValueError:
            return raw
    if tp is float:
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


def _apply_env(config: Config, environ: Mapping[str, str]) -> None:
    """Apply `RUNCTL_<SECTION>_<KEY>` (scalar keys) and `RUNPOD_API_KEY`."""
    if environ.get("RUNPOD_API_KEY"):
        config.runpod.api_key = environ["RUNPOD_API_KEY"]
        config.overrides["runpod.api_key"] = "RUNPOD_API_KEY"
    known = {f"RUNCTL_{s.upper()}_": s for s in SECTIONS}
    for name, raw in sorted(environ.items()):
        if not name.startswith("RUNCTL_") or name in ("RUNCTL_CONFIG", "RUNCTL_LOG_LEVEL"):
            continue
        prefix = next((p for p in known if name.startswith(p)), None)
        if prefix is None:
            continue  # RUNCTL_RUN_ID and friends are given to training scripts, not to us.
        section_name = known[prefix]
        key = name[len(prefix) :].lower()
        section = getattr(config, section_name)
        hints = _hints(type(section))
        if key not in hints:
            raise ConfigError(
                f"unknown key '{section_name}.{key}'.{_suggest(key, list(hints))}",
                f"env:{name}",
            )
        tp = hints[key]
        if get_origin(tp) in (list, dict):
            raise ConfigError(
                f"'{section_name}.{key}' is {_type_name(tp)} and can only be set in a file",
                f"env:{name}",
            )
        _set_key(
            section, section_name, key, _parse_env_value(raw, tp), tp, f"env:{name}", None, None
        )
        config.overrides[f"{section_name}.{key}"] = name


def find_config_file(
    explicit: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The config file to use by the lookup order, or None for defaults only.

    Raises:
        ConfigError: An explicitly named file (argument or RUNCTL_CONFIG) does not exist.
    """
    env = os.environ if environ is None else environ
    named = explicit or env.get("RUNCTL_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            origin = "--config" if explicit else "RUNCTL_CONFIG"
            raise ConfigError(f"config file {path} (from {origin}) does not exist")
        return path
    for candidate in (paths.project_config_file(), paths.user_config_file()):
        if candidate.is_file():
            return candidate
    return None


def parse_toml(text: str, origin: Path | str) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a ConfigError with line and column."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line = getattr(exc, "lineno", None)
        col = getattr(exc, "colno", None)
        match = re.search(r"\(at line (\d+), column (\d+)\)", message)
        if match:
            line, col = int(match.group(1)), int(match.group(2))
        if match or line is not None:
            message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
            message = getattr(exc, "msg", message)
        raise ConfigError(f"invalid TOML: {message}", origin, line, col) from None


def load_config(
    explicit: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Load the effective configuration.

    Args:
        explicit: A path given with `--config`, if any.
        environ: The environment to read overrides from (default `os.environ`).

    Returns:
        The validated configuration, with `source`, `overrides` and `warnings` filled in.

    Raises:
        ConfigError: The file is unreadable, not valid TOML, or has an unknown key or a wrong
            type; the error names the file, line and column.
    """
    env = os.environ if environ is None else environ
    config = Config()
    path = find_config_file(explicit, env)
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file: {exc}", path) from None
        _apply_table(config, parse_toml(text, path), path, text)
        config.source = path
    _apply_env(config, env)
    register_secret(config.runpod.api_key)
    if path is not None:
        config.warnings.extend(_permission_warnings(config, path))
    return config


def _permission_warnings(config: Config, path: Path) -> list[str]:
    """Warn, as ssh does for keys, when a file holding a secret is readable by others."""
    if not any(value for _, _, value, meta in iter_keys(config) if meta["secret"]):
        return []
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [
            f"{path} holds a secret and is readable by group or others "
            f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
        ]
    return []


def iter_keys(config: Config) -> list[tuple[str, str, Any, Mapping[str, Any]]]:
    """Every (section, key, value, metadata) of `config`, in schema order."""
    rows: list[tuple[str, str, Any, Mapping[str, Any]]] = []
    for section_name in SECTIONS:
        section = getattr(config, section_name)
        for f in dataclasses.fields(section):
            rows.append((section_name, f.name, getattr(section, f.name), f.metadata))
    return rows


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items())
        return "{" + (f" {inner} " if inner else "") + "}"
    raise TypeError(f"cannot render {value!r} as TOML")


def effective_toml(config: Config, *, redact_secrets: bool = True) -> str:
    """The effective configuration as TOML, secrets redacted, overrides noted."""
    lines: list[str] = []
    current = ""
    for section, key, value, meta in iter_keys(config):
        if section != current:
            lines.append(("\n" if lines else "") + f"[{section}]")
            current = section
        shown = redact(value) if meta["secret"] and redact_secrets and value else value
        note = config.overrides.get(f"{section}.{key}")
        lines.append(f"{key} = {_toml_value(shown)}" + (f"  # from {note}" if note else ""))
    return "\n".join(lines) + "\n"


def example_toml() -> str:
    """The documented example configuration: every key, commented out, with its default."""
    out = [
        "# runctl configuration. Every key is shown with its default; uncomment to change.",
        "# Looked up: --config / RUNCTL_CONFIG, ./.runctl.toml, $XDG_CONFIG_HOME/runctl/config.toml.",
        "# Any scalar key can also be set as RUNCTL_<SECTION>_<KEY>, e.g. RUNCTL_UI_READONLY=1.",
        "# Keep secrets in the environment (RUNPOD_API_KEY, AWS's own variables), not here.",
    ]
    config = Config()
    for section_name, cls in SECTIONS.items():
        out.append("")
        out.append(f"# {cls.__doc__}")
        out.append(f"[{section_name}]")
        for f in dataclasses.fields(cls):
            doc = f.metadata["doc"]
            choices = f.metadata["choices"]
            if choices:
                doc += " One of: " + ", ".join(choices) + "."
            out.append(f"# {doc}")
            out.append(
                f"# {f.name} = {_toml_value(getattr(getattr(config, section_name), f.name))}"
            )
    return "\n".join(out) + "\n"
