"""The dashboard application: composition and key bindings only.

The screen (`screens/dashboard.py`) holds the panes and their workers, `actions.py` what the
action keys do, `app.tcss` every style.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

if TYPE_CHECKING:
    from textual.command import Provider

from runctl_tui.core.config import Config
from runctl_tui.core.fleet import Fleet
from runctl_tui.ui.screens.dashboard import DashboardScreen


def _dashboard_commands() -> type[Provider]:
    """The palette's provider, imported when the palette first opens (not at start-up)."""
    from runctl_tui.ui.commands import DashboardCommands

    return DashboardCommands


class RunctlApp(App[None]):
    """The runctl dashboard.

    Args:
        config: The effective configuration.
        readonly: Refuse every action that changes anything (also `[ui] readonly`).
        fleet: The fleet to show; None builds one from `config` after the first frame.
        select: Key of a machine to open on (e.g. `local:local` after `--demo`).
        clock: Epoch-seconds clock (fixed for screenshots).
        poll: Start the polling workers.
        state_path: Where the last selection is remembered (default: the XDG state dir).
    """

    TITLE = "runctl"
    CSS_PATH = Path(__file__).parent / "app.tcss"
    COMMANDS: ClassVar = App.COMMANDS | {_dashboard_commands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        config: Config,
        *,
        readonly: bool = False,
        fleet: Fleet | None = None,
        select: str | None = None,
        clock: Callable[[], float] = time.time,
        poll: bool = True,
        state_path: Path | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.readonly = readonly or config.ui.readonly
        self.fleet = fleet if fleet is not None else Fleet(config, clock=clock)
        self.select = select
        self.clock = clock
        self.poll = poll
        self.state_path = state_path
        if config.ui.theme != self.theme and config.ui.theme in self.available_themes:
            self.theme = config.ui.theme

    def get_default_screen(self) -> DashboardScreen:
        screen = DashboardScreen(
            self.config,
            self.fleet,
            readonly=self.readonly,
            clock=self.clock,
            poll=self.poll,
            state_path=self.state_path,
            select=self.select,
        )
        return screen

    async def action_quit(self) -> None:
        """Leave; training runs and machines keep running."""
        screen = self.screen
        if isinstance(screen, DashboardScreen):
            screen.save_session()
        self.exit()

    async def on_unmount(self) -> None:
        await self.fleet.aclose()
