"""SSH to pods and instances: commands, project sync, one-round-trip listings and SFTP transfers.

Host keys are trusted on first use and kept in runctl's own known_hosts file
(`paths.state_dir()/known_hosts`), not in `~/.ssh/known_hosts`: every RunPod pod and EC2
instance is a new host with a new key, so there is no key to check against the first time.
Once a key is recorded for a `host:port`, a different key there is refused with an error that
says how to forget the old one (`forget_host_key`), because a changed key can mean someone is
in the middle. Backends call `forget_host_key` when they terminate a machine whose address a
new one may reuse.

asyncssh is imported lazily, so importing this module for its data classes stays cheap.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import shlex
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Any

from runctl_tui.core import paths
from runctl_tui.core.aio import wait_for
from runctl_tui.core.errors import BackendError, NotFoundError
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.models import SshEndpoint

if TYPE_CHECKING:
    import asyncssh

log = get_logger("ssh")

DEFAULT_CONNECT_TIMEOUT = 20.0
"""Seconds to wait for TCP connect plus SSH handshake and authentication."""

SYNC_EXCLUDES = (".git/", ".venv/", "__pycache__/", "runs/", "checkpoints/")
"""Never sent by `sync_project`, on top of `.gitignore`: VCS data, environments, outputs."""

ProgressCallback = Callable[[int, int], None]
"""Called as `progress(bytes_done, total_bytes)` during a transfer."""

_DOWNLOAD_BLOCK = 8 * 1024 * 1024
"""Bytes per SFTP read or write call (asyncssh splits it into parallel requests)."""

_known_hosts_lock = threading.Lock()


@dataclass(frozen=True)
class CommandResult:
    """What a remote command did."""

    exit_status: int
    """Exit status; 128+N when killed by signal N, -1 when the server did not say."""
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether the command exited 0."""
        return self.exit_status == 0


@dataclass(frozen=True)
class SyncReport:
    """What `sync_project` sent."""

    files_sent: int
    bytes_sent: int
    """Bytes of file content transferred (before compression)."""
    method: str
    """`rsync` or `sftp`."""


@dataclass(frozen=True)
class RemoteFile:
    """One entry of a remote listing.

    `path` starts with the directory exactly as it was passed to `list_files` (so
    `list_files("~/project/ckpt")` gives `~/project/ckpt/epoch=1.ckpt`), joined with `/`.
    """

    path: str
    size: int
    mtime: float
    """Modification time, epoch seconds."""
    is_dir: bool
    link_target: str | None = None
    """Where a symbolic link points (not followed); None for other entries."""


def known_hosts_path() -> Path:
    """runctl's own known_hosts file (OpenSSH format), shared by asyncssh and rsync's ssh."""
    return paths.state_dir() / "known_hosts"


def _host_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _host_matches(hosts_field: str, pattern: str) -> bool:
    for entry in hosts_field.split(","):
        if entry.startswith("|1|"):
            # OpenSSH's hashed form: |1|base64(salt)|base64(HMAC-SHA1(salt, pattern)).
            try:
                salt, digest = entry[3:].split("|", 1)
                mac = hmac.new(base64.b64decode(salt), pattern.encode(), hashlib.sha1)
                if hmac.compare_digest(mac.digest(), base64.b64decode(digest)):
                    return True
            except (ValueError, binascii.Error):
                continue
        elif entry == pattern:
            return True
    return False


def _load_known_hosts(host: str, port: int) -> list[asyncssh.SSHKey]:
    """Keys recorded for exactly `host:port` (no fallback to other ports, unlike OpenSSH)."""
    import asyncssh

    path = known_hosts_path()
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise BackendError(
            f"runctl's known_hosts file {path} could not be read ({exc}); fix or delete it."
        ) from exc
    pattern = _host_pattern(host, port)
    keys: list[asyncssh.SSHKey] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith(("#", "@")):
            continue
        if not _host_matches(fields[0], pattern):
            continue
        try:
            keys.append(asyncssh.import_public_key(f"{fields[1]} {fields[2]}"))
        except (asyncssh.KeyImportError, ValueError):
            continue
    return keys


