"""The command palette (ctrl+p): every dashboard action by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("Create machine", "create", "choose a GPU / instance type, see its $/h, confirm"),
    ("Start training", "train", "run a script on the selected machine"),
    ("Resume from checkpoint", "resume", "restart the selected run from the chosen checkpoint"),
    ("Stop", "stop", "stop the selected machine, or the run on this computer"),
    ("Start machine", "start", "start the selected stopped machine"),
    ("Terminate machine", "terminate", "destroy the selected machine (type its name)"),
    ("Filter machines", "filter", "show only machines matching a text"),
    ("Follow log", "follow", "keep the log pane at its end"),
    ("Wrap log lines", "wrap", "wrap long lines in the log pane"),
    ("Zoom pane", "zoom", "fill the screen with the focused pane"),
    ("Show log", "show_pane('log')", "the log of the selected run"),
    ("Show checkpoints", "show_pane('checkpoints')", "checkpoints of the selected run"),
    ("Show metrics", "show_pane('metrics')", "loss curves of the selected run"),
    ("Next pane", "next_pane", "move the focus to the next pane"),
    ("Help: keys", "help", "every key and what it does"),
    ("Quit", "quit", "leave the dashboard; runs and machines keep running"),
)


class DashboardCommands(Provider):
    """Every action of the dashboard screen."""

    def _run(self, action: str) -> None:
        self.app.call_later(self.app.run_action, f"screen.{action}")

    async def discover(self) -> Hits:
        """All actions, for the empty palette."""
        for name, action, help_text in COMMANDS:
            yield DiscoveryHit(name, partial(self._run, action), help=help_text)

    async def search(self, query: str) -> Hits:
        """Actions whose name matches the query."""
        matcher = self.matcher(query)
        for name, action, help_text in COMMANDS:
            score = matcher.match(name)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(name), partial(self._run, action), help=help_text
                )
