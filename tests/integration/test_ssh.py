"""`SshSession` against a real SSH server on 127.0.0.1 (Debian's sshd, else the asyncssh fallback).

The "remote" machine is this one, so the tests check what arrived with the local filesystem.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from runctl_tui.core.errors import BackendError, NotFoundError
from runctl_tui.core.models import SshEndpoint
from runctl_tui.core.ssh import (
    RemoteFile,
    SshSession,
    forget_host_key,
    known_hosts_path,
    project_files,
)
from tests.sshd_fixture import SshServer, free_port, start_asyncssh_server


@pytest.fixture(scope="module")
def fallback_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """The asyncssh server the fixture falls back to without sshd, run here explicitly."""
    server = start_asyncssh_server(tmp_path_factory.mktemp("fallback-sshd"))
    yield server
    server.stop()


async def test_run_returns_status_stdout_and_stderr(sshd_server: SshServer) -> None:
    async with await SshSession.connect(sshd_server.endpoint) as session:
        result = await session.run("echo out; echo err >&2; exit 7")
        assert (result.exit_status, result.stdout, result.stderr) == (7, "out\n", "err\n")
        ok = await session.run("printf '%s' \"$(id -un)\"", check=True)
        assert ok.stdout == sshd_server.user
        with pytest.raises(BackendError, match=r"exited with status 2.*boom"):
            await session.run("echo boom >&2; exit 2", check=True)
        with pytest.raises(BackendError, match=r"did not finish within 0\.5 s"):
            await session.run("sleep 5", timeout=0.5)
        # stdin is closed unless input is given, so a command reading it never hangs.
        assert (await session.run("cat", timeout=10)).stdout == ""
        assert (await session.run("cat", input="fed\n", timeout=10)).stdout == "fed\n"
        # The session survives a failed and a timed-out command.
        assert (await session.run("echo again")).stdout == "again\n"
    assert session.closed


async def test_host_key_trusted_on_first_use_and_a_changed_key_refused(
    sshd_server: SshServer,
) -> None:
    known = known_hosts_path()
    assert not known.exists()
    async with await SshSession.connect(sshd_server.endpoint):
        pass
    recorded = known.read_text()
    served = asyncssh.read_public_key(str(sshd_server.host_key_path) + ".pub")
    assert recorded.split()[0] == f"[127.0.0.1]:{sshd_server.port}"
    assert asyncssh.import_public_key(" ".join(recorded.split()[1:3])) == served
    assert oct(known.stat().st_mode & 0o777) == "0o600"

    async with await SshSession.connect(sshd_server.endpoint) as session:
        assert (await session.run("true")).ok
    assert known.read_text() == recorded, "a known key is not recorded twice"

    # Another machine now answers on the same address: its key differs from the recorded one.
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known.write_text(f"[127.0.0.1]:{sshd_server.port} {impostor}\n")
    with pytest.raises(BackendError, match=r"has CHANGED.*refusing") as caught:
        await SshSession.connect(sshd_server.endpoint)
    assert str(known) in str(caught.value)

    # A key recorded for another port of the same host does not count for this one.
    assert forget_host_key("127.0.0.1", sshd_server.port) == 1
    known.write_text(f"127.0.0.1 {impostor}\n[127.0.0.1]:1 {impostor}\n")
    async with await SshSession.connect(sshd_server.endpoint) as session:
        assert (await session.run("true")).ok


async def test_login_errors_are_sentences(sshd_server: SshServer, tmp_path: Path) -> None:
    stranger = tmp_path / "id_stranger"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(stranger))
    endpoint = SshEndpoint(sshd_server.host, sshd_server.port, sshd_server.user, str(stranger))
    with pytest.raises(BackendError, match="was refused with key"):
        await SshSession.connect(endpoint)
    missing = SshEndpoint(sshd_server.host, sshd_server.port, sshd_server.user, "/nonexistent/k")
    with pytest.raises(BackendError, match="does not exist"):
        await SshSession.connect(missing)
    closed_port = SshEndpoint("127.0.0.1", free_port(), sshd_server.user, str(sshd_server.key_path))
    with pytest.raises(BackendError, match="reachable"):
        await SshSession.connect(closed_port, timeout=5)
    proxy = SshEndpoint("ssh.runpod.io", 22, "abc-123", interactive_only=True)
    with pytest.raises(BackendError, match="interactive"):
        await SshSession.connect(proxy)


def _make_tree(root: Path) -> None:
    (root / "ckpt" / "epoch=1").mkdir(parents=True)
    (root / "ckpt" / "epoch=1" / "model.safetensors").write_bytes(b"w" * 3000)
    (root / "ckpt" / "epoch=1" / "config.json").write_text('{"a": 1}')
    (root / "name with spaces.txt").write_text("x" * 10)
    (root / "last.ckpt").symlink_to("ckpt/epoch=1/model.safetensors")
    os.utime(root / "name with spaces.txt", (1_700_000_000, 1_700_000_000.5))


async def test_list_files_in_one_round_trip(sshd_server: SshServer, tmp_path: Path) -> None:
    root = tmp_path / "remote"
    _make_tree(root)
    async with await SshSession.connect(sshd_server.endpoint) as session:
        entries = await session.list_files(str(root))
        with pytest.raises(NotFoundError, match="does not exist"):
            await session.list_files(str(tmp_path / "absent"))
    by_path = {entry.path: entry for entry in entries}
    assert set(by_path) == {
        f"{root}/ckpt",
        f"{root}/ckpt/epoch=1",
        f"{root}/ckpt/epoch=1/model.safetensors",
        f"{root}/ckpt/epoch=1/config.json",
        f"{root}/name with spaces.txt",
        f"{root}/last.ckpt",
    }
    assert by_path[f"{root}/ckpt/epoch=1"].is_dir
    weights = by_path[f"{root}/ckpt/epoch=1/model.safetensors"]
    assert (weights.size, weights.is_dir, weights.link_target) == (3000, False, None)
    assert by_path[f"{root}/name with spaces.txt"].mtime == pytest.approx(1_700_000_000.5)
    assert by_path[f"{root}/last.ckpt"].link_target == "ckpt/epoch=1/model.safetensors"


async def test_portable_listing_matches_gnu_find(sshd_server: SshServer, tmp_path: Path) -> None:
    root = tmp_path / "remote"
    _make_tree(root)

    def key(entries: list[RemoteFile]) -> list[tuple[str, int, int, bool, str | None]]:
        return [(e.path, e.size, int(e.mtime), e.is_dir, e.link_target) for e in entries]

    async with await SshSession.connect(sshd_server.endpoint) as session:
        gnu = await session.list_files(str(root))
        portable = await session.list_files(str(root), portable=True)
    assert len(gnu) == 6
    assert key(portable) == key(gnu)


async def test_download_file_and_directory_with_progress(
    sshd_server: SshServer, tmp_path: Path
) -> None:
    root = tmp_path / "remote"
    _make_tree(root)
    big = root / "ckpt" / "big.bin"
    big.write_bytes(os.urandom(300_000))
    seen: list[tuple[int, int]] = []
    async with await SshSession.connect(sshd_server.endpoint) as session:
        got = await session.download(
            str(big), tmp_path / "local" / "big.bin", lambda d, t: seen.append((d, t))
        )
        assert got == 300_000
        assert (tmp_path / "local" / "big.bin").read_bytes() == big.read_bytes()
        assert seen[-1] == (300_000, 300_000)
        assert all(b[0] >= a[0] for a, b in itertools.pairwise(seen))
        assert len(seen) > 2, "progress is reported during the transfer, not only at the end"

        seen.clear()
        await session.download(
            str(root / "ckpt"), tmp_path / "copy", lambda d, t: seen.append((d, t))
        )
        assert (tmp_path / "copy" / "epoch=1" / "model.safetensors").read_bytes() == b"w" * 3000
        assert (tmp_path / "copy" / "epoch=1" / "config.json").read_text() == '{"a": 1}'
        assert seen[-1] == (303_008, 303_008)
        assert not list(tmp_path.rglob("*.part"))

        with pytest.raises(NotFoundError):
            await session.download(str(root / "nope"), tmp_path / "nope")

        big.chmod(0o640)
        seen.clear()
        target = tmp_path / "up" / "deep" / "big.bin"
        sent = await session.upload(big, str(target), lambda d, t: seen.append((d, t)))
        assert sent == 300_000
        assert target.read_bytes() == big.read_bytes()
        assert seen[-1] == (300_000, 300_000)
        assert oct(target.stat().st_mode & 0o777) == "0o640"
        assert int(target.stat().st_mtime) == int(big.stat().st_mtime)
        secret = tmp_path / "agent.env"
        secret.write_text("TOKEN=x\n")
        secret.chmod(0o600)
        await session.upload(secret, str(target))  # replaces the file in one rename
        assert target.read_text() == "TOKEN=x\n"
        assert oct(target.stat().st_mode & 0o777) == "0o600"
        assert sorted(p.name for p in target.parent.iterdir()) == ["big.bin"]


class _Dropped(Exception):
    pass


async def test_an_interrupted_download_resumes_where_it_stopped(
    sshd_server: SshServer, tmp_path: Path
) -> None:
    remote = tmp_path / "remote" / "model.ckpt"
    remote.parent.mkdir()
    remote.write_bytes(os.urandom(20 * 1024 * 1024))
    local = tmp_path / "local" / "model.ckpt"

    def drop_midway(done: int, total: int) -> None:
        if done >= 8 * 1024 * 1024:
            raise _Dropped  # as a dropped connection would, after the first block landed

    seen: list[tuple[int, int]] = []
    async with await SshSession.connect(sshd_server.endpoint) as session:
        with pytest.raises(_Dropped):
            await session.download(str(remote), local, drop_midway)
        assert not local.exists()
        kept = (tmp_path / "local" / "model.ckpt.part").stat().st_size
        assert kept >= 8 * 1024 * 1024

        await session.download(str(remote), local, lambda d, t: seen.append((d, t)))
        assert local.read_bytes() == remote.read_bytes()
        assert seen[1] == (kept, remote.stat().st_size), "resumed from the partial file"
        assert int(local.stat().st_mtime) == int(remote.stat().st_mtime)
        assert sorted(p.name for p in local.parent.iterdir()) == ["model.ckpt"]

        # A partial download of an older version of the file is started over, not resumed.
        with pytest.raises(_Dropped):
            await session.download(str(remote), tmp_path / "again.ckpt", drop_midway)
        remote.write_bytes(os.urandom(20 * 1024 * 1024))
        os.utime(remote, (remote.stat().st_mtime + 5,) * 2)
        seen.clear()
        await session.download(
            str(remote), tmp_path / "again.ckpt", lambda d, t: seen.append((d, t))
        )
        assert (tmp_path / "again.ckpt").read_bytes() == remote.read_bytes()
        assert seen[1][0] == 0


def _make_project(root: Path, *, git: bool) -> None:
    (root / "src").mkdir(parents=True)
    (root / "train.py").write_text("print('train')\n")
    (root / "src" / "model.py").write_text("M = 1\n")
    (root / "src" / ".gitignore").write_text("*.tmp\n")
    (root / "src" / "scratch.tmp").write_text("ignored by the nested .gitignore\n")
    (root / ".gitignore").write_text("data/\n*.log\n!keep.log\n")
    (root / "data").mkdir()
    (root / "data" / "huge.bin").write_bytes(b"d" * 1000)
    (root / "debug.log").write_text("ignored\n")
    (root / "keep.log").write_text("negated, so sent\n")
    for never in (".venv/lib", "__pycache__", "runs/old", "checkpoints", "src/__pycache__"):
        (root / never).mkdir(parents=True, exist_ok=True)
        (root / never / "x.bin").write_bytes(b"never")
    if git:
        subprocess.run(["git", "init", "-q", str(root)], check=True)


EXPECTED = {"train.py", "src/model.py", "src/.gitignore", ".gitignore", "keep.log"}


@pytest.mark.parametrize("git", [True, False])
def test_project_files_honour_gitignore(tmp_path: Path, git: bool) -> None:
    _make_project(tmp_path / "p", git=git)
    assert set(project_files(tmp_path / "p")) == EXPECTED


def _received(remote: Path) -> set[str]:
    return {p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file()}


@pytest.mark.parametrize("method", ["rsync", "sftp"])
async def test_sync_project_sends_only_changes_and_never_deletes(
    sshd_server: SshServer, tmp_path: Path, method: str
) -> None:
    project = tmp_path / "project"
    _make_project(project, git=method == "rsync")
    remote = tmp_path / "remote dir"
    async with await SshSession.connect(sshd_server.endpoint) as session:
        first = await session.sync_project(project, str(remote), method=method)
        assert first.method == method
        assert _received(remote) == EXPECTED
        assert first.files_sent == len(EXPECTED)
        assert first.bytes_sent == sum((project / p).stat().st_size for p in EXPECTED)

        (remote / "outputs.txt").write_text("written by the run\n")
        again = await session.sync_project(project, str(remote), method=method)
        assert (again.files_sent, again.bytes_sent) == (0, 0)

        (project / "src" / "model.py").write_text("M = 2  # changed\n")
        (project / "new.py").write_text("N = 1\n")
        third = await session.sync_project(project, str(remote), method=method)
        assert third.files_sent == 2
        assert (remote / "src" / "model.py").read_text() == "M = 2  # changed\n"
        assert (remote / "outputs.txt").exists(), "remote outputs are never deleted"


async def test_sync_project_chooses_rsync_when_both_ends_have_it(
    sshd_server: SshServer, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    _make_project(project, git=False)
    async with await SshSession.connect(sshd_server.endpoint) as session:
        assert await session.has_rsync()
        report = await session.sync_project(project, str(tmp_path / "r"))
    assert report.method == "rsync"
    assert _received(tmp_path / "r") == EXPECTED


async def test_the_asyncssh_fallback_server_serves_the_same_api(
    fallback_server: SshServer, tmp_path: Path
) -> None:
    assert fallback_server.kind == "asyncssh"
    root = tmp_path / "remote"
    _make_tree(root)
    project = tmp_path / "project"
    _make_project(project, git=False)
    async with await SshSession.connect(fallback_server.endpoint) as session:
        result = await session.run("echo out; echo err >&2; exit 4")
        assert (result.exit_status, result.stdout, result.stderr) == (4, "out\n", "err\n")
        entries = {e.path for e in await session.list_files(str(root))}
        assert f"{root}/ckpt/epoch=1/model.safetensors" in entries
        await session.download(str(root / "ckpt"), tmp_path / "copy")
        assert (tmp_path / "copy" / "epoch=1" / "config.json").read_text() == '{"a": 1}'
        report = await session.sync_project(project, str(tmp_path / "r"), method="sftp")
        assert report.files_sent == len(EXPECTED)
        assert _received(tmp_path / "r") == EXPECTED
