"""SSH layer performance, each figure beside a baseline measured in the same run.

Runs against an SSH server on 127.0.0.1 that it starts itself (Debian's sshd when installed,
else the asyncssh fallback), so network latency is near zero: the figures show local cost
(each remote command pays sshd's session start, ~0.1 s on a busy machine), and the
round-trip counts show what a real network adds (each round trip costs one RTT: 61 round
trips at 80 ms are 5 s, one is 0.08 s).

1. `list_files` of a checkpoint tree (one command, one round trip) vs. a recursive SFTP walk
   (`scandir` per directory: one round trip per directory).
2. `sync_project` of a project of small files: first sync and an unchanged re-sync, rsync and
   SFTP (baseline: the same files sent with one SFTP `put` each, no change detection).
3. Log latency: append a line to a followed remote log until `RemoteFileLogSource` yields it
   (baseline: the same with the local `FileLogSource`).

    .venv/bin/python bench/ssh.py [--dirs 60] [--files-per-dir 50] [--project-files 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runctl_tui.core.logs import FileLogSource
from runctl_tui.core.logsource import LogSource
from runctl_tui.core.remote_log import RemoteFileLogSource
from runctl_tui.core.ssh import SshSession
from tests.sshd_fixture import start_ssh_server


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


async def _sftp_walk(session: SshSession, root: str) -> tuple[int, int]:
    sftp = await session.sftp()
    entries, trips, stack = 0, 0, [root]
    while stack:
        directory = stack.pop()
        trips += 1
        async for entry in sftp.scandir(directory):
            if entry.filename in (".", ".."):
                continue
            entries += 1
            if entry.attrs.type == 2:  # directory
                stack.append(f"{directory}/{entry.filename}")
    return entries, trips


async def bench_listing(session: SshSession, tmp: Path, dirs: int, per_dir: int) -> None:
    root = tmp / "ckpts"
    for d in range(dirs):
        folder = root / f"checkpoint-{d * 500}"
        folder.mkdir(parents=True)
        for f in range(per_dir):
            (folder / f"shard-{f:05d}.safetensors").write_bytes(b"x" * 64)
    ours, walk = [], []
    for _ in range(5):
        start = time.perf_counter()
        listed = await session.list_files(str(root))
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        walked, trips = await _sftp_walk(session, str(root))
        walk.append(time.perf_counter() - start)
    assert len(listed) == walked, (len(listed), walked)
    print(f"1. list {len(listed)} entries in {dirs} directories (median of 5)")
    print(f"   list_files (1 round trip)        {_ms(statistics.median(ours))}")
    print(f"   SFTP walk  ({trips} round trips)     {_ms(statistics.median(walk))}  baseline")


async def bench_sync(session: SshSession, tmp: Path, files: int) -> None:
    project = tmp / "project"
    for i in range(files):
        path = project / f"pkg{i % 20}" / f"module_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE = {i}\n" * 40)
    print(f"2. sync a project of {files} files")
    for method in ("rsync", "sftp"):
        remote = tmp / f"remote-{method}"
        start = time.perf_counter()
        first = await session.sync_project(project, str(remote), method=method)
        first_time = time.perf_counter() - start
        start = time.perf_counter()
        again = await session.sync_project(project, str(remote), method=method)
        again_time = time.perf_counter() - start
        print(
            f"   {method:5}  first {_ms(first_time)} ({first.files_sent} files)   "
            f"unchanged re-sync {_ms(again_time)} ({again.files_sent} files)"
        )
    sftp = await session.sftp()
    remote = tmp / "remote-put"
    start = time.perf_counter()
    for path in sorted(project.rglob("*.py")):
        target = remote / path.relative_to(project)
        await sftp.makedirs(str(target.parent), exist_ok=True)
        await sftp.put(str(path), str(target))
    print(f"   one SFTP put per file, every time {_ms(time.perf_counter() - start)}  baseline")


async def _latency(source: LogSource, path: Path, rounds: int) -> list[float]:
    follow = source.follow(initial_lines=0)
    await follow.__anext__()
    times = []
    try:
        for i in range(rounds):
            # Lines arrive at random moments relative to the follower's polling.
            await asyncio.sleep(random.uniform(0, 0.3))
            start = time.perf_counter()
            with path.open("a") as out:
                out.write(f"line {i}\n")
            while True:
                chunk = await asyncio.wait_for(follow.__anext__(), 10)
                if f"line {i}" in chunk.lines:
                    break
            times.append(time.perf_counter() - start)
    finally:
        await follow.aclose()
    return times


async def bench_log_latency(endpoint: object, tmp: Path, rounds: int = 20) -> None:
    remote_log, local_log = tmp / "remote.log", tmp / "local.log"
    remote_log.write_text("")
    local_log.write_text("")
    remote = await _latency(
        RemoteFileLogSource(endpoint, str(remote_log), poll_interval=0.25),  # type: ignore[arg-type]
        remote_log,
        rounds,
    )
    local = await _latency(FileLogSource(local_log, poll_interval=0.5), local_log, rounds)
    print(
        f"3. appended line to yielded chunk, lines written at random moments (median of {rounds})"
    )
    print(f"   RemoteFileLogSource (poll 0.25 s) {_ms(statistics.median(remote))}")
    print(f"   FileLogSource (file events)       {_ms(statistics.median(local))}  baseline")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dirs", type=int, default=60)
    parser.add_argument("--files-per-dir", type=int, default=50)
    parser.add_argument("--project-files", type=int, default=400)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        os.environ["XDG_STATE_HOME"] = str(tmp / "state")
        server = start_ssh_server(tmp / "sshd")
        try:
            print(f"server: {server.kind} on 127.0.0.1:{server.port}")
            async with await SshSession.connect(server.endpoint) as session:
                await bench_listing(session, tmp, options.dirs, options.files_per_dir)
                await bench_sync(session, tmp, options.project_files)
            await bench_log_latency(server.endpoint, tmp)
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
