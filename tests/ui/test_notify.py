"""Which fleet changes become notifications, and the flags rows carry."""

from __future__ import annotations

from dataclasses import replace

from runctl_tui.core.fleet import FleetRow, RunProgress
from runctl_tui.core.models import Machine, MachineState, Provider, Run, RunStatus
from runctl_tui.ui.notify import EventDetector


def _machine(provider: Provider, mid: str, state: MachineState) -> Machine:
    return Machine(provider, mid, mid, state)


def _run(run_id: str, machine: str, started: float, status: RunStatus) -> Run:
    return Run(run_id, Provider.RUNPOD, machine, "t.py", (), "/w", status, started, "l", "c")


def test_events_fire_on_changes_only_and_flags_once_per_run() -> None:
    machine = _machine(Provider.RUNPOD, "a", MachineState.RUNNING)
    running = _run("r1", "a", 1.0, RunStatus.RUNNING)
    detector = EventDetector()
    assert detector.update([FleetRow(machine, running)], 0.0) == [], "baseline is silent"
    diverged = RunProgress(step=5, loss=float("nan"), alert="diverged", alert_message="loss NaN")
    events = detector.update([FleetRow(machine, running, diverged)], 1.0)
    assert [e.kind for e in events] == ["diverged"]
    assert detector.flags == {"runpod:a": "diverged"}
    detector.update([FleetRow(machine, running, RunProgress(step=6, loss=0.1))], 2.0)
    again = detector.update([FleetRow(machine, running, diverged)], 3.0)
    assert again == [], "a noisy loss is announced once per run"
    failed = replace(running, status=RunStatus.FAILED, exit_code=2)
    events = detector.update([FleetRow(machine, failed)], 4.0)
    assert [(e.kind, e.severity) for e in events] == [("failed", "error")]
    assert "exit 2" in events[0].message
    gone = replace(machine, state=MachineState.INTERRUPTED)
    events = detector.update([FleetRow(gone, failed)], 5.0)
    assert [e.kind for e in events] == ["spot-interrupted"]
