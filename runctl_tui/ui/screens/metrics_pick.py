"""Choose which metric series the metrics pane shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import SelectionList, Static


class MetricsPickScreen(ModalScreen[list[str] | None]):
    """Tick the series to show; enter keeps the choice, escape leaves it unchanged.

    Args:
        names: Every series of the run, in display order.
        selected: The series shown now.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("enter", "accept", "Show these", priority=True),
    ]

    DEFAULT_CSS = """
    MetricsPickScreen { align: center middle; }
    MetricsPickScreen > Vertical {
        width: 60; height: auto; max-height: 80%; border: round $accent; background: $surface;
    }
    MetricsPickScreen SelectionList { height: auto; max-height: 20; }
    """

    def __init__(self, names: Sequence[str], selected: Sequence[str]) -> None:
        super().__init__()
        self.names = list(names)
        self.selected = set(selected)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Series to show (space toggles, enter keeps)")
            yield SelectionList[str](*((n, n, n in self.selected) for n in self.names))

    def action_accept(self) -> None:
        """Keep the ticked series, in the run's order."""
        ticked = set(self.query_one(SelectionList).selected)
        self.dismiss([n for n in self.names if n in ticked])

    def action_cancel(self) -> None:
        """Leave the choice as it was."""
        self.dismiss(None)
