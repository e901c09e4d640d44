"""The `x` confirmation: names the machine, its accrued cost and checkpoints still on it.

Terminating destroys the machine's disk, so the user must type the machine's name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from runctl_tui.core.models import Machine
from runctl_tui.core.secrets import scrub
from runctl_tui.ui.widgets.machines_table import fmt_duration, fmt_money

CheckpointCheck = Callable[[], Awaitable[list[str]]]
"""Returns one sentence per checkpoint (or checkpoint folder) not yet copied off the machine."""


class TerminateConfirmScreen(ModalScreen[bool]):
    """Ask before destroying a machine; confirm only once its name is typed exactly.

    Args:
        machine: The machine to terminate.
        now: Epoch seconds, for its accrued cost and uptime.
        check_checkpoints: Finds checkpoints not yet copied off (run in a worker).
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, machine: Machine, now: float, check_checkpoints: CheckpointCheck | None = None
    ) -> None:
        super().__init__()
        self.machine = machine
        self.now = now
        self.check_checkpoints = check_checkpoints

    @property
    def expected(self) -> str:
        """What must be typed: the machine's name (its id when it has none)."""
        return self.machine.name or self.machine.id

    def compose(self) -> ComposeResult:
        machine = self.machine
        cost = fmt_money(machine.cost_so_far(self.now))
        price = fmt_money(machine.price_per_hour)
        with Vertical(id="terminate-dialog", classes="dialog -danger"):
            # Names, paths and provider messages are shown as they are, never read as markup.
            yield Static(
                f"Terminate {machine.provider.value} machine {self.expected}?",
                classes="dialog-title",
                markup=False,
            )
            yield Static(
                f"id {machine.id} · {machine.state.value} · accrued {cost} · {price}/h · "
                f"up {fmt_duration(machine.uptime_seconds(self.now))}\n"
                "Terminating destroys the machine and its disk; this cannot be undone.",
                id="terminate-summary",
                markup=False,
            )
            yield Static(
                "checking for checkpoints still on the machine…" if self.check_checkpoints else "",
                id="terminate-checkpoints",
                classes="dialog-note",
                markup=False,
            )
            yield Label(f"Type {self.expected} to confirm", markup=False)
            yield Input("", id="terminate-name", placeholder="machine name", compact=True)
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    "Terminate", id="confirm", variant="error", disabled=True, compact=True
                )
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#terminate-name", Input).focus()
        if self.check_checkpoints is not None:
            self._check()

    @work(exclusive=True, group="terminate-checkpoints", exit_on_error=False)
    async def _check(self) -> None:
        assert self.check_checkpoints is not None
        label = self.query_one("#terminate-checkpoints", Static)
        try:
            found = await self.check_checkpoints()
        except Exception as exc:
            label.update(
                "Could not check for checkpoints on the machine: "
                f"{scrub(str(exc) or type(exc).__name__)}"
            )
            label.add_class("-warning")
            return
        if found:
            label.update("Not copied off this machine:\n" + "\n".join(f"• {f}" for f in found))
            label.add_class("-warning")
        else:
            label.update("No checkpoints known to be left on this machine.")

    @on(Input.Changed, "#terminate-name")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = event.value.strip() != self.expected

    @on(Input.Submitted, "#terminate-name")
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.expected:
            self.dismiss(True)

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        if self.query_one("#terminate-name", Input).value.strip() == self.expected:
            self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Keep the machine."""
        self.dismiss(False)
