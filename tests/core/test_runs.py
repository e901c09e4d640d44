"""The run registry: round trips, ordering, updates, WAL, and several processes at once."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runctl_tui.core import paths
from runctl_tui.core.errors import NotFoundError, RunctlError
from runctl_tui.core.models import Provider, Run, RunStatus
from runctl_tui.core.runs import RunRegistry, new_run_id


def make_run(run_id: str, started: float, **extra: object) -> Run:
    fields: dict[str, object] = {
        "id": run_id,
        "backend": Provider.LOCAL,
        "machine": "local",
        "script": "train.py",
        "args": ("--lr", "0.1", "a b; 'c'"),
        "cwd": "/tmp/project",
        "status": RunStatus.RUNNING,
        "started": started,
        "log_path": f"/tmp/project/runs/{run_id}/train.log",
        "checkpoint_dir": "/tmp/project/checkpoints",
    }
    fields.update(extra)
    return Run(**fields)  # type: ignore[arg-type]


def test_default_path_is_in_the_state_dir_and_uses_wal() -> None:
    registry = RunRegistry()
    registry.add(make_run("r1", 1.0))
    assert registry.path == paths.state_dir() / "runs.db"
    conn = sqlite3.connect(registry.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert registry.path.stat().st_mode & 0o077 == 0


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    registry = RunRegistry(tmp_path / "runs.db")
    run = make_run(
        "r1",
        1700000000.5,
        interpreter="uv run",
        pid=4242,
        pid_start_time=123.25,
        ended=1700000100.0,
        exit_code=3,
        note="resumed from ckpt",
        status=RunStatus.FAILED,
    )
    registry.add(run)
    assert RunRegistry(tmp_path / "runs.db").get("r1") == run


def test_list_newest_first_and_filtered_by_backend(tmp_path: Path) -> None:
    registry = RunRegistry(tmp_path / "runs.db")
    registry.add(make_run("old", 10.0))
    registry.add(make_run("pod", 20.0, backend=Provider.RUNPOD, machine="pod1"))
    registry.add(make_run("new", 30.0))
    assert [r.id for r in registry.list()] == ["new", "pod", "old"]
    assert [r.id for r in registry.list(Provider.LOCAL)] == ["new", "old"]
    assert [r.id for r in registry.list(Provider.AWS)] == []
    registry.update("old", status=RunStatus.FAILED)
    assert [r.id for r in registry.list(status=RunStatus.RUNNING)] == ["new", "pod"]
    assert [r.id for r in registry.list(Provider.LOCAL, status=RunStatus.RUNNING)] == ["new"]
    assert [r.id for r in registry.list(Provider.LOCAL, status=RunStatus.FAILED)] == ["old"]


def test_update_changes_only_named_fields(tmp_path: Path) -> None:
    registry = RunRegistry(tmp_path / "runs.db")
    registry.add(make_run("r1", 1.0, pid=7))
    updated = registry.update("r1", status=RunStatus.STOPPED, exit_code=-2, ended=5.0)
    assert updated.status is RunStatus.STOPPED
    assert (updated.exit_code, updated.ended, updated.pid) == (-2, 5.0, 7)
    assert registry.get("r1") == updated
    assert registry.update("r1", args=["x"]).args == ("x",)


def test_update_rejects_unknown_fields_and_ids(tmp_path: Path) -> None:
    registry = RunRegistry(tmp_path / "runs.db")
    registry.add(make_run("r1", 1.0))
    with pytest.raises(ValueError, match="colour"):
        registry.update("r1", colour="red")
    with pytest.raises(ValueError, match="id"):
        registry.update("r1", id="r2")


def test_missing_run_raises_not_found_with_a_hint(tmp_path: Path) -> None:
    registry = RunRegistry(tmp_path / "runs.db")
    with pytest.raises(NotFoundError, match="runctl runs"):
        registry.get("nope")
    with pytest.raises(NotFoundError):
        registry.update("nope", status=RunStatus.LOST)


def test_duplicate_id_is_refused(tmp_path: Path) -> None:
    registry = RunRegistry(tmp_path / "runs.db")
    registry.add(make_run("r1", 1.0))
    with pytest.raises(RunctlError, match="already recorded"):
        registry.add(make_run("r1", 2.0))


def test_latest_for_machine(tmp_path: Path) -> None:
    registry = RunRegistry(tmp_path / "runs.db")
    assert registry.latest_for_machine(Provider.RUNPOD, "pod1") is None
    registry.add(make_run("a", 1.0, backend=Provider.RUNPOD, machine="pod1"))
    registry.add(make_run("b", 3.0, backend=Provider.RUNPOD, machine="pod1"))
    registry.add(make_run("c", 5.0, backend=Provider.RUNPOD, machine="pod2"))
    registry.add(make_run("d", 7.0, backend=Provider.AWS, machine="pod1"))
    latest = registry.latest_for_machine(Provider.RUNPOD, "pod1")
    assert latest is not None
    assert latest.id == "b"


def test_new_run_ids_are_unique_and_sortable() -> None:
    # 24 random bits: 20 ids in one second collide with a chance of about 1 in 80,000.
    ids = [new_run_id() for _ in range(20)]
    assert len(set(ids)) == len(ids)
    assert ids[0][:8] == time.strftime("%Y%m%d", time.gmtime())
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", ids[0])


def test_corrupt_database_gives_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunctlError, match="move it aside"):
        RunRegistry(path).list()


def test_several_processes_write_at_once(tmp_path: Path) -> None:
    """Four processes each add and update 25 runs concurrently; nothing is lost or locked out."""
    db = tmp_path / "runs.db"
    RunRegistry(db).list()
    code = (
        "import sys\n"
        "from runctl_tui.core.models import Provider, Run, RunStatus\n"
        "from runctl_tui.core.runs import RunRegistry\n"
        "reg = RunRegistry(__import__('pathlib').Path(sys.argv[1]))\n"
        "for i in range(25):\n"
        "    rid = f'{sys.argv[2]}-{i}'\n"
        "    reg.add(Run(id=rid, backend=Provider.LOCAL, machine='local', script='s', args=(),\n"
        "                cwd='/', status=RunStatus.RUNNING, started=float(i), log_path='l',\n"
        "                checkpoint_dir='c'))\n"
        "    reg.update(rid, status=RunStatus.SUCCEEDED, exit_code=0)\n"
        "    reg.list()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), f"p{n}"]) for n in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    runs = RunRegistry(db).list()
    assert len(runs) == 100
    assert {r.status for r in runs} == {RunStatus.SUCCEEDED}
