"""A real SSH server on 127.0.0.1 for the integration tests, started once per test session.

With Debian's OpenSSH server installed (`/usr/sbin/sshd`, as here and in CI) the fixture runs
it on a free high port with keys generated for the session. Where sshd is absent it falls back
to an asyncssh server in a background thread that runs each command through `/bin/sh -c` and
serves SFTP, so the same tests run either way. `start_asyncssh_server` is public so a test can
exercise the fallback explicitly.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from runctl_tui.core.models import SshEndpoint

SSHD = Path("/usr/sbin/sshd")
_START_TIMEOUT = 15.0


@dataclass
class SshServer:
    """A running SSH server the tests can reach.

    Attributes:
        host: Always 127.0.0.1.
        port: The port it listens on.
        user: The user name tests log in as (the current user).
        key_path: Private key (ed25519, no passphrase) accepted by the server.
        kind: `openssh` or `asyncssh`.
        host_key_path: The server's private host key.
        pid: Process id of the listening sshd (None for the in-process asyncssh server).
    """

    host: str
    port: int
    user: str
    key_path: Path
    kind: str
    host_key_path: Path
    pid: int | None = None
    _stop: Any = field(default=None, repr=False)

    @property
    def endpoint(self) -> SshEndpoint:
        """The server as an `SshEndpoint` the core connects to."""
        return SshEndpoint(
            host=self.host, port=self.port, user=self.user, key_path=str(self.key_path)
        )

    def stop(self) -> None:
        """Shut the server down."""
        if self._stop is not None:
            self._stop()
            self._stop = None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, deadline: float, proc: subprocess.Popen[bytes] | None) -> None:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"sshd exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                # sshd sends its version banner first: wait for it, not just for the accept.
                sock.settimeout(2.0)
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"SSH server on port {port} did not answer within {_START_TIMEOUT} s")


def _generate_key(path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    key.write_public_key(str(path) + ".pub")
    path.chmod(0o600)


def _current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def start_openssh_server(directory: Path) -> SshServer:
    """Start Debian's sshd on a free port with keys generated in `directory`.

    Args:
        directory: A private scratch directory for keys, config, pid file and log.

    Returns:
        The running server; call `stop()` to end it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    user_key = directory / "id_ed25519"
    _generate_key(host_key)
    _generate_key(user_key)
    authorized = directory / "authorized_keys"
    shutil.copyfile(str(user_key) + ".pub", authorized)
    authorized.chmod(0o600)
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {directory / 'sshd.pid'}",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "Subsystem sftp internal-sftp",
                "MaxStartups 64:30:128",
                "MaxSessions 64",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    # sshd refuses to start without its privilege-separation directory.
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    # OpenSSH 9.8+ penalises a source address for failed logins and killed connections (which
    # the tests cause on purpose); older versions reject the option, so keep it only if valid.
    lines = config.read_text()
    config.write_text(lines + "PerSourcePenalties no\n")
    checked = subprocess.run(
        [str(SSHD), "-t", "-f", str(config)], capture_output=True, timeout=30, check=False
    )
    if checked.returncode != 0:
        config.write_text(lines)
    log = (directory / "sshd.log").open("wb")
    proc = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    try:
        _wait_for_port(port, time.monotonic() + _START_TIMEOUT, proc)
    except RuntimeError as exc:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{exc}; sshd log:\n{(directory / 'sshd.log').read_text()}") from exc

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    return SshServer(
        host="127.0.0.1",
        port=port,
        user=_current_user(),
        key_path=user_key,
        kind="openssh",
        host_key_path=host_key,
        pid=proc.pid,
        _stop=stop,
    )


async def _run_shell_command(process: asyncssh.SSHServerProcess[bytes]) -> None:
    """Run a client's command through `/bin/sh -c` the way sshd does, stdio piped through."""
    command = process.command or "exec /bin/sh"
    entry = pwd.getpwuid(os.getuid())
    env = {
        "HOME": entry.pw_dir,
        "USER": entry.pw_name,
        "LOGNAME": entry.pw_name,
        "SHELL": "/bin/sh",
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    try:
        child = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=entry.pw_dir,
            env=env,
        )
    except OSError as exc:
        process.stderr.write(f"cannot run command: {exc}\n".encode())
        process.exit(127)
        return
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    child_stdin = child.stdin

    async def feed_stdin() -> None:
        # Copy by hand: asyncssh's redirect fails the whole connection on a broken pipe when
        # the command exits before the client's end-of-input arrives.
        try:
            while data := await process.stdin.read(65536):
                child_stdin.write(data)
                await child_stdin.drain()
        except (OSError, asyncssh.Error):
            pass
        finally:
            try:
                child_stdin.close()
            except OSError:
                pass

    async def pump(source: asyncio.StreamReader, target: asyncssh.SSHWriter[bytes]) -> None:
        while data := await source.read(65536):
            target.write(data)
            await target.drain()

    async def relay() -> int:
        await asyncio.gather(pump(child.stdout, process.stdout), pump(child.stderr, process.stderr))
        return await child.wait()

    feeder = asyncio.ensure_future(feed_stdin())
    work = asyncio.ensure_future(relay())
    closed = asyncio.ensure_future(process.channel.wait_closed())
    try:
        await asyncio.wait({work, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        feeder.cancel()
        closed.cancel()
        if not work.done():
            # The client went away: end the command as sshd's closing of its pipes would.
            work.cancel()
            if child.returncode is None:
                child.kill()
            await child.wait()
    if work.cancelled() or work.exception() is not None:
        return
    status = work.result()
    process.exit(status if status >= 0 else 128 - status)


def start_asyncssh_server(directory: Path) -> SshServer:
    """Start an asyncssh server (exec through /bin/sh, SFTP) in a background thread.

    Args:
        directory: A private scratch directory for the generated keys.

    Returns:
        The running server; call `stop()` to end it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    user_key = directory / "id_ed25519"
    _generate_key(host_key)
    _generate_key(user_key)
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    holder: dict[str, asyncssh.SSHAcceptor] = {}

    async def start() -> None:
        holder["server"] = await asyncssh.create_server(
            asyncssh.SSHServer,
            "127.0.0.1",
            port,
            server_host_keys=[str(host_key)],
            authorized_client_keys=str(user_key) + ".pub",
            process_factory=_run_shell_command,
            sftp_factory=True,
            encoding=None,
            allow_scp=False,
        )

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=run, name=f"asyncssh-server-{port}", daemon=True)
    thread.start()
    started.wait(_START_TIMEOUT)
    if failure:
        raise RuntimeError(f"asyncssh server failed to start: {failure[0]}")
    _wait_for_port(port, time.monotonic() + _START_TIMEOUT, None)

    def stop() -> None:
        async def shutdown() -> None:
            server = holder["server"]
            server.close()
            await server.wait_closed()

        future = asyncio.run_coroutine_threadsafe(shutdown(), loop)
        try:
            future.result(timeout=5)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)

    return SshServer(
        host="127.0.0.1",
        port=port,
        user=_current_user(),
        key_path=user_key,
        kind="asyncssh",
        host_key_path=host_key,
        _stop=stop,
    )


def start_ssh_server(directory: Path) -> SshServer:
    """Debian's sshd when installed, else the asyncssh fallback."""
    if SSHD.is_file() and os.access(SSHD, os.X_OK):
        return start_openssh_server(directory)
    return start_asyncssh_server(directory)


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """One SSH server on 127.0.0.1 for the whole test session (see the module docstring)."""
    server = start_ssh_server(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()
