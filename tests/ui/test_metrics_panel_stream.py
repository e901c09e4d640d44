"""The metrics pane following a log stream (`set_stream`), as it does for remote runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.pilot import Pilot

from runctl_tui.core.config import Config
from runctl_tui.core.logs import FileLogSource
from runctl_tui.core.logsource import LogSource
from runctl_tui.ui.widgets.metrics_panel import MetricsPanel


class StreamApp(App[None]):
    def __init__(self, source: LogSource | None) -> None:
        super().__init__()
        self.source = source
        self.alerts: list[MetricsPanel.AlertsChanged] = []

    def compose(self) -> ComposeResult:
        yield MetricsPanel(Config(), id="metrics")

    def on_mount(self) -> None:
        self.query_one(MetricsPanel).set_stream(self.source)

    def on_metrics_panel_alerts_changed(self, message: MetricsPanel.AlertsChanged) -> None:
        self.alerts.append(message)


async def until(pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.02)


def count(panel: MetricsPanel, name: str) -> int:
    data = panel._data.get(name)
    return len(data[1]) if data else 0


async def test_panel_shows_series_from_a_log_source_and_alerts(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("".join(f"step {i} loss={1 / i:.4f} lr=0.1\n" for i in range(1, 21)))
    app = StreamApp(FileLogSource(log, poll_interval=0.05))
    async with app.run_test(size=(100, 10)) as pilot:
        panel = pilot.app.query_one(MetricsPanel)
        await until(pilot, lambda: count(panel, "loss") == 20)
        with log.open("a") as out:
            out.write("step 21 loss=0.0400 lr=0.1\n")
        await until(pilot, lambda: count(panel, "loss") == 21)
        rendered = str(panel.render())
        assert panel.shown == ["loss", "lr"]
        assert "min 0.04" in rendered
        assert f"{log} · 42 points" in rendered
        assert app.alerts == []
        with log.open("a") as out:
            out.write("step 22 loss=nan lr=0.1\n")
        await until(pilot, lambda: bool(app.alerts))
        assert app.alerts[-1].alerts[0].kind == "nonfinite"
        assert "loss is NaN at step 22" in str(panel.render())


async def test_set_run_replaces_the_stream_and_none_clears(tmp_path: Path) -> None:
    streamed = tmp_path / "remote.log"
    streamed.write_text("step 1 val_loss=0.5\n")
    local = tmp_path / "local.log"
    local.write_text("step 1 loss=0.9\nstep 2 loss=0.8\n")
    app = StreamApp(FileLogSource(streamed, poll_interval=0.05))
    async with app.run_test(size=(100, 10)) as pilot:
        panel = pilot.app.query_one(MetricsPanel)
        await until(pilot, lambda: count(panel, "val_loss") == 1)
        panel.config.monitor.log_poll_seconds = 0.05
        panel.set_run(local, None)
        await until(pilot, lambda: count(panel, "loss") == 2)
        # The stream's worker was cancelled: its new lines never reach the pane.
        with streamed.open("a") as out:
            out.write("step 2 val_loss=0.4\n")
        await pilot.pause(0.3)
        assert "val_loss" not in panel._data
        assert [w for w in panel.workers if w.group == "metrics" and w.is_running]
        panel.set_stream(None)
        await until(pilot, lambda: not [w for w in panel.workers if w.is_running])
        assert panel._data == {} and "no run selected" in str(panel.render())
