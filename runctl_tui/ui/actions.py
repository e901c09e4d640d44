"""What the dashboard's action keys do: create, train, resume, stop, start, terminate.

Each action asks (a modal) before it changes anything, refuses in readonly mode with a
notification, and runs the change in a worker so the keyboard never waits for a provider.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work

from runctl_tui.core.aio import wait_for
from runctl_tui.core.config import Config
from runctl_tui.core.errors import BackendError, NotFoundError, RunctlError
from runctl_tui.core.fleet import Fleet, FleetRow, is_running
from runctl_tui.core.models import CreateSpec, Machine, MachineState, Provider, Run
from runctl_tui.core.runs import RunRegistry
from runctl_tui.core.session_state import SessionState
from runctl_tui.core.ssh_ready import WAITING

if TYPE_CHECKING:
    from textual.app import App

READONLY_HINT = "the dashboard is readonly (--readonly or [ui] readonly)"
CHECK_TIMEOUT_SECONDS = 20.0
"""How long the terminate dialog waits for a machine (and S3) to list its checkpoints."""
SHOWN_CHECKPOINTS = 5
"""Checkpoints named per folder in the terminate dialog; the rest are counted."""


def _label(machine: Machine) -> str:
    return f"{machine.provider.value} {machine.name or machine.id}"


def not_reachable_yet(row: FleetRow) -> str | None:
    """Why training cannot start on this pod/instance yet, or None when it can be tried.

    A machine still booting, stopped, or running without having accepted an SSH login yet
    (its row says `ssh…`) is refused with a sentence; one whose first login attempt is still
    under way may be tried (starting a run logs in anyway).
    """
    machine = row.machine
    if machine.provider is Provider.LOCAL:
        return None
    label = _label(machine)
    if machine.state in (MachineState.PROVISIONING, MachineState.STARTING):
        return (
            f"{label} is still {machine.state.value}; training can start once its row says "
            "ready (SSH answers)."
        )
    if machine.state is not MachineState.RUNNING:
        hint = " Start it with `S` first." if machine.state is MachineState.STOPPED else ""
        return f"{label} is {machine.state.value}, not running.{hint}"
    ssh = row.ssh
    if ssh is not None and ssh.state == WAITING:
        why = f" (last try: {ssh.error.rstrip('.')})" if ssh.error else ""
        return (
            f"{label} is running but does not accept an SSH login yet{why}; training can "
            "start once its row says ready."
        )
    return None


def _spot_refusal(spec: CreateSpec, exc: BaseException) -> Any | None:
    """The AWS backend's `SpotFallbackRequired`, if that is what `exc` is."""
    if spec.provider is not Provider.AWS:
        return None
    # The AWS backend module is already imported when an AWS backend exists; importing it
    # here keeps boto3's module graph off the dashboard's start-up path.
    aws = importlib.import_module("runctl_tui.core.backends.aws")
    return exc if isinstance(exc, aws.SpotFallbackRequired) else None


def _per_hour(price: float | None, estimate: bool = False) -> str:
    if price is None:
        return "an unknown price"
    return f"{'~' if estimate else ''}${price:.4f}/h"


def spot_fallback_question(refused: Any) -> str:
    """The question asked when spot capacity is missing, stating both prices.

    Args:
        refused: The AWS backend's `SpotFallbackRequired` (`instance_type`, `spot_price`,
            `on_demand_price`).

    Returns:
        E.g. `No spot capacity for g5.xlarge: spot $0.3512/h unavailable; launch on-demand
        at ~$1.0060/h?`.
    """
    spot = f" {_per_hour(refused.spot_price)}" if refused.spot_price is not None else ""
    on_demand = _per_hour(refused.on_demand_price, estimate=True)
    return (
        f"No spot capacity for {refused.instance_type}: spot{spot} unavailable; "
        f"launch on-demand at {on_demand}?"
    )


