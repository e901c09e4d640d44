"""Noticing what deserves a notification: runs finishing, failing, diverging or stalling, and
spot machines being taken back.

`EventDetector` compares each fleet update with the previous one; the dashboard turns its
events into notifications and a terminal bell (`[ui] bell`), and shows its flags in the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from runctl_tui.core.fleet import FleetRow
from runctl_tui.core.models import MachineState, RunStatus

Severity = Literal["information", "warning", "error"]


@dataclass(frozen=True)
class FleetEvent:
    """Something that happened to a run or a machine."""

    key: str
    """The machine's key."""
    kind: str
    """`finished`, `failed`, `stopped`, `lost`, `interrupted`, `diverged`, `stalled`,
    `spot-interrupted`."""
    message: str
    severity: Severity


def _label(row: FleetRow) -> str:
    return f"{row.machine.provider.value} {row.machine.name or row.machine.id}"


def _run_event(row: FleetRow, before: RunStatus | None) -> FleetEvent | None:
    run = row.run
    if run is None or before is not RunStatus.RUNNING or run.status is RunStatus.RUNNING:
        return None
    where = _label(row)
    status = run.status
    if status is RunStatus.SUCCEEDED:
        return FleetEvent(row.key, "finished", f"Run {run.id} on {where} finished.", "information")
    if status is RunStatus.FAILED:
        code = f" (exit {run.exit_code})" if run.exit_code is not None else ""
        return FleetEvent(row.key, "failed", f"Run {run.id} on {where} failed{code}.", "error")
    if status is RunStatus.INTERRUPTED:
        return FleetEvent(
            row.key, "interrupted", f"Run {run.id} on {where} was interrupted.", "error"
        )
    if status is RunStatus.LOST:
        note = f": {run.note}" if run.note else ""
        return FleetEvent(row.key, "lost", f"Run {run.id} on {where} was lost{note}.", "warning")
    return FleetEvent(row.key, "stopped", f"Run {run.id} on {where} stopped.", "information")


class EventDetector:
    """Turns successive fleet states into events and per-row flags.

    Divergence and stalls come from the metrics package's alerts (`RunProgress.alert`); this
    class only notices when they, a run's status or a machine's state change. Each flag is
    announced once per run, however often a noisy loss crosses the threshold.
    """

    def __init__(self) -> None:
        self._runs: dict[str, tuple[str, RunStatus]] = {}
        self._states: dict[str, MachineState] = {}
        self._flagged: set[tuple[str, str]] = set()
        self.flags: dict[str, str] = {}
        """Current marks by machine key: `diverged`, `stalled`, `spot interrupted`."""
        self._primed = False

    def _flag(self, row: FleetRow, now: float) -> str | None:
        if row.machine.state is MachineState.INTERRUPTED:
            return "spot interrupted"
        run, progress = row.run, row.progress
        if run is None or run.status is not RunStatus.RUNNING or progress is None:
            return None
        return progress.alert

    def update(self, rows: Sequence[FleetRow], now: float) -> list[FleetEvent]:
        """Compare with the previous update.

        Args:
            rows: The fleet now.
            now: Epoch seconds.

        Returns:
            Events since the previous call (none on the first call: that is the baseline, so a
            restart does not replay old news).
        """
        events: list[FleetEvent] = []
        flags: dict[str, str] = {}
        for row in rows:
            key = row.key
            before_run = self._runs.get(key)
            if self._primed and row.run is not None:
                same_run = before_run is not None and before_run[0] == row.run.id
                event = _run_event(row, before_run[1] if same_run and before_run else None)
                if event:
                    events.append(event)
            before_state = self._states.get(key)
            if (
                self._primed
                and row.machine.state is MachineState.INTERRUPTED
                and before_state is not None
                and before_state is not MachineState.INTERRUPTED
            ):
                events.append(
                    FleetEvent(
                        key,
                        "spot-interrupted",
                        f"Spot machine {_label(row)} was interrupted by the provider.",
                        "error",
                    )
                )
            flag = self._flag(row, now)
            if flag:
                flags[key] = flag
                run_id = row.run.id if row.run else "?"
                first_time = (run_id, flag) not in self._flagged
                self._flagged.add((run_id, flag))
                if self._primed and first_time and flag != "spot interrupted":
                    why = row.progress.alert_message if row.progress else None
                    events.append(
                        FleetEvent(
                            key,
                            flag,
                            f"Run {run_id} on {_label(row)} {flag}" + (f": {why}." if why else "."),
                            "warning",
                        )
                    )
            if row.run is not None:
                self._runs[key] = (row.run.id, row.run.status)
            self._states[key] = row.machine.state
        self.flags = flags
        self._primed = True
        return events
