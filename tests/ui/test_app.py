"""Pilot tests of the dashboard's key flows, against real backends.

RunPod pods come from the loopback RunPod API server through the real `RunPodBackend`; this
computer's machine and runs come from the real `LocalBackend` and real training processes.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select

from runctl_tui.core.config import Config
from runctl_tui.core.local_runs import launch_local_run, reconcile, run_is_alive, stop_run
from runctl_tui.core.models import Provider, RunStatus
from runctl_tui.core.runs import RunRegistry
from runctl_tui.testing.runpod_server import RunPodTestServer
from runctl_tui.ui.app import RunctlApp
from runctl_tui.ui.screens.confirm import ConfirmScreen
from runctl_tui.ui.screens.create_machine import CreateMachineScreen
from runctl_tui.ui.screens.dashboard import DashboardScreen
from runctl_tui.ui.screens.help import HelpScreen
from runctl_tui.ui.screens.terminate_confirm import TerminateConfirmScreen
from runctl_tui.ui.widgets.checkpoint_browser import CheckpointBrowser
from runctl_tui.ui.widgets.log_view import LogView
from runctl_tui.ui.widgets.machines_table import MachinesTable
from tests.helpers import stop_if_running
from tests.ui.helpers import wait_for

API_KEY = "dashboard-test-key-0001"
DEMO = Path(__file__).resolve().parents[2] / "runctl_tui" / "examples" / "train_demo.py"
RTX_4090 = "NVIDIA GeForce RTX 4090"


@pytest.fixture
def server() -> Iterator[RunPodTestServer]:
    """A RunPod API server with one running pod, `trainer-a`."""
    srv = RunPodTestServer(api_key=API_KEY, step_seconds=None, step_polls=1).start()
    srv.add_pod(name="trainer-a", gpu_id=RTX_4090)
    try:
        yield srv
    finally:
        srv.stop()


def make_config(server: RunPodTestServer | None, **ui: Any) -> Config:
    """Defaults, fast polling, and the test server as RunPod."""
    config = Config()
    config.monitor.poll_seconds = 0.2
    config.ui.bell = False
    config.local.use_uv = False
    if server is not None:
        config.runpod.api_key = API_KEY
        config.runpod.api_url = server.url
        config.runpod.max_retries = 0
        config.runpod.timeout_seconds = 5.0
    for key, value in ui.items():
        setattr(config.ui, key, value)
    return config


def table(app: RunctlApp) -> MachinesTable:
    """The machines table of the dashboard screen."""
    return dashboard(app).query_one(MachinesTable)


def dashboard(app: RunctlApp) -> DashboardScreen:
    """The dashboard screen."""
    screen = app.screen_stack[0]
    assert isinstance(screen, DashboardScreen)
    return screen


def screen_text(app: RunctlApp) -> str:
    """What the terminal shows now, as plain text."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True)
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()


def notes(app: RunctlApp) -> list[str]:
    """The text of every notification shown so far."""
    return [n.message for n in app._notifications]


def pod_key(server: RunPodTestServer, name: str) -> str:
    """The machine key of the pod with this name."""
    pod = next(p for p in server.pods.values() if p.name == name)
    return f"runpod:{pod.id}"


async def select_machine(pilot: Pilot[Any], app: RunctlApp, key: str) -> None:
    """Move the cursor to a machine with the arrow keys."""
    machines = dashboard(app).query_one(MachinesTable)
    machines.focus()
    for _ in range(len(machines.shown_keys) + 1):
        if machines.selected_key == key:
            return
        await pilot.press("down")
    for _ in range(len(machines.shown_keys) + 1):
        if machines.selected_key == key:
            return
        await pilot.press("up")
    raise AssertionError(f"{key} not reachable; shown: {machines.shown_keys}")


@pytest.fixture
def app_factory(tmp_path: Path) -> Callable[..., RunctlApp]:
    def make(config: Config, **kwargs: Any) -> RunctlApp:
        return RunctlApp(config, state_path=tmp_path / "dashboard.json", **kwargs)

    return make


async def test_machines_of_every_backend_appear(server: RunPodTestServer, app_factory: Any) -> None:
    app = app_factory(make_config(server))
    async with app.run_test(size=(120, 40)) as pilot:
        rp = pod_key(server, "trainer-a")
        await wait_for(pilot, lambda: {"local:local", rp} <= set(table(app).shown_keys), "rows")
        row = dashboard(app).fleet.find_row(rp)
        assert row is not None
        assert row.machine.state.value == "running"
        assert row.machine.price_per_hour is not None
        header = dashboard(app).query_one("#header").render()
        assert "runpod ✓" in str(header)
        assert "local ✓" in str(header)


