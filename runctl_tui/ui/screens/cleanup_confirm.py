"""The checkpoint cleanup confirmation: exactly what goes, what stays and why, the space freed."""

from __future__ import annotations

from typing import ClassVar

import humanize
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from runctl_tui.core.checkpoints import CleanupPlan


class CleanupConfirmScreen(ModalScreen[bool]):
    """Show a cleanup plan (the same one `runctl checkpoint cleanup --dry-run` prints) and ask.

    Args:
        plan: What would be deleted and kept.
        keep_last: The N of "keep the newest N", for the title.
    """

    DEFAULT_CSS = """
    CleanupConfirmScreen { align: center middle; }
    CleanupConfirmScreen > #cleanup-dialog {
        width: 90; max-width: 95%; height: auto; max-height: 90%;
        border: thick $warning; background: $surface; padding: 1 2;
    }
    CleanupConfirmScreen #cleanup-title { text-style: bold; margin-bottom: 1; }
    CleanupConfirmScreen #cleanup-list { height: auto; max-height: 20; }
    CleanupConfirmScreen #cleanup-buttons { height: auto; margin-top: 1; align-horizontal: right; }
    CleanupConfirmScreen #cleanup-buttons Button { margin-left: 2; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("y", "confirm", "Delete"),
    ]

    def __init__(self, plan: CleanupPlan, keep_last: int) -> None:
        super().__init__()
        self.plan = plan
        self.keep_last = keep_last

    def compose(self) -> ComposeResult:
        plan = self.plan
        freed = humanize.naturalsize(plan.freed_bytes, binary=True)
        with Vertical(id="cleanup-dialog"):
            yield Static(
                f"Delete {len(plan.delete)} checkpoint(s) and free {freed}?", id="cleanup-title"
            )
            listing = Text()
            for entry in plan.delete:
                size = humanize.naturalsize(entry.size_bytes, binary=True)
                listing.append("delete  ", style="bold red")
                listing.append(f"{entry.name}  ({size})\n")
            for entry, reason in plan.keep:
                listing.append("keep    ", style="green")
                listing.append(f"{entry.name}  ", style="")
                listing.append(f"{reason}\n", style="dim")
            with VerticalScroll(id="cleanup-list"):
                yield Static(listing, id="cleanup-items")
            yield Static(
                f"Keeps the newest {self.keep_last}, the best, protected paths and anything a "
                "run is still writing. Deleting cannot be undone.",
                classes="dialog-note",
            )
            with Horizontal(id="cleanup-buttons"):
                yield Button(f"Delete {len(plan.delete)}", id="confirm", variant="error")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed, "#confirm")
    def action_confirm(self) -> None:
        """Delete."""
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Keep everything."""
        self.dismiss(False)