async def uncopied_checkpoints(
    machine: Machine, runs: Sequence[Run], config: Config, backend: Any, registry: RunRegistry
) -> list[str]:
    """Sentences naming the checkpoints that terminating `machine` would destroy.

    A pod's checkpoints live on the pod's disk, so every checkpoint of its runs still there is
    named. An EC2 run's checkpoints are safe once they are in its `--output-s3` bucket, so
    `aws_training.unsynced_checkpoint_warning` compares the instance with S3. A machine that
    cannot be asked (stopped, no SSH) is said to be unchecked, never reported as clean.

    Args:
        machine: The machine about to be terminated.
        runs: Every recorded run on it, newest first.
        config: The effective configuration.
        backend: Its provider's backend.
        registry: The run registry the runs come from.

    Returns:
        One sentence per problem; empty when nothing is known to be left on it.
    """
    if not runs:
        return []
    newest_run = runs[0]
    if machine.provider is Provider.AWS:
        if machine.state is not MachineState.RUNNING or machine.ssh is None:
            return [
                f"run {newest_run.id}'s checkpoints in {newest_run.checkpoint_dir} on the "
                f"{machine.state.value} instance could not be checked against S3; start it "
                "(`S`) to check, or they may be lost"
            ]
        aws_training = importlib.import_module("runctl_tui.core.aws_training")
        warning = await aws_training.unsynced_checkpoint_warning(
            config, backend, machine.id, registry=registry
        )
        return [warning] if warning else []
    if machine.ssh is None or machine.ssh.interactive_only:
        return [
            f"run {newest_run.id}'s checkpoints in {newest_run.checkpoint_dir} on the "
            f"{machine.state.value} pod could not be listed (no direct SSH); they are lost "
            "with it unless copied off"
        ]
    runpod_training = importlib.import_module("runctl_tui.core.runpod_training")
    problems: list[str] = []
    for directory in dict.fromkeys(r.checkpoint_dir for r in runs if r.checkpoint_dir):
        try:
            entries = await runpod_training.list_pod_checkpoints(machine, directory)
        except NotFoundError:
            continue
        if not entries:
            continue
        owner = next(r for r in runs if r.checkpoint_dir == directory)
        names = [e.name for e in entries[:SHOWN_CHECKPOINTS]]
        more = len(entries) - len(names)
        listed = ", ".join(names) + (f" and {more} more" if more > 0 else "")
        problems.append(
            f"{len(entries)} checkpoint(s) of run {owner.id} only on the pod in {directory}: "
            f"{listed}; copy them off first (`runctl runpod download`) or they are lost"
        )
    return problems


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

    def _row_for(self, what: str) -> FleetRow | None:
        """The selected row when `what` is allowed and a row is selected; else None (notified)."""
        if not self._allowed(what):
            return None
        return self._row_or_notify()

    def _resumable_run(self, row: FleetRow | None) -> Run | None:
        """The row's local run when it can be resumed; else None (notified)."""
        run = row.run if row is not None else None
        if run is None or run.backend is not Provider.LOCAL:
            self.app.notify("Select a machine with a local run to resume.", severity="warning")
            return None
        if is_running(run):
            self.app.notify(f"Run {run.id} is still running; stop it first (`s`).")
            return None
        return run

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
        # EC2 says what it launched at what price (and whether spot fell back to on-demand).
        create_instance = getattr(backend, "create_instance", None)
        said = ""
        try:
            if create_instance is not None:
                outcome = await create_instance(spec)
                machine, said = outcome.machine, f"{outcome.message} "
            else:
                machine = await backend.create(spec)
        except BackendError as exc:
            refused = _spot_refusal(spec, exc)
            if refused is None:
                raise
            self._ask_spot_fallback(spec, refused)
            return
        self.app.notify(
            f"{said}{_label(machine)} is {machine.state.value}; it appears in the table "
            "(`t` trains on it once its row says ready).",
            title="created",
            timeout=12 if said else 5,
        )
        self.start_poller(spec.provider)

    def _ask_spot_fallback(self, spec: CreateSpec, refused: Any) -> None:
        """Spot capacity was refused and `[aws] spot_fallback = "ask"`: ask for on-demand."""
        from runctl_tui.ui.screens.confirm import ConfirmScreen

        question = ConfirmScreen(
            spot_fallback_question(refused),
            f"AWS said: {str(refused.reason).rstrip('.')}. Nothing was launched. The "
            "on-demand price is an estimate from runctl's price table; spot prices are live.",
            "Launch on-demand",
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._create(dataclasses.replace(spec, fallback="on-demand"))
            else:
                self.app.notify(
                    f"Nothing launched: no spot capacity for {refused.instance_type}.",
                    title="not created",
                )

        self.app.push_screen(question, answered)

    # ---- terminate ---------------------------------------------------------------------

    def action_terminate(self) -> None:
        """Terminate the selected machine after its name is typed (`x`)."""
        row = self._row_for("terminating a machine")
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
        return await wait_for(
            uncopied_checkpoints(
                row.machine,
                self.fleet.runs_on(row.machine),
                self.config,
                self.fleet.backends.get(row.machine.provider),
                self.fleet.registry,
            ),
            CHECK_TIMEOUT_SECONDS,
        )

    @work(group="terminate", exit_on_error=False, name="terminate")
    async def _terminate(self, machine: Machine) -> None:
        self.app.notify(f"Terminating {_label(machine)}…")
        await self.fleet.backends[machine.provider].terminate(machine.id)
        # Its cost so far stays in today's spend after it vanishes from the listing.
        await self.fleet.record_end(machine)
        self.app.notify(f"{_label(machine)} terminated.", title="terminated")
        self.start_poller(machine.provider)

    # ---- stop / start ------------------------------------------------------------------

    def action_stop(self) -> None:
        """Stop the selected machine, or the run on this computer (`s`)."""
        row = self._row_for("stopping anything")
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
        await self.fleet.record_end(machine)
        self.app.notify(f"{_label(result)} is {result.state.value}.", title="stop")
        self.start_poller(machine.provider)

    def action_start(self) -> None:
        """Start the selected stopped machine (`S`)."""
        row = self._row_for("starting a machine")
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
        row = self._row_for("starting a run")
        if row is None:
            return
        problem = not_reachable_yet(row)
        if problem is not None:
            self.app.notify(problem, title="not reachable yet", severity="warning", timeout=10)
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
        row = self._row_for("resuming a run")
        if row is None:
            return
        run = self._resumable_run(row)
        if run is None:
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
        run = self._resumable_run(self._row_or_notify())
        if run is None:
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
