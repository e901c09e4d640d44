"""The dashboard screen: machines on top, log / checkpoints / metrics below, all following the
selected machine's run.

Every backend is polled by its own exclusive worker; the run registry by another. Workers never
touch widgets: they post `FleetChanged`, and one handler redraws what changed. Nothing is awaited
before the first frame: backends are even built in a thread after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Input, Tab, Tabs
from textual.worker import Worker, WorkerState

from runctl_tui.core.config import Config
from runctl_tui.core.fleet import Fleet, FleetRow, ProviderSnapshot
from runctl_tui.core.models import Machine, MachineState, Provider, RunStatus
from runctl_tui.core.secrets import scrub
from runctl_tui.core.session_state import SessionState, load_session_state, save_session_state
from runctl_tui.ui.actions import FleetActions
from runctl_tui.ui.notify import EventDetector
from runctl_tui.ui.panes import LOWER_PANES, Pane, log_source_for, make_pane_widget, run_paths
from runctl_tui.ui.widgets.header_bar import HeaderBar
from runctl_tui.ui.widgets.machines_table import MachinesTable

PANE_KEYS = ("machines", *(spec.key for spec in LOWER_PANES))
TABBED_BELOW_WIDTH = 120
TABBED_BELOW_HEIGHT = 34
COMPACT_COLUMNS_BELOW_WIDTH = 150
MAX_BACKOFF_SECONDS = 120.0
REMOTE_RUN_CHECK_SECONDS = 30.0
"""How often runs on pods and instances are checked over SSH (finished, failed, interrupted)."""
HEADER_TICK_SECONDS = 5.0
"""How often the header's spend and freshness are worked out between polls (polls redraw it
at once)."""
QUIET_POLLS = 3
"""Polls in a row that changed nothing before a backend is polled less often."""
STEADY_STATES = frozenset(
    {MachineState.RUNNING, MachineState.STOPPED, MachineState.TERMINATED, MachineState.INTERRUPTED}
)
"""States a machine stays in until something happens to it."""


def _lifecycle(snapshot: ProviderSnapshot) -> tuple[object, ...]:
    """What a backend's poll says about its machines' lives (not their telemetry)."""
    return (snapshot.error, tuple((m.id, m.state) for m in snapshot.machines))


class FleetChanged(Message):
    """A backend or the run registry answered with something new."""


class DashboardScreen(FleetActions, Screen[None]):
    """Machines, runs, logs, checkpoints and curves.

    Args:
        config: The effective configuration.
        fleet: The fleet to show (its backends are built after the first frame if empty).
        readonly: Refuse every action that creates, changes or destroys.
        clock: Epoch-seconds clock.
        poll: Whether to start the polling workers (off for fixed pictures).
        state_path: Where the last selection is remembered.
        select: Key of a machine to open on, over the remembered one.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "next_pane", "Next pane", show=False),
        Binding("shift+tab", "prev_pane", "Previous pane", show=False),
        Binding("escape", "back", "Back", show=False, priority=True),
        Binding("c", "create", "Create"),
        Binding("t", "train", "Train"),
        Binding("r", "resume", "Resume", show=False),
        Binding("s", "stop", "Stop", show=False),
        Binding("S", "start", "Start", show=False),
        Binding("x", "terminate", "Terminate"),
        Binding("slash", "filter", "Filter"),
        Binding("f", "follow", "Follow", show=False),
        Binding("w", "wrap", "Wrap", show=False),
        Binding("z", "zoom", "Zoom", show=False),
        Binding("1", "show_pane('log')", "Log", show=False),
        Binding("2", "show_pane('checkpoints')", "Checkpoints", show=False),
        Binding("3", "show_pane('metrics')", "Metrics", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit (runs keep going)"),
    ]

    def __init__(
        self,
        config: Config,
        fleet: Fleet,
        *,
        readonly: bool = False,
        clock: Callable[[], float] = time.time,
        poll: bool = True,
        state_path: Path | None = None,
        select: str | None = None,
    ) -> None:
        super().__init__()
        self.select = select
        self.config = config
        self.fleet = fleet
        self.readonly = readonly
        self.clock = clock
        self.poll = poll
        self.state_path = state_path
        self.session: SessionState = SessionState()
        self.detector = EventDetector()
        self._target: tuple[str | None, str | None] | None = None
        self._active_lower = "log"
        self._tabbed: bool | None = None
        self._save_timer: Timer | None = None
        self._polled_once: set[Provider] = set()
        self._poll_gaps: dict[Provider, float] = {}
        """Each backend's current time between polls (longer once quiet)."""
        self._remote_checked: dict[Provider, float] = {}

    # ---- composition -------------------------------------------------------------------

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        """The screen's own keys first, so the footer always shows them (and that quitting
        leaves runs alone) before a focused pane's keys."""
        bindings = super().active_bindings
        mine = {key: b for key, b in bindings.items() if b.node is self}
        return {**mine, **{key: b for key, b in bindings.items() if key not in mine}}

    def compose(self) -> ComposeResult:
        # Classes decided before the children exist cost nothing to apply.
        width, height = self.app.size
        self._tabbed = width < TABBED_BELOW_WIDTH or height < TABBED_BELOW_HEIGHT
        self.set_class(self._tabbed, "-tabbed")
        yield HeaderBar(id="header")
        with Vertical(id="body"):
            with Pane(id="machines-pane", classes="pane"):
                yield Input(placeholder="filter machines (esc clears)", id="filter", compact=True)
                yield MachinesTable(
                    id="machines", compact=self.app.size.width < COMPACT_COLUMNS_BELOW_WIDTH
                )
            yield Tabs(
                *(Tab(f"{i} {s.title}", id=f"tab-{s.key}") for i, s in enumerate(LOWER_PANES, 1)),
                active="tab-log",
                id="pane-tabs",
            )
            with Horizontal(id="lower"):
                for spec in LOWER_PANES:
                    active = " -active" if spec.key == self._active_lower else ""
                    with Pane(id=f"{spec.key}-pane", classes="pane lower" + active):
                        yield make_pane_widget(
                            spec, self.config, clock=self.clock, readonly=self.readonly
                        )
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#machines-pane", Pane).border_title = "Machines"
        for spec in LOWER_PANES:
            self.query_one(f"#{spec.key}-pane", Pane).border_title = spec.title
        self.query_one("#pane-tabs", Tabs).can_focus = False
        table = self.query_one(MachinesTable)
        table.focus()
        self.session = load_session_state(self.state_path)
        wanted = self.select or self.session.selected
        if wanted:
            table.select_key(wanted)
        self._redraw()
        self.set_interval(HEADER_TICK_SECONDS, self._tick)
        if self.poll:
            # Backends are built and polled only once the first frame is on screen.
            self.call_after_refresh(self._start)

    def on_resize(self) -> None:
        self._apply_layout(self.size.width, self.size.height)

    def _apply_layout(self, width: int, height: int) -> None:
        tabbed = width < TABBED_BELOW_WIDTH or height < TABBED_BELOW_HEIGHT
        if tabbed != self._tabbed:
            self._tabbed = tabbed
            self.set_class(tabbed, "-tabbed")
        self.query_one(MachinesTable).set_compact(width < COMPACT_COLUMNS_BELOW_WIDTH)

    # ---- polling -----------------------------------------------------------------------

    @property
    def interval(self) -> float:
        """Seconds between polls of a backend (`[monitor] poll_seconds`)."""
        return max(0.2, float(self.config.monitor.poll_seconds))

    @work(exclusive=True, group="startup", exit_on_error=False)
    async def _start(self) -> None:
        if not self.fleet.built:
            await asyncio.to_thread(self.fleet.build)
            self.post_message(FleetChanged())
        self.run_worker(self._runs_loop(), group="runs", exclusive=True, exit_on_error=False)
        for provider in self.fleet.providers:
            self.start_poller(provider)

    def start_poller(self, provider: Provider) -> None:
        """(Re)start the polling worker of one backend; a running one is replaced."""
        self.run_worker(
            self._poll_loop(provider),
            name=f"poll {provider.value}",
            group=f"poll-{provider.value}",
            exclusive=True,
            exit_on_error=False,
        )

    def poll_delay(self, snapshot: ProviderSnapshot, quiet_polls: int) -> float:
        """Seconds until a backend's next poll.

        `[monitor] poll_seconds` while machines come, go or change state; once `QUIET_POLLS`
        polls in a row changed none of that, `quiet_poll_factor` times that (every
        cloud poll costs CPU and API calls, and a dashboard is left open for days); backoff
        on failures on top.
        """
        base = self.interval
        settling = any(m.state not in STEADY_STATES for m in snapshot.machines)
        if quiet_polls >= QUIET_POLLS and not settling:
            base *= max(1.0, float(self.config.monitor.quiet_poll_factor))
        delay = base * float(2 ** min(snapshot.failures, 6))
        return min(delay, max(MAX_BACKOFF_SECONDS, base))

    async def _poll_loop(self, provider: Provider) -> None:
        quiet_polls = 0
        while True:
            before = self.fleet.snapshots.get(provider)
            snapshot = await self.fleet.poll(provider)
            first = provider not in self._polled_once
            self._polled_once.add(provider)
            unchanged = (
                before is not None
                and before.machines == snapshot.machines
                and before.error == snapshot.error
            )
            if first or not unchanged:
                self.post_message(FleetChanged())
            # Quiet means no machine came, went or changed state: a GPU% that moves is
            # still shown, at the slower pace.
            steady = before is not None and _lifecycle(before) == _lifecycle(snapshot)
            quiet_polls = quiet_polls + 1 if steady else 0
            for machine in self.fleet.ssh_due(provider):
                quiet_polls = 0  # a machine not reachable yet: keep looking closely
                self.run_worker(self._check_ssh(machine), group="ssh", exit_on_error=False)
            now = time.monotonic()
            if now - self._remote_checked.get(provider, -1e9) >= REMOTE_RUN_CHECK_SECONDS:
                self._remote_checked[provider] = now
                if await self.fleet.refresh_remote_runs(provider, readonly=self.readonly):
                    self.refresh_runs_soon()
            if snapshot.provider not in self.fleet.backends:
                return
            delay = self.poll_delay(snapshot, quiet_polls)
            self._poll_gaps[provider] = delay  # the header's staleness goes by it
            await asyncio.sleep(delay)

    async def _check_ssh(self, machine: Machine) -> None:
        """One SSH login attempt on a running machine (its row says `ssh…` until one works)."""
        if await self.fleet.check_ssh(machine):
            self.post_message(FleetChanged())

    async def _runs_loop(self) -> None:
        failures = 0
        while True:
            changed = await self.fleet.refresh_runs()
            failures = failures + 1 if self.fleet.runs_error else 0
            if changed:
                self.post_message(FleetChanged())
            delay = self.interval * (2 ** min(failures, 6))
            await asyncio.sleep(min(delay, max(MAX_BACKOFF_SECONDS, self.interval)))

    def refresh_runs_soon(self) -> None:
        """Re-read the run registry now (after starting or stopping a run)."""
        self.run_worker(self._runs_loop(), group="runs", exclusive=True, exit_on_error=False)

    @on(FleetChanged)
    def _fleet_changed(self) -> None:
        self._redraw()
        if self._polled_once >= set(self.fleet.providers):
            self.query_one(MachinesTable).forget_wanted()

    def _redraw(self) -> None:
        now = self.clock()
        rows = self.fleet.rows()
        events = self.detector.update(rows, now)
        self.query_one(MachinesTable).update_rows(rows, now, self.detector.flags)
        self._tick()
        self._update_machines_subtitle()
        for event in events:
            self.app.notify(event.message, title=event.kind, severity=event.severity, timeout=15)
        if events and self.config.ui.bell:
            self.app.bell()
        self._follow_selection()

    def _tick(self) -> None:
        gaps = {p: self._poll_gaps.get(p, self.interval) for p in self.fleet.snapshots}
        self.query_one(HeaderBar).show(
            self.fleet.totals(), self.fleet.snapshots, self.clock(), gaps, self.readonly
        )

    def _update_machines_subtitle(self) -> None:
        problems = [s.error for s in self.fleet.snapshots.values() if s.error]
        if self.fleet.runs_error:
            problems.append(self.fleet.runs_error)
        pane = self.query_one("#machines-pane", Pane)
        if problems:
            subtitle = "⚠ " + problems[0][:120]
            if pane.border_subtitle != subtitle:
                pane.border_subtitle = subtitle
            pane.add_class("-error")
        else:
            times = [s.fetched_at for s in self.fleet.snapshots.values() if s.fetched_at]
            # Minute resolution: the header shows per-backend freshness; this changes rarely.
            subtitle = time.strftime("updated %H:%M", time.localtime(min(times))) if times else ""
            if pane.border_subtitle != subtitle:
                pane.border_subtitle = subtitle
            pane.remove_class("-error")

    # ---- selection ---------------------------------------------------------------------

    def selected_row(self) -> FleetRow | None:
        """The machine (with its run) under the cursor."""
        key = self.query_one(MachinesTable).selected_key
        return self.fleet.find_row(key) if key else None

    @on(MachinesTable.MachineSelected)
    def _machine_selected(self, event: MachinesTable.MachineSelected) -> None:
        self._follow_selection()
        if event.key and event.key != self.session.selected:
            self.session.selected = event.key
            self._save_later()

    def _save_later(self) -> None:
        if self._save_timer is not None:
            self._save_timer.stop()
        self._save_timer = self.set_timer(1.0, self.save_session)

    def save_session(self) -> None:
        """Write the remembered selection and form values now."""
        try:
            save_session_state(self.session, self.state_path)
        except OSError as exc:
            self.app.notify(f"could not save the dashboard state: {exc}", severity="warning")

    def _follow_selection(self) -> None:
        row = self.selected_row()
        target = (row.key if row else None, row.run.id if row and row.run else None)
        if target == self._target:
            return
        self._target = target
        self._point_panes(row)

    def _point_panes(self, row: FleetRow | None) -> None:
        log_widget = self._pane_widget("log")
        checkpoint_widget = self._pane_widget("checkpoints")
        metrics_widget = self._pane_widget("metrics")
        log_pane = self.query_one("#log-pane", Pane)
        cp_pane = self.query_one("#checkpoints-pane", Pane)
        metrics_pane = self.query_one("#metrics-pane", Pane)
        if row is None:
            note = "no machine selected"
            self._call(log_widget, "set_source", None)
            self._call(checkpoint_widget, "set_directory", None)
            self._call(metrics_widget, "set_run", None, None)
            for pane in (log_pane, cp_pane, metrics_pane):
                pane.border_subtitle = note
            return
        source, description = log_source_for(row, self.config)
        self._call(log_widget, "set_source", source)
        log_pane.border_subtitle = description[-60:]
        run = row.run
        if run is not None and run.backend is Provider.LOCAL:
            log, run_dir, checkpoints = run_paths(run)
            self._call(checkpoint_widget, "set_directory", checkpoints)
            if metrics_widget is not None and hasattr(metrics_widget, "running"):
                metrics_widget.running = run.status is RunStatus.RUNNING
            self._call(metrics_widget, "set_run", log, run_dir)
            cp_pane.border_subtitle = str(checkpoints)[-60:]
            metrics_pane.border_subtitle = run.id
        elif run is None:
            self._call(checkpoint_widget, "set_directory", None)
            self._call(metrics_widget, "set_run", None, None)
            cp_pane.border_subtitle = metrics_pane.border_subtitle = "no run on this machine"
        else:
            from runctl_tui.ui.remote import checkpoint_lister

            backend = self.fleet.backends.get(row.machine.provider)
            lister, label = checkpoint_lister(row, run, self.config, backend)
            if lister is not None and hasattr(checkpoint_widget, "set_remote"):
                self._call(checkpoint_widget, "set_remote", lister, label, self.interval * 2)
            else:
                self._call(checkpoint_widget, "set_directory", None)
            cp_pane.border_subtitle = label[-60:]
            # The curves come from the same remote log the log pane follows (its own follow).
            if source is not None and hasattr(metrics_widget, "set_stream"):
                if metrics_widget is not None and hasattr(metrics_widget, "running"):
                    metrics_widget.running = run.status is RunStatus.RUNNING
                self._call(metrics_widget, "set_stream", source)
                metrics_pane.border_subtitle = run.id
            else:
                self._call(metrics_widget, "set_run", None, None)
                metrics_pane.border_subtitle = description[-60:]

    def _pane_widget(self, key: str) -> Widget | None:
        try:
            return self.query_one(f"#{key}-widget", Widget)
        except NoMatches:
            return None

    def _call(self, widget: Widget | None, method: str, *args: Any) -> None:
        function = getattr(widget, method, None) if widget is not None else None
        if function is None:
            return
        try:
            function(*args)
        except Exception as exc:
            self.app.notify(
                f"{method} failed: {scrub(str(exc) or type(exc).__name__)}", severity="error"
            )

    # ---- panes and focus ---------------------------------------------------------------

    def _set_active_lower(self, key: str) -> None:
        self._active_lower = key
        for spec in LOWER_PANES:
            self.query_one(f"#{spec.key}-pane", Pane).set_class(spec.key == key, "-active")
        tabs = self.query_one("#pane-tabs", Tabs)
        if tabs.active != f"tab-{key}":
            tabs.active = f"tab-{key}"

    @on(Tabs.TabActivated, "#pane-tabs")
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab.id:
            self._set_active_lower(event.tab.id.removeprefix("tab-"))

    def current_pane(self) -> str:
        """Key of the pane holding the focus (`machines` when none does)."""
        focused = self.focused
        for key in PANE_KEYS:
            pane = self.query_one(f"#{key}-pane", Pane)
            if focused is not None and (focused is pane or pane in focused.ancestors):
                return key
        return "machines"

    def focus_pane(self, key: str) -> None:
        """Show (in tabbed layouts) and focus a pane."""
        if key != "machines":
            self._set_active_lower(key)
        if self.maximized is not None:
            self.minimize()
        pane = self.query_one(f"#{key}-pane", Pane)
        if key == "machines":
            self.query_one(MachinesTable).focus()
            return
        self.call_after_refresh(self._focus_inside, pane)

    def _focus_inside(self, pane: Pane) -> None:
        for widget in pane.query("*"):
            if widget.focusable:
                widget.focus()
                return
        pane.can_focus = True
        pane.focus()

    def action_next_pane(self) -> None:
        """Focus the next pane."""
        index = PANE_KEYS.index(self.current_pane())
        self.focus_pane(PANE_KEYS[(index + 1) % len(PANE_KEYS)])

    def action_prev_pane(self) -> None:
        """Focus the previous pane."""
        index = PANE_KEYS.index(self.current_pane())
        self.focus_pane(PANE_KEYS[(index - 1) % len(PANE_KEYS)])

    def action_show_pane(self, key: str) -> None:
        """Show and focus one of the lower panes."""
        self.focus_pane(key)

    @on(DataTable.RowSelected, "#machines")
    def _drill_down(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.focus_pane("log")

    def action_back(self) -> None:
        """Close a pane's prompt, leave the filter, un-zoom, or go back to the machines."""
        log_widget = self._pane_widget("log")
        if log_widget is not None and log_widget.has_class("-prompting"):
            close = getattr(log_widget, "action_close_prompt", None)
            if close is not None:
                close()
                return
        filter_input = self.query_one("#filter", Input)
        if filter_input.has_focus or (filter_input.display and not filter_input.value):
            filter_input.value = ""
            filter_input.display = False
            self.query_one(MachinesTable).focus()
            return
        if self.maximized is not None:
            self.minimize()
            return
        self.query_one(MachinesTable).focus()

    def action_zoom(self) -> None:
        """Zoom the focused pane to the whole screen, or restore it."""
        if self.maximized is not None:
            self.minimize()
            return
        pane = self.query_one(f"#{self.current_pane()}-pane", Pane)
        self.maximize(pane, container=False)

    def action_filter(self) -> None:
        """Show the machines filter and focus it."""
        filter_input = self.query_one("#filter", Input)
        filter_input.display = True
        filter_input.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(MachinesTable).filter_text = event.value

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            self.query_one("#filter", Input).display = False
        self.query_one(MachinesTable).focus()

    def _log_action(self, names: tuple[str, ...], what: str) -> None:
        widget = self._pane_widget("log")
        for name in names:
            if widget is not None and hasattr(widget, f"action_{name}"):
                getattr(widget, f"action_{name}")()
                return
        self.app.notify(f"{what} is not available in this log pane", severity="warning")

    def action_follow(self) -> None:
        """Follow the end of the log (toggle)."""
        self._log_action(("toggle_follow", "follow"), "follow")

    def action_wrap(self) -> None:
        """Wrap long log lines (toggle)."""
        self._log_action(("toggle_wrap", "wrap"), "wrap")

    def action_help(self) -> None:
        """Show every key."""
        from runctl_tui.ui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen())

    def action_quit(self) -> None:
        """Leave the dashboard; training runs and machines keep running."""
        self.save_session()
        self.app.exit()

    def on_checkpoint_browser_resume_requested(self, event: Any) -> None:
        """`R` in the checkpoint pane: resume the selected run from that checkpoint."""
        event.stop()
        path = getattr(getattr(event, "entry", None), "path", None)
        if path:
            self.resume_from(Path(path))

    def on_metrics_panel_alerts_changed(self, event: Message) -> None:
        """The metrics pane's alerts changed: for a run on a pod or instance (whose curves only
        that pane follows live) they mark its machine's row and notify, as a local run's do."""
        event.stop()
        row = self.selected_row()
        widget = self._pane_widget("metrics")
        run = row.run if row is not None else None
        if run is None or run.backend is Provider.LOCAL or widget is None:
            return
        # The pane's current alerts, not the message's: they belong to the stream it follows now.
        if self.fleet.set_stream_alerts(run.id, list(getattr(widget, "alerts", []))):
            self._redraw()

    # ---- errors ------------------------------------------------------------------------

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state is WorkerState.ERROR and worker.error is not None:
            message = scrub(str(worker.error) or type(worker.error).__name__)
            self.app.notify(f"{worker.name or 'task'}: {message}", severity="error", timeout=15)
