"""Training runs on this computer that outlive whoever started them.

A run is a small wrapper process (`runctl_tui.core.run_wrapper`) in its own session and process
group, so closing the dashboard, a hang-up (SIGHUP) or killing `runctl` never reaches it. The
wrapper starts the script with stdout and stderr appended to `runs/<run-id>/train.log`, waits
for it, and writes the real exit status to `runs/<run-id>/exit.json`; `reconcile` reads that
file once the process is gone. The run registry keeps the wrapper's pid together with its start
time from `/proc/<pid>/stat`, so a pid the kernel has handed to another process is never taken
for the run.

A run holds a lock file on its checkpoint directory (`.runctl-lock`, JSON naming the holder);
a second run on the same directory is refused, a lock whose holder is gone is taken over.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from runctl_tui.core.config import Config
from runctl_tui.core.errors import NotFoundError, RunctlError
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.models import Provider, Run, RunStatus
from runctl_tui.core.run_wrapper import (
    CHILD_NAME,
    EXIT_NAME,
    LOCK_NAME,
    ExitStatus,
    LockInfo,
    as_float,
    as_int,
    claim_lock,
    describe_exit,
    dir_guard,
    lock_payload,
    process_start_time,
    read_json,
    read_lock,
    release_lock,
    write_json_atomic,
)
from runctl_tui.core.runs import RunRegistry, new_run_id

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

LOG_NAME = "train.log"
STOP_NAME = "stop-requested"
MACHINE_ID = "local"

_PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")
_CHECKPOINT_SUFFIXES = (
    ".pt",
    ".pth",
    ".ckpt",
    ".safetensors",
    ".bin",
    ".h5",
    ".keras",
    ".pkl",
    ".npz",
)
_START_TIME_TOLERANCE = 1.0
"""Seconds; /proc/stat's boot time can move by a second when the clock is stepped."""

_log = get_logger("local_runs")


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """The command a script is started with, and what the user should know about it."""

    command: list[str]
    interpreter: str
    warnings: list[str]


# --- processes -------------------------------------------------------------------------------


def _have_proc() -> bool:
    return os.path.exists("/proc/self/stat")


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_alive(pid: int | None, start_time: float | None, *, cmdline_contains: str = "") -> bool:
    """Whether `pid` is still the very process that was recorded.

    Args:
        pid: The recorded pid; None is never alive.
        start_time: The recorded start time; when given, a process with another start time
            (the pid was reused) is not the recorded one.
        cmdline_contains: When given, one of the process's arguments must be this string
            (the wrapper has the run id on its command line).

    Returns:
        True while the recorded process runs (zombies count as ended).
    """
    if pid is None or pid <= 0:
        return False
    if not _have_proc():
        return _pid_exists(pid)
    current = process_start_time(pid)
    if current is None:
        return False
    if start_time is not None and abs(current - start_time) > _START_TIME_TOLERANCE:
        return False
    if cmdline_contains:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().decode("utf-8", "replace")
        except OSError:
            return False
        if cmdline_contains not in cmdline.split("\0"):
            return False
    return True


def run_dir_of(run: Run) -> Path:
    """The run's own folder (`runs/<run-id>/`), where train.log and exit.json live."""
    return Path(run.log_path).parent


def run_is_alive(run: Run) -> bool:
    """Whether a local run's wrapper, or the script it started, is still running.

    Args:
        run: A run from the registry.

    Returns:
        True while the recorded wrapper process (same pid, same start time) or its script
        process lives.
    """
    if pid_alive(run.pid, run.pid_start_time, cmdline_contains=run.id):
        return True
    child = read_json(run_dir_of(run) / CHILD_NAME)
    if child is None:
        return False
    return pid_alive(as_int(child.get("pid")), as_float(child.get("start_time")))


def read_exit_status(run: Run) -> ExitStatus | None:
    """The exit status the wrapper recorded, or None when there is none (yet).

    Args:
        run: A run from the registry.

    Returns:
        The recorded status, or None.
    """
    data = read_json(run_dir_of(run) / EXIT_NAME)
    if data is None:
        return None
    code = as_int(data.get("exit_code"))
    if code is None:
        return None
    return ExitStatus(
        exit_code=code,
        signal=as_int(data.get("signal")),
        ended=as_float(data.get("ended")) or time.time(),
    )