async def test_create_shows_price_and_creates_on_confirm(
    server: RunPodTestServer, app_factory: Any
) -> None:
    app = app_factory(make_config(server))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: len(table(app).shown_keys) == 2, "machines")
        before = len(server.pods)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CreateMachineScreen), "create form")
        form = app.screen
        assert isinstance(form, CreateMachineScreen)
        await wait_for(pilot, lambda: bool(form.offers.get(Provider.RUNPOD)), "offers")
        offer_select: Select[str] = form.query_one("#offer", Select)
        await wait_for(pilot, lambda: offer_select.value == RTX_4090, "default GPU chosen")
        count = form.query_one("#count", Input)
        count.focus()
        await pilot.press("backspace", "2")
        name = form.query_one("#name", Input)
        name.focus()
        await pilot.press(*"dash-made")
        unit = server.gpu(RTX_4090).price("SECURE")
        price = str(form.query_one("#create-price").render())
        assert f"${unit * 2:.2f}/h" in price, price
        assert "2 x" in price
        assert len(server.pods) == before, "nothing is created before confirming"
        form.query_one("#confirm", Button).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(server.pods) == before + 1, "pod created")
        created = next(p for p in server.pods.values() if p.name == "dash-made")
        assert created.gpu_count == 2
        key = f"runpod:{created.id}"
        await wait_for(pilot, lambda: key in table(app).shown_keys, "new pod in the table")


async def test_create_cancel_creates_nothing(server: RunPodTestServer, app_factory: Any) -> None:
    app = app_factory(make_config(server))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: len(table(app).shown_keys) == 2, "machines")
        before = len(server.pods)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CreateMachineScreen), "create form")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "form closed")
        await pilot.pause(0.3)
        assert len(server.pods) == before
        assert not server.requests_to("/v2/pods", "POST")


async def test_terminate_requires_the_typed_name(
    server: RunPodTestServer, app_factory: Any
) -> None:
    app = app_factory(make_config(server))
    async with app.run_test(size=(100, 30)) as pilot:
        key = pod_key(server, "trainer-a")
        await wait_for(pilot, lambda: key in table(app).shown_keys, "pod row")
        await select_machine(pilot, app, key)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, TerminateConfirmScreen), "confirm")
        modal = app.screen
        confirm = modal.query_one("#confirm", Button)
        assert confirm.disabled
        await pilot.press(*"trainer")
        await pilot.press("enter")
        assert isinstance(app.screen, TerminateConfirmScreen), "a partial name does not confirm"
        assert confirm.disabled
        await pilot.press("-", "a")
        assert not confirm.disabled
        pod = server.pods[key.split(":", 1)[1]]
        assert pod.status == "RUNNING", "nothing happens before the confirmation"
        await pilot.press("enter")
        await wait_for(pilot, lambda: pod.status == "TERMINATED", "pod terminated")
        await wait_for(pilot, lambda: any("terminated" in n for n in notes(app)), "notice")


async def test_terminate_cancel_keeps_the_machine(
    server: RunPodTestServer, app_factory: Any
) -> None:
    app = app_factory(make_config(server))
    async with app.run_test(size=(100, 30)) as pilot:
        key = pod_key(server, "trainer-a")
        await wait_for(pilot, lambda: key in table(app).shown_keys, "pod row")
        await select_machine(pilot, app, key)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, TerminateConfirmScreen), "confirm")
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert server.pods[key.split(":", 1)[1]].status == "RUNNING"
        assert not server.requests_to(f"/v2/pods/{key.split(':', 1)[1]}", "DELETE")


async def test_readonly_refuses_every_change(server: RunPodTestServer, app_factory: Any) -> None:
    app = app_factory(make_config(server), readonly=True)
    async with app.run_test(size=(100, 30)) as pilot:
        key = pod_key(server, "trainer-a")
        await wait_for(pilot, lambda: key in table(app).shown_keys, "pod row")
        await select_machine(pilot, app, key)
        for press in ("c", "x", "s", "S", "t", "r"):
            await pilot.press(press)
            await pilot.pause()
            assert isinstance(app.screen, DashboardScreen), f"{press} opened a dialog"
        assert sum("readonly" in n for n in notes(app)) == 6
        assert "READONLY" in str(dashboard(app).query_one("#header").render())
        assert server.pods[key.split(":", 1)[1]].status == "RUNNING"
        assert not server.requests_to("/v2/pods", "POST")


async def test_readonly_from_config(app_factory: Any) -> None:
    app = app_factory(make_config(None, readonly=True))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert any("readonly" in n for n in notes(app))


