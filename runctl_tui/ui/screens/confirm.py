"""A yes/no question for actions that change something but destroy nothing (stop, start, a
spot request falling back to on-demand)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Ask a question; `y`/enter on the button confirms, `n`/escape cancels.

    Args:
        title: The question.
        detail: What will happen.
        confirm_label: Text of the confirming button.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("y", "confirm", "Yes"),
    ]

    def __init__(self, title: str, detail: str, confirm_label: str = "Yes") -> None:
        super().__init__()
        self.title_text = title
        self.detail = detail
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm-dialog"):
            # Provider text (AWS error messages, paths) is shown as it is, never as markup.
            yield Static(self.title_text, classes="dialog-title", markup=False, id="confirm-title")
            yield Static(self.detail, markup=False, id="confirm-detail")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.confirm_label, id="confirm", variant="warning", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed, "#confirm")
    def action_confirm(self) -> None:
        """Answer yes."""
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Answer no."""
        self.dismiss(False)
