"""Training runs on a remote machine over SSH: start detached, ask how it is, stop it.

A run lives in `<remote_dir>/runs/<run_id>/` on the machine: `train.log` (stdout and stderr),
`pid` (the run's process-group leader, written by the run itself), `exit_code` (written when
the script ends, atomically), `env` (the run's environment, mode 0600, sent over stdin so no
value shows in a process listing) and `stop_requested` (written by `stop_remote_run`). The run is
started with `setsid` in its own session, so it survives the SSH connection, and signals reach
the whole process group (data-loader workers included). Every argument is `shlex.quote`d.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runctl_tui.core.errors import BackendError, NotFoundError
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.models import RunStatus

if TYPE_CHECKING:
    from runctl_tui.core.ssh import SshSession

log = get_logger("remote_runs")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_UV_CANDIDATES = ("uv", "$HOME/.local/bin/uv", "$HOME/.cargo/bin/uv")


@dataclass(frozen=True)
class RemoteRunInfo:
    """Where a remote run's files are, and how it was started."""

    pid: int
    """Process id of the run's session and process-group leader."""
    log_path: str
    """Absolute path of `train.log` on the machine."""
    exit_code_path: str
    pid_path: str
    interpreter: str
    """`uv run` (with uv's path), a python path, or '' for a script run directly."""

    @property
    def run_dir(self) -> str:
        """The run's folder on the machine."""
        return self.log_path.rsplit("/", 1)[0]

    @property
    def stop_marker_path(self) -> str:
        """File whose presence says the run was stopped on purpose."""
        return f"{self.run_dir}/stop_requested"


def _remote_dir_expr(path: str) -> str:
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _check_env(env: Mapping[str, str]) -> None:
    for name in env:
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name {name!r}")