def _record_host_key(host: str, port: int, key: asyncssh.SSHKey) -> None:
    path = known_hosts_path()
    paths.ensure_dir(path.parent)
    line = f"{_host_pattern(host, port)} {key.export_public_key('openssh').decode().strip()}\n"
    with _known_hosts_lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    log.info("trusted new host key", extra={"data": {"host": host, "port": port}})


def forget_host_key(host: str, port: int = 22) -> int:
    """Remove every recorded key of `host:port` from runctl's known_hosts file.

    Call it when a machine is terminated or recreated, so the next machine that gets the
    same address is trusted on first use instead of refused.

    Args:
        host: Host name or address as used to connect.
        port: SSH port.

    Returns:
        How many entries were removed.
    """
    path = known_hosts_path()
    if not path.is_file():
        return 0
    pattern = _host_pattern(host, port)
    removed = 0
    with _known_hosts_lock:
        kept: list[str] = []
        for line in path.read_text().splitlines(keepends=True):
            hosts = line.split(None, 1)[0] if line.strip() else ""
            if hosts and _host_matches(hosts, pattern):
                removed += 1
            else:
                kept.append(line)
        if removed:
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(kept))
            tmp.chmod(0o600)
            tmp.replace(path)
    return removed


def _remote_path_expr(path: str) -> str:
    """`path` as a shell word: quoted, with a leading `~` left to the remote shell's $HOME."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _describe(endpoint: SshEndpoint) -> str:
    return f"{endpoint.user}@{endpoint.host}:{endpoint.port}"


class SshSession:
    """One authenticated SSH connection to a machine.

    Use `await SshSession.connect(endpoint)`, as an async context manager or closing it with
    `close()`. Every method raises `BackendError` with a sentence on failure.
    """

    def __init__(self, endpoint: SshEndpoint, connection: asyncssh.SSHClientConnection) -> None:
        """Wrap an open connection; use `SshSession.connect` instead."""
        self.endpoint = endpoint
        self._conn = connection
        self._sftp: asyncssh.SFTPClient | None = None
        self._home: str | None = None
        self._has_rsync: bool | None = None

    @classmethod
    async def connect(
        cls,
        endpoint: SshEndpoint,
        *,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
        keepalive_interval: float = 15.0,
    ) -> SshSession:
        """Open and authenticate a connection.

        Args:
            endpoint: Where to connect; `key_path` None means the SSH agent and `~/.ssh` keys.
            timeout: Seconds for the TCP connect, handshake and authentication together.
            keepalive_interval: Seconds between keepalives; three unanswered ones drop the
                connection, so a dead network is noticed.

        Returns:
            The connected session.

        Raises:
            BackendError: The machine did not answer, refused the key, or its host key changed.
        """
        import asyncssh

        if endpoint.interactive_only:
            raise BackendError(
                f"{_describe(endpoint)} is RunPod's SSH proxy, which only offers an interactive "
                "shell; runctl needs direct SSH (expose 22/tcp on the pod)."
            )
        trusted = _load_known_hosts(endpoint.host, endpoint.port)
        seen: dict[str, asyncssh.SSHKey] = {}

        class _Client(asyncssh.SSHClient):
            def validate_host_public_key(
                self, host: str, addr: str, port: int, key: asyncssh.SSHKey
            ) -> bool:
                seen["key"] = key
                # Only reached for a key not in `trusted`: new host if nothing is recorded.
                return not trusted

        options: dict[str, Any] = {
            "port": endpoint.port,
            "username": endpoint.user,
            "known_hosts": (trusted, [], []),
            "client_factory": _Client,
            "connect_timeout": timeout,
            "keepalive_interval": keepalive_interval,
            "keepalive_count_max": 3,
        }
        if endpoint.key_path:
            key_file = Path(endpoint.key_path).expanduser()
            if not key_file.is_file():
                raise BackendError(
                    f"SSH key file {key_file} does not exist; set the right path in the config "
                    "(ssh_key) or leave it empty to use the SSH agent."
                )
            options["client_keys"] = [str(key_file)]
            options["agent_path"] = None
        try:
            conn = await wait_for(asyncssh.connect(endpoint.host, **options), timeout=timeout + 5)
        except asyncssh.HostKeyNotVerifiable as exc:
            if trusted and "key" in seen:
                raise BackendError(
                    f"The SSH host key of {endpoint.host}:{endpoint.port} has CHANGED "
                    f"(now {seen['key'].get_fingerprint()}, recorded "
                    f"{trusted[0].get_fingerprint()}); refusing to connect. If the machine was "
                    f"recreated, remove its line from {known_hosts_path()} and try again."
                ) from exc
            raise BackendError(
                f"The SSH host key of {endpoint.host}:{endpoint.port} could not be verified: "
                f"{exc.reason}."
            ) from exc
        except asyncssh.PermissionDenied as exc:
            how = f"key {endpoint.key_path}" if endpoint.key_path else "the SSH agent's keys"
            raise BackendError(
                f"SSH login to {_describe(endpoint)} was refused with {how}; check the user "
                "name and that the public key is authorised on the machine."
            ) from exc
        except asyncssh.KeyImportError as exc:
            raise BackendError(
                f"SSH key {endpoint.key_path} could not be loaded ({exc}); if it has a "
                "passphrase, add it to ssh-agent and leave ssh_key empty."
            ) from exc
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise BackendError(
                f"SSH to {_describe(endpoint)} timed out after {timeout:g} s; the machine may "
                "still be starting, or a firewall blocks the port."
            ) from exc
        except (OSError, asyncssh.Error) as exc:
            raise BackendError(
                f"SSH to {_describe(endpoint)} failed: {_reason(exc)}; check that the machine "
                "is running and its SSH port is reachable."
            ) from exc
        if "key" in seen and not trusted:
            _record_host_key(endpoint.host, endpoint.port, seen["key"])
        log.debug("connected", extra={"data": {"target": _describe(endpoint)}})
        return cls(endpoint, conn)

    async def __aenter__(self) -> SshSession:
        """Return the session itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the session."""
        await self.close()

    @property
    def closed(self) -> bool:
        """Whether the connection has been closed (by us or by the network)."""
        return self._conn.is_closed()

    async def close(self) -> None:
        """Close SFTP and the connection; safe to call twice."""
        if self._sftp is not None:
            self._sftp.exit()
            self._sftp = None
        self._conn.close()
        try:
            await wait_for(self._conn.wait_closed(), timeout=5)
        except (asyncio.TimeoutError, OSError):
            pass

    async def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        check: bool = False,
        input: str | None = None,
    ) -> CommandResult:
        """Run a shell command on the machine and collect its output.

        Args:
            command: A command line for the remote shell (quote arguments with `shlex.quote`).
            timeout: Seconds before the command is abandoned; None: no limit.
            check: Raise `BackendError` when the command exits non-zero.
            input: Text sent to the command's stdin (then end of input); None: no input.

        Returns:
            Exit status, stdout and stderr (UTF-8, bad bytes replaced).
        """
        import asyncssh

        try:
            # Without input the command's stdin is closed at once, so nothing waits on it.
            feed: dict[str, Any] = {"input": input} if input else {"stdin": asyncssh.DEVNULL}
            result = await self._conn.run(
                command,
                check=False,
                timeout=timeout,
                encoding="utf-8",
                errors="replace",
                **feed,
            )
        except asyncssh.TimeoutError as exc:
            raise BackendError(
                f"Command on {_describe(self.endpoint)} did not finish within {timeout:g} s: "
                f"{_short(command)}"
            ) from exc
        except (OSError, asyncssh.Error) as exc:
            raise BackendError(
                f"Running a command on {_describe(self.endpoint)} failed: {_reason(exc)}."
            ) from exc
        if result.exit_status is not None:
            status = result.exit_status
        elif result.exit_signal is not None:
            status = 128 + _signal_number(result.exit_signal[0])
        else:
            status = -1
        out = CommandResult(status, _text(result.stdout), _text(result.stderr))
        if check and status != 0:
            detail = out.stderr.strip().splitlines()[-1:] or out.stdout.strip().splitlines()[-1:]
            raise BackendError(
                f"Command on {_describe(self.endpoint)} exited with status {status}: "
                f"{_short(command)}" + (f" ({detail[0]})" if detail else "")
            )
        return out

    async def start_process(self, command: str) -> asyncssh.SSHClientProcess[bytes]:
        """Start a long-running remote command with binary stdout/stderr streams.

        Args:
            command: A command line for the remote shell.

        Returns:
            The asyncssh process; read `.stdout`/`.stderr`, call `.close()` when done.
        """
        import asyncssh

        try:
            return await self._conn.create_process(command, encoding=None)
        except (OSError, asyncssh.Error) as exc:
            raise BackendError(
                f"Starting a command on {_describe(self.endpoint)} failed: {_reason(exc)}."
            ) from exc

    async def home(self) -> str:
        """The remote user's home directory (cached)."""
        if self._home is None:
            result = await self.run('printf %s "$HOME"', timeout=30, check=True)
            self._home = result.stdout or "/"
        return self._home

    async def resolve_path(self, path: str) -> str:
        """`path` made absolute: `~` is the remote home, a relative path is relative to it."""
        if path.startswith("/"):
            return path
        home = await self.home()
        if path in ("~", ""):
            return home
        rest = path[2:] if path.startswith("~/") else path
        return str(PurePosixPath(home) / rest)

    async def sftp(self) -> asyncssh.SFTPClient:
        """The session's SFTP client, opened on first use."""
        import asyncssh

        if self._sftp is None:
            try:
                self._sftp = await self._conn.start_sftp_client()
            except (OSError, asyncssh.Error) as exc:
                raise BackendError(
                    f"SFTP to {_describe(self.endpoint)} could not start: {_reason(exc)}."
                ) from exc
        return self._sftp

    async def list_files(self, remote_dir: str, *, portable: bool = False) -> list[RemoteFile]:
        """Every file, directory and link under `remote_dir` (recursively), in one round trip.

        Uses GNU find's `-printf` where available, else a `stat` loop (busybox; whole-second
        mtimes).

        Args:
            remote_dir: Directory on the machine (absolute, `~/...`, or relative to home).
            portable: Use the `stat` loop even where GNU find is available.

        Returns:
            The entries below `remote_dir` (not the directory itself), paths prefixed with
            `remote_dir` as given.

        Raises:
            NotFoundError: `remote_dir` does not exist or is not a directory.
        """
        expr = _remote_path_expr(remote_dir)
        script = (
            f"d={expr}; "
            'if [ ! -d "$d" ]; then echo "not a directory" >&2; exit 3; fi; '
            'cd "$d" || exit 3; '
            f"if {'false' if portable else 'true'} && "
            "find . -maxdepth 0 -printf '' >/dev/null 2>&1; then "
            "find . -mindepth 1 -printf '%y\\t%s\\t%T@\\t%l\\t%p\\0'; "
            "else find . ! -path . | while IFS= read -r p; do "
            'if [ -L "$p" ]; then t=l; l=$(readlink "$p"); '
            'elif [ -d "$p" ]; then t=d; l=; else t=f; l=; fi; '
            "set -- $(stat -c '%s %Y' \"$p\"); "
            'printf \'%s\\t%s\\t%s\\t%s\\t%s\\0\' "$t" "$1" "$2" "$l" "$p"; '
            "done; fi"
        )
        result = await self.run(script)
        if result.exit_status == 3:
            raise NotFoundError(
                f"Remote directory {remote_dir} does not exist on {_describe(self.endpoint)}."
            )
        if result.exit_status != 0 and not result.stdout:
            raise BackendError(
                f"Listing {remote_dir} on {_describe(self.endpoint)} failed: "
                f"{result.stderr.strip() or f'status {result.exit_status}'}."
            )
        prefix = remote_dir.rstrip("/") or "/"
        if len(result.stdout) > 256 * 1024:
            # Tens of thousands of entries: parse off the event loop so the UI stays live.
            return await asyncio.to_thread(_parse_listing, result.stdout, prefix)
        return _parse_listing(result.stdout, prefix)

    async def download(
        self, remote_path: str, local_path: Path, progress: ProgressCallback | None = None
    ) -> int:
        """Copy a remote file or directory (recursively) to `local_path` over SFTP.

        Each file is written to `<name>.part` and renamed when complete, so an interrupted
        download never leaves a file that looks whole; downloading again resumes a `.part`
        where it stopped when the remote file is unchanged (same size and mtime, kept in
        `<name>.part-info`), else starts it over.

        Args:
            remote_path: File or directory on the machine.
            local_path: Destination file or directory (parents are created).
            progress: Called with `(bytes_done, total_bytes)` over the whole download.

        Returns:
            Bytes of the downloaded file(s).
        """
        import asyncssh

        sftp = await self.sftp()
        source = await self.resolve_path(remote_path)
        try:
            attrs = await sftp.stat(source)
        except asyncssh.SFTPNoSuchFile as exc:
            raise NotFoundError(
                f"{remote_path} does not exist on {_describe(self.endpoint)}."
            ) from exc
        except (OSError, asyncssh.Error) as exc:
            raise BackendError(f"Cannot read {remote_path}: {_reason(exc)}.") from exc
        plan: list[tuple[str, Path, int, int]] = []
        if attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
            for entry in await self.list_files(source):
                rel = entry.path[len(source.rstrip("/")) + 1 :]
                target = local_path / rel
                if entry.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                elif entry.link_target is None:
                    plan.append((entry.path, target, entry.size, int(entry.mtime)))
            local_path.mkdir(parents=True, exist_ok=True)
        else:
            plan.append((source, local_path, attrs.size or 0, int(attrs.mtime or 0)))
        total = sum(item[2] for item in plan)
        done = 0
        if progress:
            progress(0, total)
        for remote, local, size, mtime in plan:
            base = done

            def report(got: int, base: int = base) -> None:
                if progress:
                    progress(base + got, total)

            try:
                done += await self._fetch(sftp, remote, local, size, mtime, report)
            except (OSError, asyncssh.Error) as exc:
                raise BackendError(
                    f"Downloading {remote} from {_describe(self.endpoint)} failed: "
                    f"{_reason(exc)}; download it again to resume."
                ) from exc
        return done

    async def _fetch(
        self,
        sftp: asyncssh.SFTPClient,
        remote: str,
        local: Path,
        size: int,
        mtime: int,
        report: Callable[[int], None],
    ) -> int:
        """Download one file through `<name>.part`, resuming a matching earlier attempt."""
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name(local.name + ".part")
        info = local.with_name(local.name + ".part-info")
        stamp = f"{size} {mtime}\n"
        offset = 0
        try:
            if info.read_text() == stamp and part.stat().st_size <= size:
                offset = part.stat().st_size
        except OSError:
            offset = 0
        if offset == 0:
            info.write_text(stamp)
        report(offset)
        async with sftp.open(remote, "rb") as source:
            with part.open("r+b" if offset else "wb") as out:
                out.seek(offset)
                position = offset
                while position < size:
                    data: bytes = await source.read(min(_DOWNLOAD_BLOCK, size - position), position)
                    if not data:
                        break
                    await asyncio.to_thread(out.write, data)
                    position += len(data)
                    report(position)
        got = part.stat().st_size
        if got != size:
            part.unlink(missing_ok=True)
            info.unlink(missing_ok=True)
            raise BackendError(
                f"{remote} changed while it was downloaded ({size} bytes listed, {got} "
                "received); download it again once the run has finished writing it."
            )
        os.utime(part, (mtime, mtime))
        part.replace(local)
        info.unlink(missing_ok=True)
        return got

    async def upload(
        self, local_path: Path, remote_path: str, progress: ProgressCallback | None = None
    ) -> int:
        """Copy one local file to the machine over SFTP (parent directories are created).

        Args:
            local_path: A local file.
            remote_path: Destination path on the machine.
            progress: Called with `(bytes_done, total_bytes)`.

        Returns:
            Bytes uploaded.
        """
        import asyncssh

        sftp = await self.sftp()
        target = await self.resolve_path(remote_path)

        def report(got: int, total: int) -> None:
            if progress:
                progress(got, total)

        try:
            await sftp.makedirs(str(PurePosixPath(target).parent), exist_ok=True)
            return await _put_file(sftp, local_path, target, report)
        except (OSError, asyncssh.Error) as exc:
            raise BackendError(
                f"Uploading {local_path} to {_describe(self.endpoint)}:{remote_path} failed: "
                f"{_reason(exc)}."
            ) from exc

    async def has_rsync(self) -> bool:
        """Whether rsync is on the remote PATH (cached)."""
        if self._has_rsync is None:
            result = await self.run("command -v rsync", timeout=30)
            self._has_rsync = result.exit_status == 0 and bool(result.stdout.strip())
        return self._has_rsync

    async def sync_project(
        self, local_dir: Path, remote_dir: str, *, method: str | None = None
    ) -> SyncReport:
        """Send the project to the machine: only changed files, `.gitignore` honoured.

        Never deletes anything on the machine (outputs written there are safe). `.git/`,
        `.venv/`, `__pycache__/`, `runs/` and `checkpoints/` are never sent. Both methods send
        the files `project_files` lists; rsync compares size and mtime and sends deltas, SFTP
        sends whole files whose size or mtime differ from one remote listing.

        Args:
            local_dir: The project directory.
            remote_dir: Where it goes on the machine (created if missing).
            method: Force `rsync` or `sftp`; None: rsync when both ends have it, else SFTP.

        Returns:
            How many files and bytes were sent, and how.
        """
        local_dir = local_dir.resolve()
        if not local_dir.is_dir():
            raise NotFoundError(f"Project directory {local_dir} does not exist.")
        expr = _remote_path_expr(remote_dir)
        made = await self.run(f"mkdir -p {expr} && cd {expr} && pwd", timeout=60)
        if made.exit_status != 0:
            raise BackendError(
                f"Cannot create {remote_dir} on {_describe(self.endpoint)}: "
                f"{made.stderr.strip() or f'status {made.exit_status}'}."
            )
        absolute = made.stdout.strip()
        if method is None:
            use_rsync = bool(shutil.which("rsync") and shutil.which("ssh")) and (
                await self.has_rsync()
            )
            method = "rsync" if use_rsync else "sftp"
        if method == "rsync":
            report = await asyncio.to_thread(self._rsync, local_dir, absolute)
        elif method == "sftp":
            report = await self._sftp_sync(local_dir, absolute)
        else:
            raise ValueError(f"unknown sync method {method!r}")
        log.info(
            "project synced",
            extra={
                "data": {
                    "target": _describe(self.endpoint),
                    "method": report.method,
                    "files": report.files_sent,
                    "bytes": report.bytes_sent,
                }
            },
        )
        return report

    def ssh_command(self) -> list[str]:
        """An OpenSSH client command line for this endpoint, sharing runctl's known_hosts."""
        endpoint = self.endpoint
        command = [
            "ssh",
            "-p",
            str(endpoint.port),
            "-l",
            endpoint.user,
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            f"UserKnownHostsFile={known_hosts_path()}",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "ServerAliveInterval=15",
        ]
        if endpoint.key_path:
            command += ["-i", str(Path(endpoint.key_path).expanduser()), "-o", "IdentitiesOnly=yes"]
        return command

    def _rsync(self, local_dir: Path, remote_dir: str) -> SyncReport:
        # The file list comes from `project_files` (git's own answer, or pathspec's git
        # semantics) rather than rsync's `:- .gitignore` merge, which does not understand
        # `!` negations, global excludes or `.git/info/exclude`: both methods send the same set.
        files = project_files(local_dir)
        command = [
            "rsync",
            "-az",
            "--stats",
            "--from0",
            "--files-from=-",
            "-e",
            shlex.join(self.ssh_command()),
            f"{local_dir}/",
            f"{_rsync_host(self.endpoint.host)}:{remote_dir}/",
        ]
        env = dict(os.environ, LC_ALL="C")
        try:
            proc = subprocess.run(
                command,
                input="\0".join(files),
                capture_output=True,
                text=True,
                env=env,
                timeout=3600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"rsync to {_describe(self.endpoint)} failed: {exc}.") from exc
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-3:]
            raise BackendError(
                f"rsync to {_describe(self.endpoint)} failed with status {proc.returncode}: "
                + " / ".join(tail)
            )
        return SyncReport(
            files_sent=_stat_number(proc.stdout, "Number of regular files transferred"),
            bytes_sent=_stat_number(proc.stdout, "Total transferred file size"),
            method="rsync",
        )

    async def _sftp_sync(self, local_dir: Path, remote_dir: str) -> SyncReport:
        import asyncssh

        files = await asyncio.to_thread(project_files, local_dir)
        remote = {
            entry.path[len(remote_dir.rstrip("/")) + 1 :]: entry
            for entry in await self.list_files(remote_dir)
        }
        sftp = await self.sftp()
        made_dirs: set[str] = set()
        sent = 0
        sent_bytes = 0
        for rel in files:
            source = local_dir / rel
            try:
                info = source.stat()
            except OSError:
                continue  # Deleted since it was listed.
            have = remote.get(rel)
            if (
                have is not None
                and not have.is_dir
                and have.size == info.st_size
                and int(have.mtime) == int(info.st_mtime)
            ):
                continue
            target = f"{remote_dir.rstrip('/')}/{rel}"
            parent = str(PurePosixPath(target).parent)
            try:
                if parent not in made_dirs:
                    await sftp.makedirs(parent, exist_ok=True)
                    made_dirs.add(parent)
                await _put_file(sftp, source, target, None)
            except (OSError, asyncssh.Error) as exc:
                raise BackendError(
                    f"SFTP upload of {rel} to {_describe(self.endpoint)} failed: {_reason(exc)}."
                ) from exc
            sent += 1
            sent_bytes += info.st_size
        return SyncReport(files_sent=sent, bytes_sent=sent_bytes, method="sftp")


