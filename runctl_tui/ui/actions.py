"""What the dashboard's action keys do: create, train, resume, stop, start, terminate.

Each action asks (a modal) before it changes anything, refuses in readonly mode with a
notification, and runs the change in a worker so the keyboard never waits for a provider.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work

from runctl_tui.core.config import Config
from runctl_tui.core.errors import RunctlError
from runctl_tui.core.fleet import Fleet, FleetRow, is_running
from runctl_tui.core.models import CreateSpec, Machine, MachineState, Provider, Run
from runctl_tui.core.session_state import SessionState

if TYPE_CHECKING:
    from textual.app import App

READONLY_HINT = "the dashboard is readonly (--readonly or [ui] readonly)"


def _label(machine: Machine) -> str:
    return f"{machine.provider.value} {machine.name or machine.id}"


class FleetActions:
    """Mixin for the dashboard screen: the action keys."""

    config: Config
    fleet: Fleet
    readonly: bool
    session: SessionState
    clock: Callable[[], float]
    if TYPE_CHECKING:
        app: App[Any]

        def selected_row(self) -> FleetRow | None: ...
        def start_poller(self, provider: Provider) -> None: ...
        def refresh_runs_soon(self) -> None: ...
        def save_session(self) -> None: ...
        def _pane_widget(self, key: str) -> Any: ...

    def _allowed(self, what: str) -> bool:
        if self.readonly:
            self.app.notify(f"Not {what}: {READONLY_HINT}.", title="readonly", severity="warning")
            return False
        return True

    def _row_or_notify(self) -> FleetRow | None:
        row = self.selected_row()
        if row is None:
            self.app.notify("Select a machine first.", severity="warning")
        return row

    # ---- create ------------------------------------------------------------------------

    def action_create(self) -> None:
        """Open the create form (`c`)."""
        if not self._allowed("creating a machine"):
            return
        from runctl_tui.ui.screens.create_machine import CreateMachineScreen

        self.app.push_screen(CreateMachineScreen(self.fleet.backends, self.config), self._created)

    def _created(self, spec: CreateSpec | None) -> None:
        if spec is not None:
            self._create(spec)

    @work(group="create", exit_on_error=False, name="create")
    async def _create(self, spec: CreateSpec) -> None:
        backend = self.fleet.backends[spec.provider]
        self.app.notify(f"Creating a {spec.provider.value} {spec.machine_type}…")
        machine = await backend.create(spec)
        self.app.notify(
            f"{_label(machine)} is {machine.state.value}; it appears in the table.",
            title="created",
        )
        self.start_poller(spec.provider)

    # ---- terminate ---------------------------------------------------------------------

    def action_terminate(self) -> None:
        """Terminate the selected machine after its name is typed (`x`)."""
        if not self._allowed("terminating a machine"):
            return
        row = self._row_or_notify()
        if row is None:
            return
        machine = row.machine
        if machine.provider is Provider.LOCAL:
            self.app.notify("This computer cannot be terminated; `s` stops its run.")
            return
        from runctl_tui.ui.screens.terminate_confirm import TerminateConfirmScreen

        def check() -> Any:
            return self._uncopied_checkpoints(row)

        def done(confirmed: bool | None) -> None:
            if confirmed:
                self._terminate(machine)

        self.app.push_screen(TerminateConfirmScreen(machine, self.clock(), check), done)

    async def _uncopied_checkpoints(self, row: FleetRow) -> list[str]:
        """Checkpoints that exist only on this machine (asks the machine, with a timeout)."""
        from runctl_tui.ui.remote import uncopied_checkpoints

        backend = self.fleet.backends.get(row.machine.provider)
        return await uncopied_checkpoints(
            row, self.fleet.runs_on(row.machine), self.config, backend
        )

    @work(group="terminate", exit_on_error=False, name="terminate")
    async def _terminate(self, machine: Machine) -> None:
        self.app.notify(f"Terminating {_label(machine)}…")
        await self.fleet.backends[machine.provider].terminate(machine.id)
        self.app.notify(f"{_label(machine)} terminated.", title="terminated")
        self.start_poller(machine.provider)

    # ---- stop / start ------------------------------------------------------------------

    def action_stop(self) -> None:
        """Stop the selected machine, or the run on this computer (`s`)."""
        if not self._allowed("stopping anything"):
            return
        row = self._row_or_notify()
        if row is None:
            return
        from runctl_tui.ui.screens.confirm import ConfirmScreen

        machine, run = row.machine, row.run
        if machine.provider is Provider.LOCAL:
            if run is None or not is_running(run):
                self.app.notify("No run is running on this computer.")
                return
            question = ConfirmScreen(
                f"Stop run {run.id}?",
                f"{run.script} gets SIGINT (it may save a checkpoint), then SIGTERM after "
                f"{self.config.local.stop_grace_seconds:g} s.",
                "Stop run",
            )
            run_id = run.id

            def stop_run(ok: bool | None) -> None:
                if ok:
                    self._stop_local(run_id)

            self.app.push_screen(question, stop_run)
            return
        if machine.state is MachineState.STOPPED:
            self.app.notify(f"{_label(machine)} is already stopped.")
            return
        detail = "Compute billing stops; the disk is kept."
        if is_running(run):
            assert run is not None
            detail += f" Run {run.id} on it is killed."
        question = ConfirmScreen(f"Stop {_label(machine)}?", detail, "Stop machine")

        def stop_machine(ok: bool | None) -> None:
            if ok:
                self._stop_machine(machine)

        self.app.push_screen(question, stop_machine)

    @work(group="stop", exit_on_error=False, name="stop run", thread=True)
    def _stop_local(self, run_id: str) -> None:
        local_runs = importlib.import_module("runctl_tui.core.local_runs")
        self.app.call_from_thread(self.app.notify, f"Stopping run {run_id}…")
        run = local_runs.stop_run(self.config, run_id)
        self.app.call_from_thread(
            self.app.notify, f"Run {run.id} is {run.status.value}.", title="stopped"
        )
        self.app.call_from_thread(self.refresh_runs_soon)

    @work(group="stop", exit_on_error=False, name="stop machine")
    async def _stop_machine(self, machine: Machine) -> None:
        result = await self.fleet.backends[machine.provider].stop(machine.id)
        self.app.notify(f"{_label(result)} is {result.state.value}.", title="stop")
        self.start_poller(machine.provider)

    def action_start(self) -> None:
        """Start the selected stopped machine (`S`)."""
        if not self._allowed("starting a machine"):
            return
        row = self._row_or_notify()
        if row is None:
            return
        machine = row.machine
        if machine.provider is Provider.LOCAL:
            self.app.notify("This computer is always on; `t` starts a training run.")
            return
        from runctl_tui.ui.screens.confirm import ConfirmScreen

        price = machine.price_per_hour
        cost = f"It bills ${price:.2f}/h while running." if price is not None else ""
        question = ConfirmScreen(f"Start {_label(machine)}?", cost, "Start machine")

        def start_machine(ok: bool | None) -> None:
            if ok:
                self._start_machine(machine)

        self.app.push_screen(question, start_machine)

    @work(group="start", exit_on_error=False, name="start machine")
    async def _start_machine(self, machine: Machine) -> None:
        result = await self.fleet.backends[machine.provider].start(machine.id)
        self.app.notify(f"{_label(result)} is {result.state.value}.", title="start")
        self.start_poller(machine.provider)

    # ---- train / resume ----------------------------------------------------------------

    def action_train(self) -> None:
        """Start a training run on the selected machine (`t`)."""
        if not self._allowed("starting a run"):
            return
        row = self._row_or_notify()
        if row is None:
            return
        from runctl_tui.ui.screens.train_form import TrainFormScreen, TrainRequest

        def done(request: TrainRequest | None) -> None:
            if request is None:
                return
            self.session.train = request.values
            self.save_session()
            if row.machine.provider is Provider.LOCAL:
                self._launch(request.script, request.args, request.checkpoint_dir)
            else:
                self._train_remote(row, request.script, request.args)

        remote = row.machine.provider is not Provider.LOCAL
        form = TrainFormScreen(_label(row.machine), self.session.train, remote=remote)
        self.app.push_screen(form, done)

    def action_resume(self) -> None:
        """Resume the selected run from the checkpoint selected in the checkpoint pane (`r`)."""
        if not self._allowed("resuming a run"):
            return
        row = self._row_or_notify()
        if row is None:
            return
        run = row.run
        if run is None or run.backend is not Provider.LOCAL:
            self.app.notify("Select a machine with a local run to resume.", severity="warning")
            return
        if is_running(run):
            self.app.notify(f"Run {run.id} is still running; stop it first (`s`).")
            return
        checkpoint = self._selected_checkpoint()
        if checkpoint is None:
            self.app.notify(
                "Select a checkpoint in the checkpoint pane (`2`) first.", severity="warning"
            )
            return
        self.resume_from(checkpoint)

    def resume_from(self, checkpoint: Path) -> None:
        """Resume the selected machine's last local run from `checkpoint`."""
        if not self._allowed("resuming a run"):
            return
        row = self._row_or_notify()
        run = row.run if row is not None else None
        if run is None or run.backend is not Provider.LOCAL:
            self.app.notify("Select a machine with a local run to resume.", severity="warning")
            return
        if is_running(run):
            self.app.notify(f"Run {run.id} is still running; stop it first (`s`).")
            return
        self._resume(run, str(checkpoint))

    def _selected_checkpoint(self) -> Path | None:
        widget = self._pane_widget("checkpoints")
        for name in ("selected_entry", "selected_path", "selected_checkpoint"):
            value = getattr(widget, name, None)
            if callable(value):
                value = value()
            path = getattr(value, "path", value)
            if isinstance(path, (str, Path)) and str(path):
                return Path(path)
        return None

    @work(group="launch", exit_on_error=False, name="resume run", thread=True)
    def _resume(self, run: Run, checkpoint: str) -> None:
        local_runs = importlib.import_module("runctl_tui.core.local_runs")
        try:
            new = local_runs.resume_local_run(self.config, run, checkpoint)
        except RunctlError as exc:
            self.app.call_from_thread(
                self.app.notify, str(exc), title="not resumed", severity="error", timeout=15
            )
            return
        self.app.call_from_thread(
            self.app.notify, f"Run {new.id} resumed from {Path(checkpoint).name}.", title="run"
        )
        self.app.call_from_thread(self.refresh_runs_soon)

    @work(group="launch", exit_on_error=False, name="start remote run")
    async def _train_remote(self, row: FleetRow, script: str, args: tuple[str, ...]) -> None:
        from runctl_tui.ui.remote import start_remote_training

        where = _label(row.machine)
        self.app.notify(f"Syncing this folder to {where} and starting {script}…")
        backend = self.fleet.backends[row.machine.provider]

        def progress(line: str) -> None:
            self.app.notify(line, title=where, timeout=4)

        run = await start_remote_training(row, self.config, backend, script, args, progress)
        self.app.notify(f"Run {run.id} started on {where}.", title="run")
        self.refresh_runs_soon()

    @work(group="launch", exit_on_error=False, name="start run", thread=True)
    def _launch(self, script: str, args: tuple[str, ...], checkpoint_dir: str | None) -> None:
        local_runs = importlib.import_module("runctl_tui.core.local_runs")
        try:
            run = local_runs.launch_local_run(
                self.config, script, list(args), checkpoint_dir=checkpoint_dir
            )
        except RunctlError as exc:
            self.app.call_from_thread(
                self.app.notify, str(exc), title="not started", severity="error", timeout=15
            )
            return
        self.app.call_from_thread(
            self.app.notify, f"Run {run.id} started at {time.strftime('%H:%M:%S')}.", title="run"
        )
        self.app.call_from_thread(self.refresh_runs_soon)