def _exports(env: Mapping[str, str]) -> str:
    """Shell lines exporting `env`; sent on stdin, never on a command line `ps` would show."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def build_command(script: str, args: Sequence[str], interpreter: str) -> str:
    """The shell command that runs `script` with `args`, every word quoted.

    Args:
        script: Script path relative to the project directory (or absolute).
        args: Arguments passed through unchanged (spaces, quotes and `;` included).
        interpreter: `uv run`-style prefix (already a shell-safe string), a python path, or ''.

    Returns:
        A command line for `sh -c`.
    """
    script_word = shlex.quote(script)
    if not interpreter and "/" not in script:
        script_word = shlex.quote("./" + script)
    words = [script_word, *(shlex.quote(arg) for arg in args)]
    return " ".join([interpreter, *words] if interpreter else words)


async def _probe(
    session: SshSession, remote_dir: str, script: str, env: Mapping[str, str], use_uv: bool
) -> tuple[str, str, str]:
    """One round trip: the absolute project dir, uv's path (or ''), python's path (or '')."""
    uv_lookup = " ".join(_UV_CANDIDATES) if use_uv else ""
    probe = (
        f"d={_remote_dir_expr(remote_dir)}; "
        'cd "$d" 2>/dev/null || { echo "no-dir" >&2; exit 3; }; '
        f"[ -e {shlex.quote(script)} ] || {{ echo 'no-script' >&2; exit 4; }}; "
        'eval "$(cat)"; '
        'printf "dir=%s\\n" "$(pwd)"; '
        f"for c in {uv_lookup}; do "
        'if command -v "$c" >/dev/null 2>&1; then printf "uv=%s\\n" "$(command -v "$c")"; '
        "break; fi; done; "
        'printf "py=%s\\n" "$(command -v python3 || command -v python)"'
    )
    result = await session.run(probe, timeout=60, input=_exports(env))
    if result.exit_status == 3:
        raise NotFoundError(
            f"Project directory {remote_dir} does not exist on the machine; sync the project first."
        )
    if result.exit_status == 4:
        raise NotFoundError(
            f"Script {script} is not in {remote_dir} on the machine; sync the project first."
        )
    if result.exit_status != 0:
        raise BackendError(
            f"Preparing the run on the machine failed: "
            f"{result.stderr.strip() or f'status {result.exit_status}'}."
        )
    found = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return found.get("dir", ""), found.get("uv", ""), found.get("py", "")


async def start_remote_run(
    session: SshSession,
    *,
    remote_dir: str,
    script: str,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    run_id: str,
    use_uv: bool = True,
) -> RemoteRunInfo:
    """Start `script` detached on the machine (`setsid nohup`) and record its pid.

    Uses `uv run` when uv is on the machine (on PATH, `~/.local/bin` or `~/.cargo/bin`) and
    `use_uv` is set, else `python3`, for `.py` scripts; other scripts are run directly.

    Args:
        session: A connected SSH session.
        remote_dir: The synced project directory on the machine; the run's working directory.
        script: Script path relative to `remote_dir`.
        args: Arguments, passed through intact (each `shlex.quote`d).
        env: Extra environment variables for the run (also seen when looking for uv).
        run_id: The run's id; its folder is `<remote_dir>/runs/<run_id>`.
        use_uv: Whether to prefer `uv run`.

    Returns:
        Pid and paths of the started run.

    Raises:
        NotFoundError: The directory or the script is not on the machine.
        BackendError: The run could not be started.
    """
    if not _RUN_ID.match(run_id):
        raise ValueError(f"invalid run id {run_id!r}")
    env = dict(env or {})
    _check_env(env)
    workdir, uv_path, python_path = await _probe(session, remote_dir, script, env, use_uv)
    if not workdir.startswith("/"):
        raise BackendError(f"Could not resolve {remote_dir} on the machine.")
    shown = ""
    if script.endswith(".py"):
        if uv_path:
            interpreter, shown = f"{shlex.quote(uv_path)} run", f"{uv_path} run"
        elif python_path:
            interpreter, shown = shlex.quote(python_path), python_path
        else:
            raise BackendError(
                "Neither uv nor python3 is on the machine's PATH; install Python on the image."
            )
    else:
        interpreter = ""
    run_dir = f"{workdir}/runs/{run_id}"
    log_path = f"{run_dir}/train.log"
    pid_path = f"{run_dir}/pid"
    exit_path = f"{run_dir}/exit_code"
    run_env = {"PYTHONUNBUFFERED": "1", "RUNCTL_RUN_ID": run_id, "RUNCTL_RUN_DIR": run_dir, **env}
    command = build_command(script, args, interpreter)
    env_path = f"{run_dir}/env"
    q_pid, q_exit, q_env = shlex.quote(pid_path), shlex.quote(exit_path), shlex.quote(env_path)
    # `trap :` lets the shell outlive a SIGINT/SIGTERM sent to the group so it can record the
    # script's status; caught signals are reset in the script, which sees them normally.
    inner = (
        f"echo $$ > {q_pid}; trap : INT TERM; . {q_env}; {command}; "
        f"echo $? > {q_exit}.tmp && mv {q_exit}.tmp {q_exit}"
    )
    detached = f"nohup sh -c {shlex.quote(inner)} > {shlex.quote(log_path)} 2>&1 < /dev/null"
    # `setsid -f` forks in the foreground: a background `&` job of a non-interactive shell
    # starts with SIGINT ignored, and an ignored signal stays ignored in the script.
    launch = (
        f"cd {shlex.quote(workdir)} || exit 3; "
        f"if [ -e {shlex.quote(run_dir)} ]; then echo 'run folder exists' >&2; exit 5; fi; "
        f"mkdir -p {shlex.quote(run_dir)} || exit 6; "
        f"(umask 077; cat > {q_env}) || exit 6; "
        f"if setsid --help 2>&1 | grep -q -- '--fork'; then setsid -f {detached}; "
        f"else setsid {detached} & fi; "
        f"i=0; while [ ! -s {q_pid} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
        f"cat {q_pid}"
    )
    result = await session.run(launch, timeout=60, input=_exports(run_env))
    if result.exit_status == 5:
        raise BackendError(f"Run {run_id} already has a folder {run_dir} on the machine.")
    pid_text = result.stdout.strip()
    if result.exit_status != 0 or not pid_text.isdigit():
        raise BackendError(
            f"Starting {script} on the machine failed: "
            f"{result.stderr.strip() or 'the run did not record its pid within 10 s'}."
        )
    info = RemoteRunInfo(
        pid=int(pid_text),
        log_path=log_path,
        exit_code_path=exit_path,
        pid_path=pid_path,
        interpreter=shown,
    )
    log.info(
        "remote run started",
        extra={"data": {"run_id": run_id, "pid": info.pid, "interpreter": info.interpreter}},
    )
    return info


def _alive_function(info: RemoteRunInfo) -> str:
    """A shell function `alive` true while the run's leader process exists (not a zombie)."""
    marker = shlex.quote(info.pid_path)
    return (
        f"p={info.pid}; "
        "alive() { "
        "if [ -d /proc/$p ]; then "
        f"grep -qsF {marker} /proc/$p/cmdline && "
        "! grep -qs '^State:[[:space:]]*Z' /proc/$p/status; "
        "elif [ -d /proc/self ]; then return 1; "
        "else kill -0 $p 2>/dev/null; fi; }; "
    )