# --- scripts and interpreters ----------------------------------------------------------------


def demo_script_path() -> Path:
    """The bundled example training script (standard library only)."""
    return Path(__file__).resolve().parent.parent / "examples" / "train_demo.py"


def pep723_dependencies(script: Path) -> list[str] | None:
    """The dependencies a script declares in a PEP 723 `# /// script` block.

    Args:
        script: A Python file.

    Returns:
        The declared dependencies (possibly empty), or None when the script has no block.
    """
    try:
        text = script.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for match in _PEP723.finditer(text):
        if match.group("type") != "script":
            continue
        content = "".join(
            line[2:] if line.startswith("# ") else line[1:]
            for line in match.group("content").splitlines(keepends=True)
        )
        try:
            metadata = tomllib.loads(content)
        except tomllib.TOMLDecodeError:
            return []
        deps = metadata.get("dependencies", [])
        return [str(d) for d in deps] if isinstance(deps, list) else []
    return None


def _is_python_script(script: Path) -> bool:
    if script.suffix in (".py", ".pyw"):
        return True
    try:
        with open(script, "rb") as handle:
            first = handle.readline(256)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def plan_command(
    config: Config, script: Path, args: Sequence[str], path_env: str | None = None
) -> LaunchPlan:
    """Decide how to start `script`: `uv run` when uv is on PATH, else a Python, else directly.

    Args:
        config: The effective configuration (`[local] use_uv`, `[local] python`).
        script: The script, an existing file.
        args: Its arguments, passed as argv (never through a shell).
        path_env: The PATH to look for uv and Python in; None: this process's PATH.

    Returns:
        The command, a word for the interpreter, and warnings for the user.

    Raises:
        RunctlError: The script is neither Python nor executable, or the configured Python
            is missing.
    """
    path_env = os.environ.get("PATH", os.defpath) if path_env is None else path_env
    warnings: list[str] = []
    if not _is_python_script(script):
        if os.access(script, os.X_OK):
            return LaunchPlan([str(script), *args], "direct", warnings)
        raise RunctlError(
            f"{script} is not a Python script and is not executable; make it executable "
            f"(chmod +x {shlex.quote(str(script))}) or pass a .py file"
        )
    uv = shutil.which("uv", path=path_env) if config.local.use_uv else None
    if uv:
        script_flag = [] if script.suffix == ".py" else ["--script"]
        prefix = [uv, "run", *script_flag]
        return LaunchPlan([*prefix, str(script), *args], shlex.join(prefix), warnings)
    if config.local.python:
        python = shutil.which(config.local.python, path=path_env)
        if python is None:
            raise RunctlError(
                f"the configured Python '{config.local.python}' ([local] python) was not "
                "found; fix the setting or leave it empty to use runctl's own Python"
            )
    else:
        python = sys.executable or shutil.which("python3", path=path_env) or "python3"
    deps = pep723_dependencies(script)
    if deps:
        why = "uv is not on PATH" if config.local.use_uv else "[local] use_uv is false"
        warnings.append(
            f"{script.name} declares dependencies in a PEP 723 `# /// script` block "
            f"({', '.join(deps)}) that will not be installed because {why}; install uv, "
            f"or install them into {python}"
        )
    return LaunchPlan([python, str(script), *args], python, warnings)


