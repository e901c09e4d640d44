"""The run registry: every training run runctl started, in one SQLite database.

The database lives in the XDG state dir (`runs.db`) in WAL mode, so the dashboard and several
`runctl` processes can read and write it at once. Every call opens its own short-lived
connection: the calls are cheap, thread-safe, and meant to be wrapped in `asyncio.to_thread`
from async code.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runctl_tui.core import paths
from runctl_tui.core.errors import NotFoundError, RunctlError
from runctl_tui.core.models import Provider, Run, RunStatus
from runctl_tui.core.sqlite_file import shared_transaction

_SCHEMA_VERSION = 1

_SQL_TYPES: dict[str, str] = {
    "id": "TEXT PRIMARY KEY",
    "backend": "TEXT NOT NULL",
    "machine": "TEXT NOT NULL",
    "script": "TEXT NOT NULL",
    "args": "TEXT NOT NULL",
    "cwd": "TEXT NOT NULL",
    "status": "TEXT NOT NULL",
    "started": "REAL NOT NULL",
    "log_path": "TEXT NOT NULL",
    "checkpoint_dir": "TEXT NOT NULL",
    "interpreter": "TEXT NOT NULL DEFAULT ''",
    "pid": "INTEGER",
    "pid_start_time": "REAL",
    "ended": "REAL",
    "exit_code": "INTEGER",
    "note": "TEXT NOT NULL DEFAULT ''",
}
_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Run))


def new_run_id() -> str:
    """A fresh run id: sortable by start time, short enough to type, e.g. `20261129-085100-3fa2c1`.

    Returns:
        The id; the random suffix keeps ids unique when several runs start in one second.
    """
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def default_registry_path() -> Path:
    """`$XDG_STATE_HOME/runctl/runs.db`."""
    return paths.state_dir() / "runs.db"


def _to_row(run: Run) -> dict[str, Any]:
    row = dataclasses.asdict(run)
    row["backend"] = run.backend.value
    row["status"] = run.status.value
    row["args"] = json.dumps(list(run.args))
    return row


def _rows(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row


def _from_row(row: sqlite3.Row) -> Run:
    data = {name: row[name] for name in _COLUMNS}
    data["backend"] = Provider(data["backend"])
    data["status"] = RunStatus(data["status"])
    data["args"] = tuple(json.loads(data["args"]))
    return Run(**data)


class RunRegistry:
    """Records of training runs: add, get, list, update.

    Args:
        path: The database file; None: `default_registry_path()`. Created (with its folder,
            private to the user) on first use.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_registry_path()
        self._initialised = False

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction; `write` takes the write lock up front (no upgrades)."""
        if not self._initialised:
            self._initialise()
        with shared_transaction(self.path, self._error, write=write, prepare=_rows) as conn:
            yield conn

    def _error(self, verb: str, exc: sqlite3.Error) -> RunctlError:
        return RunctlError(
            f"could not {verb} the run registry {self.path} ({exc}); check that the file is "
            "readable and writable, or move it aside to start a fresh registry"
        )

    def _initialise(self) -> None:
        """Create the folder, the file, WAL mode and the table; add columns a newer Run has."""
        paths.ensure_dir(self.path.parent)

        def prepare(conn: sqlite3.Connection) -> None:
            self.path.chmod(0o600)
            # WAL lets readers (the dashboard) proceed while a `runctl` process writes.
            conn.execute("PRAGMA journal_mode = WAL")

        with shared_transaction(self.path, self._error, write=True, prepare=prepare) as conn:
            columns = ", ".join(f"{name} {_SQL_TYPES.get(name, '')}" for name in _COLUMNS)
            conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({columns})")
            existing = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
            for name in _COLUMNS:
                if name not in existing:
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {_SQL_TYPES.get(name, '')}")
            conn.execute("CREATE INDEX IF NOT EXISTS runs_started ON runs (started DESC)")
            conn.execute(
                "CREATE INDEX IF NOT EXISTS runs_machine ON runs (backend, machine, started DESC)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS runs_status ON runs (status)")
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        self._initialised = True

    def add(self, run: Run) -> None:
        """Record a new run.

        Args:
            run: The run; its id must not be in the registry yet.

        Raises:
            RunctlError: The id is already taken, or the database cannot be written.
        """
        row = _to_row(run)
        names = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        try:
            with self._connect(write=True) as conn:
                conn.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", row)
        except RunctlError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise RunctlError(
                    f"a run with id {run.id} is already recorded; start it under a new id"
                ) from exc
            raise

    def get(self, run_id: str) -> Run:
        """The run with this id.

        Args:
            run_id: The id, as `runctl runs` shows it.

        Returns:
            The recorded run.

        Raises:
            NotFoundError: No run has this id.
        """
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"no run with id '{run_id}'; `runctl runs --all` lists the recorded runs"
            )
        return _from_row(row)

    def list(
        self, backend: Provider | None = None, *, status: RunStatus | None = None
    ) -> builtins.list[Run]:
        """Recorded runs, newest first.

        Args:
            backend: Only runs of this provider; None: all.
            status: Only runs in this status (e.g. the running ones reconcile checks).

        Returns:
            The runs, ordered by start time, newest first.
        """
        where: builtins.list[str] = []
        params: builtins.list[str] = []
        if backend is not None:
            where.append("backend = ?")
            params.append(Provider(backend).value)
        if status is not None:
            where.append("status = ?")
            params.append(RunStatus(status).value)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT * FROM runs {clause}ORDER BY started DESC, id DESC", params
            ).fetchall()
        return [_from_row(row) for row in rows]

    def update(self, run_id: str, **changes: Any) -> Run:
        """Change fields of a recorded run and return the run as now recorded.

        Args:
            run_id: The run to change.
            **changes: Run field names and their new values (e.g. `status=RunStatus.STOPPED`).

        Returns:
            The updated run.

        Raises:
            NotFoundError: No run has this id.
            ValueError: A change names a field Run does not have, or tries to change the id.
        """
        unknown = sorted(set(changes) - set(_COLUMNS))
        if unknown or "id" in changes:
            raise ValueError(f"cannot update run field(s): {', '.join(unknown or ['id'])}")
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "args":
                value = json.dumps(list(value))
            elif name == "status":
                value = RunStatus(value).value
            elif name == "backend":
                value = Provider(value).value
            values[name] = value
        with self._connect(write=True) as conn:
            if values:
                assignments = ", ".join(f"{name} = :{name}" for name in values)
                conn.execute(
                    f"UPDATE runs SET {assignments} WHERE id = :_run_id",
                    {**values, "_run_id": run_id},
                )
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"no run with id '{run_id}'; `runctl runs --all` lists the recorded runs"
            )
        return _from_row(row)

    def latest_for_machine(self, provider: Provider, machine_id: str) -> Run | None:
        """The newest run on one machine, or None when it never ran anything.

        Args:
            provider: The machine's provider.
            machine_id: The machine's id (`local` for this computer).

        Returns:
            The most recently started run there, or None.
        """
        with self._connect() as conn:
            row = conn.execute(
                "SELECT * FROM runs WHERE backend = ? AND machine = ? "
                "ORDER BY started DESC, id DESC LIMIT 1",
                (Provider(provider).value, machine_id),
            ).fetchone()
        return _from_row(row) if row is not None else None
