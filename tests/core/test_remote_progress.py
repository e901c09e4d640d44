"""`RemoteLogTail` over Debian's sshd: only new bytes each read, partial lines held back, a
truncated log started afresh, a NaN loss raised as an alert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runctl_tui.core.errors import BackendError
from runctl_tui.core.remote_progress import FIRST_READ_BYTES, RemoteLogTail


def losses(tail: RemoteLogTail) -> list[tuple[float | None, float]]:
    series = tail.stream.series.get("loss")
    return list(zip(series.steps, series.values, strict=True)) if series is not None else []


@pytest.mark.sshd
async def test_reads_only_what_was_appended_and_restarts_after_truncation(
    sshd_server: Any, tmp_path: Path
) -> None:
    log = tmp_path / "train.log"
    # A long history: the first read takes only its end, from a line boundary.
    filler = "".join(f"warmup line {i:06d}\n" for i in range(FIRST_READ_BYTES // 15))
    log.write_text(filler + "step 1 loss 2.0\nstep 2 loss 1.5\nstep 3 lo")
    tail = RemoteLogTail(sshd_server.endpoint, str(log))
    assert await tail.poll()
    assert losses(tail) == [(1, 2.0), (2, 1.5)]
    assert tail.offset == log.stat().st_size

    # The half-written line is completed later; nothing is read twice.
    with log.open("a") as out:
        out.write("ss 1.25\nstep 4 loss nan\n")
    assert await tail.poll()
    assert [s for s, _ in losses(tail)] == [1, 2, 3, 4]
    assert losses(tail)[2] == (3, 1.25)
    alerts = tail.stream.alerts(divergence_factor=5.0, stall_seconds=600.0)
    assert [a.kind for a in alerts] == ["nonfinite"], alerts
    assert not await tail.poll(), "nothing new"

    # Truncated (a new run in the same file): the series start again.
    log.write_text("step 1 loss 0.9\n")
    assert await tail.poll()
    assert losses(tail) == [(1, 0.9)]


@pytest.mark.sshd
async def test_a_missing_log_is_an_error_sentence(sshd_server: Any, tmp_path: Path) -> None:
    tail = RemoteLogTail(sshd_server.endpoint, str(tmp_path / "nope.log"))
    with pytest.raises(BackendError, match="could not read"):
        await tail.poll()
