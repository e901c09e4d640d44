"""The `t` form: script, arguments and checkpoint folder of a new run; remembers the last ones."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from runctl_tui.core.session_state import TrainFormValues


@dataclass(frozen=True)
class TrainRequest:
    """What the user asked to run."""

    script: str
    args: tuple[str, ...]
    checkpoint_dir: str | None
    values: TrainFormValues
    """The form as typed, to remember for next time."""


def parse_request(values: TrainFormValues) -> TrainRequest | str:
    """Turn the form into a request, or a sentence saying what is wrong.

    Args:
        values: The typed script, arguments (shell syntax) and checkpoint folder.

    Returns:
        The request, or the error sentence.
    """
    script = values.script.strip()
    if not script:
        return "name the script to run, e.g. train.py"
    try:
        args = tuple(shlex.split(values.args))
    except ValueError as exc:
        return f"arguments: {exc} (use shell quoting)"
    checkpoint_dir = values.checkpoint_dir.strip() or None
    return TrainRequest(script, args, checkpoint_dir, values)


class TrainFormScreen(ModalScreen[TrainRequest | None]):
    """Start training on the selected machine.

    Args:
        machine_label: Which machine the run will start on (shown in the title).
        last: The values used last time.
        remote: A pod or instance: the current folder is synced there first, and the
            checkpoint folder comes from the config.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, machine_label: str, last: TrainFormValues, *, remote: bool = False) -> None:
        super().__init__()
        self.machine_label = machine_label
        self.last = last
        self.remote = remote

    def compose(self) -> ComposeResult:
        with Vertical(id="train-dialog", classes="dialog"):
            yield Static(f"Start training on {self.machine_label}", classes="dialog-title")
            yield Label("Script (path relative to the current folder)")
            yield Input(self.last.script, id="script", placeholder="train.py", compact=True)
            yield Label("Arguments (shell quoting)")
            yield Input(self.last.args, id="args", placeholder="--epochs 3 --lr 3e-4", compact=True)
            if self.remote:
                yield Label("This folder is synced to the machine first; checkpoints go to the")
                yield Label("config's folder there, so the field below is for local runs only")
            else:
                yield Label("Checkpoint folder; empty: the config default")
            yield Input(
                self.last.checkpoint_dir,
                id="checkpoint-dir",
                placeholder="checkpoints",
                compact=True,
            )
            yield Static("", id="train-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start", id="confirm", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#script", Input).focus()

    def values(self) -> TrainFormValues:
        """The form as typed."""
        return TrainFormValues(
            script=self.query_one("#script", Input).value,
            args=self.query_one("#args", Input).value,
            checkpoint_dir=self.query_one("#checkpoint-dir", Input).value,
        )

    @on(Button.Pressed, "#confirm")
    @on(Input.Submitted)
    def _confirm(self) -> None:
        result = parse_request(self.values())
        if isinstance(result, str):
            self.query_one("#train-error", Static).update(result)
            return
        self.dismiss(result)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without starting anything."""
        self.dismiss(None)