def _status_from(text: str, alive: bool, stop_requested: bool) -> tuple[RunStatus, int | None]:
    code: int | None = int(text) if text.strip().lstrip("-").isdigit() else None
    if code is not None:
        if stop_requested:
            return RunStatus.STOPPED, code
        return (RunStatus.SUCCEEDED if code == 0 else RunStatus.FAILED), code
    if alive:
        return RunStatus.RUNNING, None
    return (RunStatus.STOPPED if stop_requested else RunStatus.LOST), None


async def remote_run_status(
    session: SshSession, info: RemoteRunInfo
) -> tuple[RunStatus, int | None]:
    """How a remote run is doing, in one round trip.

    Returns:
        `(RUNNING, None)` while it runs; `(SUCCEEDED|FAILED, code)` from its recorded exit
        code; `(STOPPED, code|None)` after `stop_remote_run`; `(LOST, None)` when the process
        is gone without an exit code (killed with SIGKILL, machine rebooted).
    """
    script = (
        _alive_function(info) + f"if alive; then echo alive=1; else echo alive=0; fi; "
        f"if [ -e {shlex.quote(info.stop_marker_path)} ]; then echo stop=1; fi; "
        f"printf 'code=%s\\n' \"$(cat {shlex.quote(info.exit_code_path)} 2>/dev/null)\""
    )
    result = await session.run(script, timeout=60)
    if result.exit_status != 0:
        raise BackendError(
            f"Asking the machine about run pid {info.pid} failed: "
            f"{result.stderr.strip() or f'status {result.exit_status}'}."
        )
    found = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return _status_from(found.get("code", ""), found.get("alive") == "1", "stop" in found)


async def stop_remote_run(
    session: SshSession, info: RemoteRunInfo, grace_seconds: float = 10.0
) -> tuple[RunStatus, int | None]:
    """Stop a remote run: SIGINT to its process group, then SIGTERM, then SIGKILL.

    Each signal gets `grace_seconds` to work (the script can save a checkpoint on SIGINT or
    SIGTERM); the whole exchange is one round trip.

    Args:
        session: A connected SSH session.
        info: The run, as `start_remote_run` returned it.
        grace_seconds: Seconds to wait after SIGINT and after SIGTERM.

    Returns:
        The run's final status (`STOPPED`, or the status it had already ended with) and its
        exit code when the script recorded one.
    """
    ticks = max(1, int(grace_seconds * 10))
    script = (
        _alive_function(info) + f"q={shlex.quote(info.exit_code_path)}; "
        'if alive && [ ! -e "$q" ]; then '
        f": > {shlex.quote(info.stop_marker_path)}; "
        "for s in INT TERM KILL; do "
        "kill -s $s -- -$p 2>/dev/null || kill -s $s $p 2>/dev/null; "
        f"n=0; if [ $s = KILL ]; then lim=50; else lim={ticks}; fi; "
        "while alive && [ $n -lt $lim ]; do sleep 0.1; n=$((n+1)); done; "
        'if ! alive; then echo "signal=$s"; break; fi; '
        "done; fi; "
        "if alive; then echo alive=1; else echo alive=0; fi; "
        f"if [ -e {shlex.quote(info.stop_marker_path)} ]; then echo stop=1; fi; "
        'printf \'code=%s\\n\' "$(cat "$q" 2>/dev/null)"'
    )
    result = await session.run(script, timeout=2 * grace_seconds + 60)
    if result.exit_status != 0:
        raise BackendError(
            f"Stopping run pid {info.pid} on the machine failed: "
            f"{result.stderr.strip() or f'status {result.exit_status}'}."
        )
    found = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    if found.get("alive") == "1":
        raise BackendError(
            f"Run pid {info.pid} on the machine is still alive after SIGKILL; check the machine."
        )
    log.info(
        "remote run stopped",
        extra={"data": {"pid": info.pid, "signal": found.get("signal", "none needed")}},
    )
    return _status_from(found.get("code", ""), False, "stop" in found)
