"""The lower panes (log, checkpoints, metrics): their containers, their widgets, what they follow.

Each widget comes from its own module (written with the logs, checkpoints and metrics work); a
widget that cannot be imported becomes an honest "not available" note instead of breaking the
dashboard.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from runctl_tui.core.config import Config
from runctl_tui.core.fleet import FleetRow
from runctl_tui.core.models import Provider, Run
from runctl_tui.core.secrets import scrub


class Pane(Vertical):
    """A bordered pane that `z` can zoom to the whole screen."""

    ALLOW_MAXIMIZE: ClassVar[bool | None] = True


@dataclass(frozen=True)
class PaneSpec:
    """One of the lower panes."""

    key: str
    title: str
    module: str
    widget_class: str


LOWER_PANES: tuple[PaneSpec, ...] = (
    PaneSpec("log", "Log", "log_view", "LogView"),
    PaneSpec("checkpoints", "Checkpoints", "checkpoint_browser", "CheckpointBrowser"),
    PaneSpec("metrics", "Metrics", "metrics_panel", "MetricsPanel"),
)


def make_pane_widget(
    spec: PaneSpec, config: Config, *, clock: Callable[[], float], readonly: bool
) -> Widget:
    """The pane's widget, or a note saying why it is not available.

    Each widget gets, of the settings below, those its constructor accepts.

    Args:
        spec: Which pane.
        config: The effective configuration.
        clock: Epoch-seconds clock (fixed for screenshots).
        readonly: Whether the dashboard is readonly.

    Returns:
        The widget, with id `<key>-widget`.
    """
    widget_id = f"{spec.key}-widget"
    try:
        module = importlib.import_module(f"runctl_tui.ui.widgets.{spec.module}")
        cls = getattr(module, spec.widget_class)
    except Exception as exc:
        return Static(
            f"{spec.title} pane not available in this build: {scrub(str(exc))}",
            id=widget_id,
            classes="pane-missing",
        )
    offered: dict[str, Any] = {
        "config": config,
        "settings": config.checkpoints,
        "monitor": config.monitor,
        "max_lines": config.monitor.log_buffer_lines,
        "max_fps": config.ui.max_fps,
        "ema_weight": config.ui.ema_weight,
        "readonly": readonly,
        "clock": clock,
    }
    try:
        accepted = set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        accepted = set()
    kwargs = {name: value for name, value in offered.items() if name in accepted}
    widget: Widget = cls(id=widget_id, **kwargs)
    return widget


def run_paths(run: Run) -> tuple[Path, Path, Path]:
    """A local run's log file, run folder and checkpoint folder (absolute).

    Args:
        run: A run recorded on this computer.

    Returns:
        (log, run folder, checkpoint folder).
    """
    log = Path(run.log_path).expanduser()
    checkpoint = Path(run.checkpoint_dir).expanduser()
    if not checkpoint.is_absolute():
        checkpoint = Path(run.cwd) / checkpoint
    return log, log.parent, checkpoint


def log_source_for(row: FleetRow, config: Config) -> tuple[Any | None, str]:
    """The log source to follow for a row's run, and a sentence for the pane.

    Args:
        row: The selected machine and its run.
        config: For the polling interval.

    Returns:
        (source or None, description or the reason there is no log).
    """
    run = row.run
    if run is None:
        return None, f"no run recorded on {row.machine.name or row.machine.id}"
    if run.backend is Provider.LOCAL:
        try:
            logs = importlib.import_module("runctl_tui.core.logs")
            frame = 1 / max(1, config.ui.max_fps)
            # The pane draws at most max_fps frames a second, so it polls the file once a
            # frame (a stat) instead of taking file events: watchfiles' watch thread costs
            # about a point of a core while a log streams, for lines the pane could not
            # show sooner anyway. `runctl monitor` keeps the events.
            source = logs.FileLogSource(
                Path(run.log_path),
                poll_interval=min(frame, config.monitor.log_poll_seconds),
                use_events=False,
                min_read_interval=frame,
            )
        except Exception as exc:
            return None, f"log tail not available: {scrub(str(exc))}"
        return source, run.log_path
    from runctl_tui.ui.remote import remote_log_source

    return remote_log_source(row, run, config)
