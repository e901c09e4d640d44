"""Run a child Python in a pseudo-terminal and keep the raw bytes a terminal would receive.

Shared by the metrics sample generators (run with /work/genvenv/bin/python). Progress bars from
tqdm, Lightning and Keras only draw their `\\r`-updated form when they see a terminal, so the
samples are captured through a pty, exactly as a user's terminal or `script` would record them.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path


def run_in_pty(args: list[str], env: dict[str, str] | None = None, columns: int = 120) -> bytes:
    """Run `python args...` with stdout and stderr on a pty sized `columns` x 30; return the bytes."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env["COLUMNS"] = str(columns)
    child_env.setdefault("TERM", "xterm-256color")
    proc = subprocess.Popen(
        [sys.executable, *args], stdin=slave, stdout=slave, stderr=slave, env=child_env
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait()
    if code != 0:
        sys.stderr.write(b"".join(chunks).decode(errors="replace"))
        raise SystemExit(f"child {args} failed with {code}")
    return b"".join(chunks)


def out_dir(name: str) -> Path:
    """tests/data/metrics/<name>, created."""
    path = Path(__file__).resolve().parent.parent / "metrics" / name
    path.mkdir(parents=True, exist_ok=True)
    return path
