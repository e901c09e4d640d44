"""A transaction on an SQLite file that several processes share (the run registry and the spend
ledger beside it: the dashboard and any number of `runctl` processes at once)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from runctl_tui.core.errors import RunctlError

BUSY_TIMEOUT_MS = 10_000
"""How long a connection waits for another process's lock before giving up."""


@contextmanager
def shared_transaction(
    path: Path,
    error: Callable[[str, sqlite3.Error], RunctlError],
    *,
    write: bool = False,
    prepare: Callable[[sqlite3.Connection], None] | None = None,
) -> Iterator[sqlite3.Connection]:
    """A connection to `path` inside one transaction: committed when the block ends, rolled
    back when it raises, closed either way.

    Args:
        path: The database file.
        error: Makes the error to raise from `"open"` or `"use"` and SQLite's error.
        write: Take the write lock up front (`BEGIN IMMEDIATE`), so a transaction that reads
            and then writes never waits on a lock upgrade another process also wants.
        prepare: Runs on the connection before the transaction (schema, pragmas, row
            factory).

    Yields:
        The connection.

    Raises:
        RunctlError: From `error`, when SQLite fails.
    """
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise error("open", exc) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if prepare is not None:
            prepare(conn)
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise error("use", exc) from exc
    finally:
        conn.close()
