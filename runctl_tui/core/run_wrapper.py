"""The process that stays with a local run: it starts the script, waits, records how it ended.

`runctl_tui.core.local_runs` starts this module with `-m` in a new session; it runs the script
with the log as stdout and stderr, writes `child.json` (the script's pid and start time), then
`exit.json` (the real exit status) when the script ends, and releases the run's lock on its
checkpoint directory. It also holds the small file formats both sides share. Standard library
only, so it starts fast and keeps working whatever else is (not) installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_NAME = ".runctl-lock"
"""The lock file a run keeps in its checkpoint directory."""
EXIT_NAME = "exit.json"
CHILD_NAME = "child.json"


@dataclasses.dataclass(frozen=True)
class ExitStatus:
    """What the wrapper recorded when the script ended."""

    exit_code: int
    """The script's exit code; 128 + N when it was killed by signal N (as shells report it)."""
    signal: int | None
    ended: float


@dataclasses.dataclass(frozen=True)
class LockInfo:
    """Who holds a checkpoint directory."""

    run_id: str
    pid: int | None
    pid_start_time: float | None
    started: float | None
    script: str
    path: Path


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), or None if it is gone or a zombie.

    Args:
        pid: The process id.

    Returns:
        The start time from `/proc/<pid>/stat`, None for a missing or already exited
        (zombie) process, or when `/proc` is not available.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    ticks = int(fields[19])
    return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def as_int(value: Any) -> int | None:
    """`value` if it is an int (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_float(value: Any) -> float | None:
    """`value` as a float if it is a number (not a bool), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as JSON to `path` so that a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_lock(checkpoint_dir: Path) -> LockInfo | None:
    """The holder of `checkpoint_dir`'s lock, or None when it is not locked.

    Args:
        checkpoint_dir: A checkpoint directory.

    Returns:
        The lock's holder; an unreadable lock file gives a holder with run id `?`.
    """
    path = Path(checkpoint_dir) / LOCK_NAME
    if not path.exists():
        return None
    data = read_json(path) or {}
    return LockInfo(
        run_id=str(data.get("run_id", "?")),
        pid=as_int(data.get("pid")),
        pid_start_time=as_float(data.get("pid_start_time")),
        started=as_float(data.get("started")),
        script=str(data.get("script", "")),
        path=path,
    )


@contextmanager
def dir_guard(directory: Path) -> Iterator[None]:
    """Serialise lock changes on one directory across processes (flock on the folder)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lock_payload(
    run_id: str, pid: int, start: float | None, started: float, script: str
) -> dict[str, Any]:
    """The lock file's content: the holding run and process."""
    return {
        "run_id": run_id,
        "pid": pid,
        "pid_start_time": start,
        "started": started,
        "script": script,
        "host": os.uname().nodename,
    }


def release_lock(checkpoint_dir: Path, run_id: str) -> bool:
    """Remove `checkpoint_dir`'s lock if `run_id` holds it.

    Args:
        checkpoint_dir: The run's checkpoint directory.
        run_id: The run giving the lock up.

    Returns:
        True when a lock was removed.
    """
    directory = Path(checkpoint_dir)
    if not directory.is_dir():
        return False
    try:
        with dir_guard(directory):
            holder = read_lock(directory)
            if holder is None or holder.run_id != run_id:
                return False
            (directory / LOCK_NAME).unlink(missing_ok=True)
            return True
    except OSError:
        return False


def claim_lock(checkpoint_dir: Path, run_id: str, pid: int | None = None) -> None:
    """Record the run's wrapper (`pid`, default this process) as the holder of its lock.

    Both the launcher (right after starting the wrapper) and the wrapper itself do this, so
    the lock names the run's process even if the launcher dies at once; a lock that is no
    longer the run's (released because the run already ended) is left alone.
    """
    with dir_guard(checkpoint_dir):
        holder = read_lock(checkpoint_dir)
        if holder is None or holder.run_id != run_id:
            return
        pid = os.getpid() if pid is None else pid
        payload = lock_payload(
            run_id, pid, process_start_time(pid), holder.started or time.time(), holder.script
        )
        write_json_atomic(checkpoint_dir / LOCK_NAME, payload)


def describe_exit(status: ExitStatus) -> str:
    """`exit code N` or `killed by SIGNAME`, for notes and log lines."""
    if status.signal:
        try:
            sig_name = signal.Signals(status.signal).name
        except ValueError:
            sig_name = f"signal {status.signal}"
        return f"killed by {sig_name}"
    return f"exit code {status.exit_code}"


def _ignore(signum: int, frame: object) -> None:
    """Keep the wrapper alive through SIGINT/SIGTERM; they are meant for the script."""


def main(argv: Sequence[str]) -> int:
    """Run the script, wait for it, record its exit status, release the lock.

    Args:
        argv: `--run-id ID --cwd DIR [--lock-dir DIR] -- COMMAND...`; the current directory
            is the run's folder.

    Returns:
        The script's exit code (128 + N when a signal N killed it).
    """
    parser = argparse.ArgumentParser(prog="runctl-run-wrapper")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--cwd", required=True)
    parser.add_argument("--lock-dir", default="")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    run_dir = Path.cwd()
    # SIG_IGN is inherited by the script (like nohup); a Python handler resets at exec, so
    # the script gets SIGINT and SIGTERM with their default meaning.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGTERM, _ignore)
    lock_dir = Path(options.lock_dir) if options.lock_dir else None
    if lock_dir is not None:
        try:
            claim_lock(lock_dir, options.run_id)
        except OSError as exc:
            print(f"[runctl] could not update the lock in {lock_dir}: {exc}", flush=True)
    started = time.monotonic()
    exit_code: int
    sig: int | None = None
    try:
        child = subprocess.Popen(command, cwd=options.cwd, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"[runctl] could not start {command[0]}: {exc.strerror or exc}", flush=True)
        exit_code = 127 if exc.errno == errno.ENOENT else 126
    else:
        start_time = process_start_time(child.pid)
        write_json_atomic(run_dir / CHILD_NAME, {"pid": child.pid, "start_time": start_time})
        returncode = child.wait()
        if returncode < 0:
            sig = -returncode
            exit_code = 128 + sig
        else:
            exit_code = returncode
    ended = time.time()
    status = ExitStatus(exit_code=exit_code, signal=sig, ended=ended)
    write_json_atomic(run_dir / EXIT_NAME, dataclasses.asdict(status))
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    print(
        f"[runctl] run {options.run_id} ended: {describe_exit(status)} after "
        f"{minutes}m{seconds:02d}s",
        flush=True,
    )
    if lock_dir is not None:
        release_lock(lock_dir, options.run_id)
    return min(exit_code, 255)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