def resume_args(config: Config, checkpoint: Path) -> list[str]:
    """The arguments that make a script resume from `checkpoint` (`[local] resume_flag`).

    Args:
        config: The effective configuration.
        checkpoint: The checkpoint file or folder.

    Returns:
        E.g. `["--resume", "/abs/ckpt.pt"]` for the default `--resume {path}`.
    """
    tokens = shlex.split(config.local.resume_flag)
    if not any("{path}" in token for token in tokens):
        return [*tokens, str(checkpoint)]
    return [token.replace("{path}", str(checkpoint)) for token in tokens]


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint in `directory`, for `--resume-latest`.

    Checkpoints are files with a checkpoint suffix (.pt, .ckpt, .safetensors ...), runctl demo
    checkpoints (`ckpt-*.json`) and checkpoint folders (`checkpoint-*`, as Hugging Face writes
    them). Symlinks such as `best.json` are pointers, not checkpoints of their own.

    Args:
        directory: A checkpoint directory.

    Returns:
        The newest by modification time (then by name), or None when there is none.
    """
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    candidates: list[tuple[float, str, Path]] = []
    for entry in entries:
        if entry.is_symlink() or entry.name.startswith("."):
            continue
        name = entry.name
        is_ckpt = (
            (entry.is_file() and name.endswith(_CHECKPOINT_SUFFIXES))
            or (entry.is_file() and name.startswith("ckpt-") and name.endswith(".json"))
            or (entry.is_dir() and name.startswith("checkpoint"))
        )
        if is_ckpt:
            candidates.append((entry.stat().st_mtime, name, Path(entry.path)))
    if not candidates:
        return None
    return max(candidates)[2]


# --- checkpoint directory locks --------------------------------------------------------------


def lock_holder_alive(holder: LockInfo, registry: RunRegistry | None = None) -> bool:
    """Whether a lock's holder still runs (same pid, same start time, run not ended).

    Args:
        holder: From `read_lock`.
        registry: Where to check the holder's run has not ended; None: skip that check.

    Returns:
        True when the lock is live.
    """
    if not pid_alive(holder.pid, holder.pid_start_time):
        return False
    if registry is not None:
        try:
            run = registry.get(holder.run_id)
        except NotFoundError:
            return True
        if run.status.is_final:
            return False
    return True


def _describe_holder(holder: LockInfo) -> str:
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.started))
        if holder.started
        else "at an unknown time"
    )
    return f"run {holder.run_id} (pid {holder.pid}, started {when})"


def acquire_lock(
    checkpoint_dir: Path,
    run_id: str,
    script: str,
    *,
    registry: RunRegistry | None = None,
    pid: int | None = None,
) -> str | None:
    """Take the lock on `checkpoint_dir` for `run_id`.

    Args:
        checkpoint_dir: An existing, writable directory.
        run_id: The run that will use it.
        script: Recorded for the message a refused run gets.
        registry: Used to tell whether a holder's run has ended.
        pid: The holding process; None: this process.

    Returns:
        A notice when a stale lock was taken over, else None.

    Raises:
        RunctlError: Another live run holds the directory (the message names it).
    """
    holder_pid = os.getpid() if pid is None else pid
    notice = None
    with dir_guard(checkpoint_dir):
        holder = read_lock(checkpoint_dir)
        if holder is not None:
            if lock_holder_alive(holder, registry):
                raise RunctlError(
                    f"checkpoint directory {checkpoint_dir} is in use by "
                    f"{_describe_holder(holder)}; stop it with `runctl stop {holder.run_id}` "
                    "or choose another --checkpoint-dir"
                )
            notice = (
                f"took over a stale lock on {checkpoint_dir} left by "
                f"{_describe_holder(holder)}, which is no longer running"
            )
        write_json_atomic(
            checkpoint_dir / LOCK_NAME,
            lock_payload(run_id, holder_pid, process_start_time(holder_pid), time.time(), script),
        )
    return notice


# --- launching -------------------------------------------------------------------------------


def _resolve(base: Path, value: str | Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _ensure_writable_dir(path: Path, what: str, hint: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RunctlError(f"cannot use {path} as the {what}: {reason.lower()}; {hint}") from exc


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:40]
    return slug


def launch_local_run(
    config: Config,
    script: str,
    args: Sequence[str],
    *,
    checkpoint_dir: str | None = None,
    resume_from: str | None = None,
    cwd: Path | None = None,
    name: str | None = None,
    registry: RunRegistry | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Run:
    """Start `script` detached on this computer and record it in the run registry.

    Args:
        config: The effective configuration (`[local]`).
        script: The training script, relative to `cwd` or absolute.
        args: The script's arguments, passed verbatim as argv.
        checkpoint_dir: Where checkpoints go; None: `[local] checkpoint_dir`. Relative paths
            are relative to `cwd`. The run locks it.
        resume_from: A checkpoint to resume from, passed with `[local] resume_flag`.
        cwd: The working directory of the run; None: the current directory.
        name: A short name, appended to the run id.
        registry: The run registry; None: the default one.
        on_warning: Called with each warning (PEP 723 dependencies without uv, stale lock
            taken over); they are also kept in the run's note.

    Returns:
        The recorded run, status `running`.

    Raises:
        NotFoundError: The script, the working directory or the checkpoint does not exist.
        RunctlError: The script cannot be run, the checkpoint directory is not writable or is
            in use by another run, or the process could not be started.
    """
    workdir = Path(cwd if cwd is not None else Path.cwd()).expanduser().resolve()
    if not workdir.is_dir():
        raise NotFoundError(f"working directory {workdir} does not exist; pick an existing one")
    script_path = _resolve(workdir, script)
    if not script_path.exists():
        raise NotFoundError(
            f"script {script} not found (looked in {workdir}); check the path and try again"
        )
    if script_path.is_dir():
        raise RunctlError(f"{script} is a directory; pass the training script file inside it")
    if not os.access(script_path, os.R_OK):
        raise RunctlError(f"{script} is not readable; fix its permissions (chmod u+r)")
    full_args = list(args)
    note_parts: list[str] = []
    if resume_from is not None:
        checkpoint = _resolve(workdir, resume_from)
        if not checkpoint.exists():
            raise NotFoundError(
                f"checkpoint {resume_from} not found; `runctl checkpoint list DIR` shows "
                "the checkpoints there"
            )
        full_args += resume_args(config, checkpoint)
        note_parts.append(f"resumed from {checkpoint}")
    env = dict(os.environ)
    plan = plan_command(config, script_path, full_args, env.get("PATH", os.defpath))
    ckpt_dir = _resolve(workdir, checkpoint_dir or config.local.checkpoint_dir)
    _ensure_writable_dir(
        ckpt_dir,
        "checkpoint directory",
        "choose another with --checkpoint-dir or fix its permissions",
    )
    run_id = new_run_id() + (f"-{_slug(name)}" if name and _slug(name) else "")
    registry = registry if registry is not None else RunRegistry()
    notices = list(plan.warnings)
    takeover = acquire_lock(ckpt_dir, run_id, script, registry=registry)
    if takeover:
        notices.append(takeover)
    run_dir = _resolve(workdir, config.local.runs_dir) / run_id
    try:
        _ensure_writable_dir(
            run_dir, "run folder", "set [local] runs_dir to a writable place or fix its permissions"
        )
    except RunctlError:
        release_lock(ckpt_dir, run_id)
        raise
    log_path = run_dir / LOG_NAME
    env.update(
        {
            "RUNCTL_RUN_ID": run_id,
            "RUNCTL_CHECKPOINT_DIR": str(ckpt_dir),
            "RUNCTL_LOG_PATH": str(log_path),
        }
    )
    env.setdefault("PYTHONUNBUFFERED", "1")
    wrapper = [
        sys.executable,
        "-m",
        "runctl_tui.core.run_wrapper",
        "--run-id",
        run_id,
        "--cwd",
        str(workdir),
        "--lock-dir",
        str(ckpt_dir),
        "--",
        *plan.command,
    ]
    started = time.time()
    try:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            header = f"[runctl] run {run_id}: {shlex.join(plan.command)} (cwd {workdir})\n"
            os.write(log_fd, header.encode("utf-8"))
            proc = subprocess.Popen(
                wrapper,
                cwd=run_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            os.close(log_fd)
    except OSError as exc:
        release_lock(ckpt_dir, run_id)
        raise RunctlError(f"could not start {script}: {exc.strerror or exc}") from exc
    try:
        claim_lock(ckpt_dir, run_id, proc.pid)
    except OSError as exc:
        _log.warning("run %s: could not update the lock in %s: %s", run_id, ckpt_dir, exc)
    # Reap the wrapper when it ends, so a long-lived launcher (the dashboard) keeps no zombie.
    threading.Thread(target=proc.wait, name=f"reap-{run_id}", daemon=True).start()
    run = Run(
        id=run_id,
        backend=Provider.LOCAL,
        machine=MACHINE_ID,
        script=script,
        args=tuple(full_args),
        cwd=str(workdir),
        status=RunStatus.RUNNING,
        started=started,
        log_path=str(log_path),
        checkpoint_dir=str(ckpt_dir),
        interpreter=plan.interpreter,
        pid=proc.pid,
        pid_start_time=process_start_time(proc.pid),
        note="; ".join(note_parts + notices),
    )
    try:
        registry.add(run)
    except RunctlError:
        _signal_group(proc.pid, signal.SIGKILL)
        release_lock(ckpt_dir, run_id)
        raise
    _log.info("started run %s: %s", run_id, shlex.join(plan.command))
    for notice in notices:
        _log.warning("run %s: %s", run_id, notice)
        if on_warning is not None:
            on_warning(notice)
    return run


def strip_resume_args(config: Config, args: Sequence[str]) -> list[str]:
    """`args` without a trailing resume flag that an earlier resume appended.

    Args:
        config: The effective configuration (`[local] resume_flag`).
        args: A recorded run's arguments.

    Returns:
        The arguments the run was started with before any resume was added.
    """
    template = shlex.split(config.local.resume_flag)
    if not any("{path}" in token for token in template):
        template.append("{path}")
    size = len(template)
    if size == 0 or len(args) < size:
        return list(args)
    tail = args[len(args) - size :]
    for token, arg in zip(template, tail, strict=True):
        before, _, after = token.partition("{path}")
        if "{path}" not in token:
            if arg != token:
                return list(args)
        elif not (arg.startswith(before) and arg.endswith(after) and len(arg) > len(token) - 6):
            return list(args)
    return list(args[: len(args) - size])


def resume_local_run(
    config: Config,
    run: Run,
    checkpoint: str,
    *,
    registry: RunRegistry | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Run:
    """Start a recorded local run's script again from `checkpoint` (the dashboard's resume).

    The new run gets the old one's working directory, checkpoint directory and arguments
    (without the resume flag an earlier resume added), plus the resume flag for `checkpoint`.

    Args:
        config: The effective configuration.
        run: The run to resume (it must have ended: it holds its checkpoint directory).
        checkpoint: The checkpoint to resume from.
        registry: The run registry; None: the default one.
        on_warning: As for `launch_local_run`.

    Returns:
        The new run.
    """
    if run.backend is not Provider.LOCAL:
        raise RunctlError(
            f"run {run.id} ran on {run.backend.value} machine {run.machine}; resume it there"
        )
    return launch_local_run(
        config,
        run.script,
        strip_resume_args(config, run.args),
        checkpoint_dir=run.checkpoint_dir,
        resume_from=checkpoint,
        cwd=Path(run.cwd),
        registry=registry,
        on_warning=on_warning,
    )


# --- tracking and stopping -------------------------------------------------------------------


def _finalise(registry: RunRegistry, run: Run, *, how: str = "") -> Run:
    """Record the end of a run whose processes are gone."""
    status = read_exit_status(run)
    stop_requested = (run_dir_of(run) / STOP_NAME).exists()
    if status is not None:
        new_status = (
            RunStatus.STOPPED
            if stop_requested
            else RunStatus.SUCCEEDED
            if status.exit_code == 0
            else RunStatus.FAILED
        )
        words = describe_exit(status)
        ended: float = status.ended
        code: int | None = status.exit_code
    else:
        new_status = RunStatus.STOPPED if stop_requested else RunStatus.LOST
        words = (
            "the process ended without recording an exit status (killed with SIGKILL, or the "
            "computer restarted)"
        )
        ended = time.time()
        code = None
    if stop_requested:
        words = f"stopped with {how}, {words}" if how else f"stopped, {words}"
    note = f"{run.note}; {words}" if run.note else words
    release_lock(Path(run.checkpoint_dir), run.id)
    return registry.update(run.id, status=new_status, exit_code=code, ended=ended, note=note)


def reconcile(registry: RunRegistry) -> list[Run]:
    """Bring the registry up to date with the local runs' processes.

    A run recorded as running whose processes are gone gets its recorded exit status
    (`succeeded`, `failed`, or `stopped` when a stop was asked for), or `lost` when nothing
    was recorded. Its checkpoint directory lock is released.

    Args:
        registry: The run registry.

    Returns:
        The runs whose status changed, as now recorded.
    """
    changed = []
    for run in registry.list(Provider.LOCAL, status=RunStatus.RUNNING):
        if run.machine != MACHINE_ID:
            continue
        if run_is_alive(run):
            continue
        changed.append(_finalise(registry, run))
    return changed


def wait_for_exit(run: Run, timeout: float | None, *, poll: float = 0.05) -> ExitStatus | None:
    """Wait until a local run's processes are gone; return its exit status.

    Args:
        run: The run.
        timeout: Seconds to wait at most; None: no limit.
        poll: Seconds between checks.

    Returns:
        The recorded exit status once it ended, or None when it is still running at the
        deadline (or ended without recording one).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while run_is_alive(run):
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(poll)
    return read_exit_status(run)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise RunctlError(
            f"not allowed to signal process group {pgid}; the run belongs to another user"
        ) from exc
    return True


