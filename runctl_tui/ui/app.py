"""The dashboard application: composition and key bindings only."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Static


class RunctlApp(App[None]):
    """The runctl dashboard."""

    TITLE = "runctl"

    def __init__(
        self, config_path: str | None = None, demo: bool = False, readonly: bool = False
    ) -> None:
        super().__init__()
        self.config_path = config_path
        self.demo = demo
        self.readonly = readonly

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("runctl dashboard")
        yield Footer()