async def test_filter_narrows_the_rows(server: RunPodTestServer, app_factory: Any) -> None:
    server.add_pod(name="other-pod", gpu_id=RTX_4090)
    app = app_factory(make_config(server))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: len(table(app).shown_keys) == 3, "three machines")
        await pilot.press("slash")
        assert dashboard(app).query_one("#filter", Input).has_focus
        await pilot.press(*"trainer")
        await wait_for(pilot, lambda: len(table(app).shown_keys) == 1, "filtered")
        assert table(app).shown_keys == [pod_key(server, "trainer-a")]
        await pilot.press("enter")
        assert table(app).has_focus, "enter goes back to the table, keeping the filter"
        assert len(table(app).shown_keys) == 1
        await pilot.press("slash", "ctrl+a", "backspace", "escape")
        await wait_for(pilot, lambda: len(table(app).shown_keys) == 3, "filter cleared")


async def test_drill_down_back_zoom_and_help(app_factory: Any, tmp_path: Path) -> None:
    config = make_config(None)
    run = launch_local_run(
        config, str(DEMO), ["--epochs", "1", "--steps-per-epoch", "5", "--sleep", "0"], cwd=tmp_path
    )
    app = app_factory(config)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = dashboard(app)
        await wait_for(pilot, lambda: "local:local" in table(app).shown_keys, "local row")
        await wait_for(
            pilot,
            lambda: (row := screen.selected_row()) is not None and row.run is not None,
            "the run joined to the machine",
        )
        row = screen.selected_row()
        assert row is not None
        assert row.run is not None
        assert row.run.id == run.id
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.current_pane() == "log", "log pane focused")
        log_view = screen.query_one("#log-widget", LogView)
        assert log_view.source is not None, "the log pane follows the run"
        assert log_view.source.description.endswith("train.log")
        await pilot.press("escape")
        assert table(app).has_focus
        await pilot.press("z")
        assert screen.maximized is screen.query_one("#machines-pane")
        await pilot.press("z")
        assert not screen.maximized
        await pilot.press("tab")
        await wait_for(pilot, lambda: screen.current_pane() == "log", "tab to the log pane")
        await pilot.press("z")
        assert screen.maximized is screen.query_one("#log-pane")
        await pilot.press("escape")
        assert not screen.maximized
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        await pilot.pause()
        assert "terminate the selected machine" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "help closed")


async def test_quit_leaves_runs_running(app_factory: Any, tmp_path: Path) -> None:
    config = make_config(None)
    run = launch_local_run(
        config, str(DEMO), ["--epochs", "1", "--steps-per-epoch", "200", "--sleep", "0.2"],
        cwd=tmp_path,
    )  # fmt: skip
    try:
        app = app_factory(config)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = dashboard(app)
            await wait_for(
                pilot,
                lambda: (
                    (row := screen.selected_row()) is not None
                    and row.run is not None
                    and row.run.status is RunStatus.RUNNING
                ),
                "running run",
            )
            await wait_for(
                pilot, lambda: "q Quit (runs keep going)" in screen_text(app), "footer says so"
            )
            await pilot.press("q")
        assert app.return_code in (None, 0)
        assert run_is_alive(run), "quitting the dashboard must not stop training"
        assert RunRegistry().get(run.id).status is RunStatus.RUNNING
    finally:
        stop_run(config, run.id, grace=2)


async def test_run_finishing_notifies_and_marks_the_row(app_factory: Any, tmp_path: Path) -> None:
    config = make_config(None)
    config.ui.bell = True
    run = launch_local_run(
        config, str(DEMO), ["--epochs", "1", "--steps-per-epoch", "8", "--sleep", "0.25"],
        cwd=tmp_path,
    )  # fmt: skip
    app = app_factory(config)
    bells: list[float] = []
    app.bell = lambda: bells.append(time.monotonic())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = dashboard(app)
        await wait_for(
            pilot,
            lambda: (
                (row := screen.selected_row()) is not None
                and row.run is not None
                and row.run.id == run.id
            ),
            "run shown",
        )
        await wait_for(
            pilot, lambda: any("finished" in n for n in notes(app)), "finished notice", 20
        )
        assert bells, "the bell rings ([ui] bell = true)"
        cells = table(app).get_row("local:local")
        assert any("succeeded" in str(cell) for cell in cells)


async def test_one_failing_backend_does_not_blank_the_others(
    server: RunPodTestServer, app_factory: Any
) -> None:
    server.fail_next(1000, 500)
    app = app_factory(make_config(server))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: "local:local" in table(app).shown_keys, "local row")
        screen = dashboard(app)
        await wait_for(
            pilot,
            lambda: screen.fleet.snapshots[Provider.RUNPOD].error is not None,
            "runpod error",
        )
        assert "runpod ✗ error" in str(screen.query_one("#header").render())
        assert "⚠" in str(screen.query_one("#machines-pane").border_subtitle)
        assert table(app).has_focus
        await pilot.press("slash")
        assert screen.query_one("#filter", Input).has_focus, "the keyboard still answers"