def stop_run(
    config: Config,
    run_id: str,
    *,
    grace: float | None = None,
    registry: RunRegistry | None = None,
) -> Run:
    """Stop a local run gracefully: SIGINT, then SIGTERM, then SIGKILL, to its process group.

    Args:
        config: The effective configuration (`[local] stop_grace_seconds`).
        run_id: The run to stop.
        grace: Seconds to wait after SIGINT and after SIGTERM; None: the configured value.
        registry: The run registry; None: the default one.

    Returns:
        The run as now recorded (status `stopped`).

    Raises:
        NotFoundError: No run has this id.
        RunctlError: The run is not local, has already ended, or would not die.
    """
    registry = registry if registry is not None else RunRegistry()
    run = registry.get(run_id)
    if run.backend is not Provider.LOCAL:
        raise RunctlError(
            f"run {run_id} runs on {run.backend.value} machine {run.machine}, not here; "
            "stop it from the dashboard"
        )
    if run.status.is_final:
        raise RunctlError(f"run {run_id} has already ended ({run.status.value}); nothing to stop")
    if not run_is_alive(run):
        ended = _finalise(registry, run)
        raise RunctlError(f"run {run_id} has already ended ({ended.status.value}); nothing to stop")
    run_dir = run_dir_of(run)
    try:
        (run_dir / STOP_NAME).write_text(f"{time.time()}\n", encoding="utf-8")
    except OSError as exc:
        raise RunctlError(
            f"cannot write to the run folder {run_dir} ({exc.strerror}); fix its permissions"
        ) from exc
    assert run.pid is not None
    wait = config.local.stop_grace_seconds if grace is None else grace
    how = ""
    for sig, seconds in (
        (signal.SIGINT, wait),
        (signal.SIGTERM, wait),
        (signal.SIGKILL, 10.0),
    ):
        _signal_group(run.pid, sig)
        how = sig.name
        _log.info("run %s: sent %s to process group %s", run_id, how, run.pid)
        if wait_for_exit(run, seconds) is not None or not run_is_alive(run):
            break
    else:
        raise RunctlError(
            f"run {run_id} (process group {run.pid}) did not end even after SIGKILL; "
            f"check it with `ps -g {run.pid}`"
        )
    # Workers the script left behind in its group (data loaders) go with it.
    _signal_group(run.pid, signal.SIGKILL)
    return _finalise(registry, run, how=how)


def follow_log(
    run: Run,
    write: Callable[[bytes], None],
    *,
    offset: int = 0,
    poll: float = 0.1,
) -> ExitStatus | None:
    """Copy a run's log to `write` as it grows, until the run ends.

    Args:
        run: A local run.
        write: Receives each new chunk of bytes.
        offset: Where in the log to start.
        poll: Seconds between reads when nothing new came.

    Returns:
        The recorded exit status, or None when the run ended without one.
    """
    path = Path(run.log_path)
    with open(path, "rb") as handle:
        handle.seek(offset)
        while True:
            alive = run_is_alive(run)
            chunk = handle.read(64 * 1024)
            while chunk:
                write(chunk)
                chunk = handle.read(64 * 1024)
            if not alive:
                return read_exit_status(run)
            time.sleep(poll)


def last_log_line(run: Run) -> str:
    """The last non-empty line a run wrote that is not runctl's own, for one-line errors."""
    try:
        with open(run.log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 8192))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines()]
    ours = [line for line in lines if line and not line.startswith("[runctl]")]
    return ours[-1] if ours else ""
