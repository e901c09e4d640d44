"""The `?` screen: every key, grouped, and what quitting does (nothing to your runs)."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Move",
        (
            ("tab / shift+tab", "next / previous pane"),
            ("↑ ↓  j k", "move within a pane"),
            ("enter", "drill down: machine → its run's log"),
            ("esc", "back to the machines (and un-zoom)"),
            ("1 2 3", "log / checkpoints / metrics pane"),
            ("z", "zoom the focused pane (again: restore)"),
            ("o / O", "sort machines by the next column / reverse"),
            ("/", "filter machines (esc clears)"),
            ("ctrl+p", "command palette: every action by name"),
        ),
    ),
    (
        "Act (disabled with --readonly)",
        (
            ("c", "create a machine (price shown before confirming)"),
            ("t", "start training on the selected machine"),
            ("r", "resume from the selected checkpoint"),
            ("s / S", "stop / start the selected machine or run"),
            ("x", "terminate the selected machine (type its name)"),
        ),
    ),
    (
        "Log pane",
        (
            ("f / end", "follow the end of the log (scrolling up pauses)"),
            ("/  n N", "search, next / previous match"),
            ("&", "filter: only lines matching a regex"),
            ("w", "wrap long lines"),
            ("ctrl+s", "save the buffer to a file"),
        ),
    ),
    (
        "Checkpoint pane",
        (
            ("r", "resume training from the selected checkpoint"),
            ("C", "clean up: keep the newest N, the best and protected ones"),
            ("ctrl+r", "rescan"),
        ),
    ),
    (
        "Metrics pane",
        (
            ("[ ]", "less / more smoothing (raw curve stays visible)"),
            ("p", "pick the series to show"),
            ("g / enter", "full chart (checkpoint saves marked)"),
        ),
    ),
    (
        "Leave",
        (
            ("?", "this help"),
            ("q", "quit: training runs and machines keep running"),
        ),
    ),
)


def help_table() -> Table:
    """All keys as a two-column table."""
    table = Table.grid(padding=(0, 2), expand=True)
    table.add_column(style="bold", no_wrap=True, width=15)
    table.add_column(ratio=1)
    for group, keys in KEYS:
        table.add_row(f"[u]{group}[/u]", "")
        for key, what in keys:
            table.add_row(key, what)
        table.add_row("", "")
    return table


class HelpScreen(ModalScreen[None]):
    """Keys and what they do."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog", classes="dialog"):
            yield Static("runctl keys  (esc closes)", classes="dialog-title")
            with VerticalScroll():
                yield Static(help_table(), id="help-keys")

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.dismiss(None)