async def test_restart_restores_the_selection(server: RunPodTestServer, tmp_path: Path) -> None:
    config = make_config(server)
    state = tmp_path / "state.json"
    key = pod_key(server, "trainer-a")
    app = RunctlApp(config, state_path=state)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: key in table(app).shown_keys, "pod row")
        await select_machine(pilot, app, key)
        await pilot.press("q")
    second = RunctlApp(config, state_path=state)
    async with second.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: table(second).selected_key == key, "selection restored")


async def test_train_form_starts_a_run_and_remembers(
    app_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = make_config(None)
    app = app_factory(config)
    script = tmp_path / "job.py"
    script.write_text("print('step 1 loss=0.5')\n", encoding="utf-8")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "local:local" in table(app).shown_keys, "local row")
        await pilot.press("t")
        await pilot.pause()
        await pilot.press(*script.name)
        await pilot.press("tab", *"--lr 3e-4")
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(RunRegistry().list()), "run recorded", 15)
        recorded = RunRegistry().list()[0]
        assert recorded.args == ("--lr", "3e-4")
        assert dashboard(app).session.train.script == script.name
    again = app_factory(config)
    async with again.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "local:local" in table(again).shown_keys, "local row")
        await pilot.press("t")
        await pilot.pause()
        assert again.screen.query_one("#script", Input).value == script.name
        assert again.screen.query_one("#args", Input).value == "--lr 3e-4"
        await pilot.press("escape")


async def test_stop_asks_then_stops_the_local_run(app_factory: Any, tmp_path: Path) -> None:
    config = make_config(None)
    config.local.stop_grace_seconds = 2
    run = launch_local_run(
        config, str(DEMO), ["--epochs", "1", "--steps-per-epoch", "500", "--sleep", "0.2"],
        cwd=tmp_path,
    )  # fmt: skip
    try:
        app = app_factory(config)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = dashboard(app)
            await wait_for(
                pilot,
                lambda: (
                    (row := screen.selected_row()) is not None
                    and row.run is not None
                    and row.run.id == run.id
                ),
                "run shown",
            )
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "question")
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "declined")
            assert run_is_alive(run), "declining keeps the run"
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "question")
            await pilot.press("y")
            await wait_for(
                pilot,
                lambda: RunRegistry().get(run.id).status is RunStatus.STOPPED,
                "run stopped",
                20,
            )
            assert not run_is_alive(run)
    finally:
        stop_if_running(config, run.id, grace=1)


async def test_resume_from_the_selected_checkpoint(app_factory: Any, tmp_path: Path) -> None:
    config = make_config(None)
    first = launch_local_run(
        config, str(DEMO), ["--epochs", "1", "--steps-per-epoch", "20", "--sleep", "0"],
        cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while RunRegistry().get(first.id).status is RunStatus.RUNNING:
        assert time.monotonic() < deadline, "the short run did not finish"
        reconcile(RunRegistry())
        time.sleep(0.1)
    app = app_factory(config)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = dashboard(app)
        browser = screen.query_one("#checkpoints-widget", CheckpointBrowser)
        await wait_for(pilot, lambda: bool(browser.entries), "checkpoints listed")
        await pilot.press("2")
        await wait_for(pilot, lambda: browser.selected_entry is not None, "a checkpoint selected")
        chosen = browser.selected_entry
        assert chosen is not None
        await pilot.press("r")
        await wait_for(pilot, lambda: len(RunRegistry().list()) == 2, "resumed run", 15)
    resumed = RunRegistry().list()[0]
    assert resumed.id != first.id
    assert "--resume" in resumed.args
    assert any(chosen.name in arg for arg in resumed.args)
    stop_if_running(config, resumed.id, grace=1)


async def test_a_hanging_backend_never_blocks_the_keyboard(
    server: RunPodTestServer, app_factory: Any
) -> None:
    server.slow_next(20, 5.0)
    config = make_config(server)
    app = app_factory(config)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "local:local" in table(app).shown_keys, "local row", 5)
        started = time.monotonic()
        await pilot.press("slash")
        await pilot.press(*"vm")
        assert dashboard(app).query_one("#filter", Input).value == "vm"
        await pilot.press("escape", "question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help", 2)
        assert time.monotonic() - started < 2.0, "keys answered while RunPod hangs"
        assert dashboard(app).fleet.snapshots[Provider.RUNPOD].fetched_at is None
        await pilot.press("escape")


async def test_every_action_is_in_the_command_palette(app_factory: Any) -> None:
    from textual.command import CommandPalette

    app = app_factory(make_config(None))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), "palette")
        await pilot.press(*"help: keys")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help from palette")
    from runctl_tui.ui.commands import COMMANDS

    actions = {action.split("(")[0] for _, action, _ in COMMANDS}
    bound = {b.action.split("(")[0] for b in DashboardScreen.BINDINGS if isinstance(b, Binding)}
    missing = bound - actions - {"back", "prev_pane"}
    assert not missing, f"keys without a palette command: {missing}"