async def _put_file(
    sftp: asyncssh.SFTPClient,
    local: Path,
    target: str,
    report: Callable[[int, int], None] | None,
) -> int:
    """Upload through `<target>.part` (created 0600) renamed over `target` when complete.

    Nobody sees a half-written file, and a secret file is never readable by others on the
    way; the local file's permission bits and mtime are applied before the rename.
    """
    import asyncssh

    info = local.stat()
    part = target + ".part"
    done = 0
    if report:
        report(0, info.st_size)
    attrs = asyncssh.SFTPAttrs(permissions=0o600)
    async with sftp.open(part, "wb", attrs) as out:
        with local.open("rb") as source:
            while block := await asyncio.to_thread(source.read, _DOWNLOAD_BLOCK):
                await out.write(block, done)
                done += len(block)
                if report:
                    report(done, info.st_size)
    await sftp.chmod(part, stat.S_IMODE(info.st_mode))
    await sftp.utime(part, (info.st_atime, info.st_mtime))
    try:
        await sftp.posix_rename(part, target)
    except asyncssh.SFTPOpUnsupported:
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            await sftp.remove(target)
        await sftp.rename(part, target)
    return done


def project_files(local_dir: Path) -> list[str]:
    """The files of a project that `sync_project` would send, relative, `/`-separated, sorted.

    In a git work tree: `git ls-files --cached --others --exclude-standard`; elsewhere, a walk
    that honours every `.gitignore` (with `pathspec`'s git semantics). `SYNC_EXCLUDES` and
    symbolic links to directories are always left out.

    Args:
        local_dir: The project directory.

    Returns:
        Relative paths of regular files.
    """
    files = _git_files(local_dir)
    if files is None:
        files = _walk_with_gitignore(local_dir)
    kept = []
    for rel in files:
        if _excluded(rel):
            continue
        full = local_dir / rel
        try:
            mode = full.lstat().st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) or (stat.S_ISLNK(mode) and full.is_file()):
            kept.append(rel)
    return sorted(set(kept))


def _excluded(rel: str) -> bool:
    parts = rel.split("/")
    names = {pattern.rstrip("/") for pattern in SYNC_EXCLUDES}
    return any(part in names for part in parts[:-1])


def _git_files(local_dir: Path) -> list[str] | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        inside = subprocess.run(
            [git, "-C", str(local_dir), "rev-parse", "--is-inside-work-tree"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return None
        listed = subprocess.run(
            [
                git,
                "-C",
                str(local_dir),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listed.returncode != 0:
        return None
    return [name for name in listed.stdout.decode("utf-8", "surrogateescape").split("\0") if name]


def _walk_with_gitignore(local_dir: Path) -> list[str]:
    import pathspec

    specs: list[tuple[str, pathspec.GitIgnoreSpec]] = []
    files: list[str] = []

    def ignored(rel: str, is_dir: bool) -> bool:
        for base, spec in specs:
            if base and not rel.startswith(base + "/"):
                continue
            sub = rel[len(base) + 1 :] if base else rel
            if spec.match_file(sub + "/" if is_dir else sub):
                return True
        return False

    for root, dirs, names in os.walk(local_dir):
        rel_root = Path(root).relative_to(local_dir).as_posix()
        rel_root = "" if rel_root == "." else rel_root
        if ".gitignore" in names:
            try:
                lines = (Path(root) / ".gitignore").read_text(errors="replace").splitlines()
            except OSError:
                lines = []
            specs.append((rel_root, pathspec.GitIgnoreSpec.from_lines(lines)))
        keep_dirs = []
        for name in sorted(dirs):
            rel = f"{rel_root}/{name}" if rel_root else name
            if name + "/" in SYNC_EXCLUDES or ignored(rel, True):
                continue
            keep_dirs.append(name)
        dirs[:] = keep_dirs
        for name in names:
            rel = f"{rel_root}/{name}" if rel_root else name
            if not ignored(rel, False):
                files.append(rel)
    return files


def _parse_listing(output: str, prefix: str) -> list[RemoteFile]:
    entries: list[RemoteFile] = []
    for record in output.split("\0"):
        if not record:
            continue
        parts = record.split("\t", 4)
        if len(parts) != 5:
            continue
        kind, size, mtime, link, rel = parts
        rel = rel[2:] if rel.startswith("./") else rel
        try:
            entries.append(
                RemoteFile(
                    path=f"{prefix.rstrip('/')}/{rel}",
                    size=int(size),
                    mtime=float(mtime),
                    is_dir=kind == "d",
                    link_target=link if kind == "l" else None,
                )
            )
        except ValueError:
            continue
    entries.sort(key=lambda entry: entry.path)
    return entries


def _stat_number(output: str, label: str) -> int:
    match = re.search(rf"^{re.escape(label)}: ([\d,]+)", output, re.MULTILINE)
    return int(match.group(1).replace(",", "")) if match else 0


def _rsync_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _short(command: str, limit: int = 120) -> str:
    command = " ".join(command.split())
    return command if len(command) <= limit else command[: limit - 1] + "…"


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason or exc).strip()
    return text or type(exc).__name__


def _signal_number(name: str) -> int:
    import signal

    try:
        return int(signal.Signals["SIG" + name.upper().removeprefix("SIG")])
    except KeyError:
        return 0


def quote_args(args: Iterable[str]) -> str:
    """Join arguments into one shell-safe string (each `shlex.quote`d)."""
    return " ".join(shlex.quote(arg) for arg in args)


def __getattr__(name: str) -> Any:
    # RemoteFileLogSource lives in remote_log.py (which imports this module); re-exported
    # lazily so `runctl_tui.core.ssh.RemoteFileLogSource` works without an import cycle.
    if name == "RemoteFileLogSource":
        from runctl_tui.core.remote_log import RemoteFileLogSource

        return RemoteFileLogSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__: Sequence[str] = (
    "CommandResult",
    "RemoteFile",
    "SshSession",
    "SyncReport",
    "forget_host_key",
    "known_hosts_path",
    "project_files",
    "quote_args",
)
