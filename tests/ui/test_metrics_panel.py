"""The metrics pane and the chart in a real Textual app, following real files."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.pilot import Pilot

from runctl_tui.core.config import Config
from runctl_tui.ui.screens.metrics_chart import MetricsChartScreen, render_chart
from runctl_tui.ui.widgets.metrics_panel import MetricsPanel, default_selection

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "metrics"


def fast_config() -> Config:
    config = Config()
    config.monitor.log_poll_seconds = 0.05
    return config


class PanelApp(App[None]):
    def __init__(self, log: Path | None, run_dir: Path | None) -> None:
        super().__init__()
        self.log_path = log
        self.run_dir = run_dir
        self.alerts: list[MetricsPanel.AlertsChanged] = []

    def compose(self) -> ComposeResult:
        yield MetricsPanel(fast_config(), id="metrics")

    def on_mount(self) -> None:
        panel = self.query_one(MetricsPanel)
        panel.focus()
        panel.set_run(self.log_path, self.run_dir)

    def on_metrics_panel_alerts_changed(self, message: MetricsPanel.AlertsChanged) -> None:
        self.alerts.append(message)


async def until(pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.02)


def panel_of(pilot: Pilot[Any]) -> MetricsPanel:
    return pilot.app.query_one(MetricsPanel)


def points(panel: MetricsPanel, name: str) -> int:
    data = panel._data.get(name)
    return len(data[1]) if data else 0


async def test_follows_a_growing_log_and_shows_latest_and_min(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("step 1 loss=0.9 lr=0.1\nstep 2 loss=0.7 lr=0.1\n")
    app = PanelApp(log, None)
    async with app.run_test(size=(100, 10)) as pilot:
        panel = panel_of(pilot)
        await until(pilot, lambda: points(panel, "loss") == 2)
        with log.open("a") as fh:
            fh.write("step 3 loss=0.5 lr=0.05\nstep 4 loss=0.6 lr=0.05\n")
        await until(pilot, lambda: points(panel, "loss") == 4)
        rendered = str(panel.render())
        assert panel.shown == ["loss", "lr"]
        assert "0.6" in rendered and "min 0.5" in rendered


async def test_smoothing_weight_from_the_keyboard(tmp_path: Path) -> None:
    app = PanelApp(None, None)
    async with app.run_test() as pilot:
        panel = panel_of(pilot)
        assert panel.weight == 0.6
        await pilot.press("right_square_bracket")
        assert panel.weight == 0.65
        await pilot.press("left_square_bracket", "left_square_bracket", "left_square_bracket")
        assert panel.weight == 0.5
        assert "smoothing 0.50" in str(panel.render())


async def test_nan_raises_a_visible_alert(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("step 1 loss=0.9\nstep 2 loss=nan\n")
    app = PanelApp(log, None)
    async with app.run_test(size=(100, 10)) as pilot:
        panel = panel_of(pilot)
        await until(pilot, lambda: bool(app.alerts))
        assert app.alerts[-1].alerts[0].kind == "nonfinite"
        assert "⚠ loss is NaN at step 2" in str(panel.render())


async def test_switching_runs_stops_the_old_worker(tmp_path: Path) -> None:
    first = tmp_path / "a.log"
    second = tmp_path / "b.log"
    first.write_text("step 1 loss=1.0\n")
    second.write_text("step 1 acc=0.5\n")
    app = PanelApp(first, None)
    async with app.run_test() as pilot:
        panel = panel_of(pilot)
        await until(pilot, lambda: points(panel, "loss") == 1)
        panel.set_run(second, None)
        await until(pilot, lambda: points(panel, "acc") == 1)
        running = [w for w in app.workers if w.group == "metrics" and w.is_running]
        assert len(running) == 1
        with first.open("a") as fh:
            fh.write("step 2 loss=0.5\n")
        await pilot.pause(0.3)
        assert "loss" not in panel._data
        panel.set_run(None, None)
        await until(
            pilot, lambda: not [w for w in app.workers if w.group == "metrics" and w.is_running]
        )


async def test_chart_opens_for_the_highlighted_series_with_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(SAMPLES / "hf_console" / "trainer_state.json", run / "trainer_state.json")
    (run / "checkpoint-6").mkdir()
    app = PanelApp(None, run)
    async with app.run_test(size=(120, 30)) as pilot:
        panel = panel_of(pilot)
        await until(pilot, lambda: points(panel, "eval_loss") == 2)
        assert panel.shown[:3] == ["loss", "eval_loss", "learning_rate"]
        await pilot.press("down", "enter")
        assert isinstance(app.screen, MetricsChartScreen)
        assert app.screen.series_name == "eval_loss"
        assert app.screen.checkpoint_steps == [6.0]
        await pilot.press("escape")
        assert not isinstance(app.screen, MetricsChartScreen)


def test_default_selection_order() -> None:
    names = ["epoch", "learning_rate", "grad_norm", "eval_loss", "loss"]
    assert default_selection(names, 3) == ["loss", "eval_loss", "learning_rate"]
    assert default_selection(["train/lr", "val/loss", "train/loss"], 3) == [
        "train/loss",
        "val/loss",
        "train/lr",
    ]


def test_chart_marks_checkpoints_and_draws_both_curves() -> None:
    xs = [float(i) for i in range(20)]
    values = [1.0 / (i + 1) + (0.1 if i % 2 else 0.0) for i in range(20)]
    text = render_chart(
        "loss", xs, values, weight=0.6, width=80, height=20, checkpoint_steps=[10.0]
    )
    plain = render_chart("loss", xs, values, weight=0.6, width=80, height=20)
    assert "loss" in text and "smoothing 0.60" in text and "step" in text
    assert text != plain  # the checkpoint line is drawn
    raw_hidden = render_chart("loss", xs, values, weight=0.6, width=80, height=20, show_raw=False)
    assert raw_hidden != plain


def test_snapshot_panel(snap_compare: Any, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(SAMPLES / "lightning_tqdm" / "metrics.csv", run / "metrics.csv")
    shutil.copy(SAMPLES / "hf_console" / "trainer_state.json", run / "trainer_state.json")

    async def ready(pilot: Pilot[Any]) -> None:
        panel = panel_of(pilot)
        await until(
            pilot, lambda: points(panel, "val_loss") == 3 and points(panel, "eval_loss") == 2
        )
        await pilot.pause()

    assert snap_compare(PanelApp(None, run), terminal_size=(100, 10), run_before=ready)


def test_snapshot_chart(snap_compare: Any, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(SAMPLES / "lightning_tqdm" / "metrics.csv", run / "metrics.csv")
    (run / "step=10.ckpt").write_bytes(b"")

    async def ready(pilot: Pilot[Any]) -> None:
        panel = panel_of(pilot)
        await until(pilot, lambda: points(panel, "val_loss") == 3)
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(PanelApp(None, run), terminal_size=(100, 30), run_before=ready)


def test_y_range_widens_at_once_and_narrows_at_most_once_a_second(
    monkeypatch: Any,
) -> None:
    import runctl_tui.ui.widgets.metrics_panel as module

    now = [100.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    panel = MetricsPanel(fast_config())
    low, high = panel._range("loss", [1.0, 2.0])
    assert low < 1.0 and high > 2.0
    assert panel._range("loss", [1.2, 1.9]) == (low, high)  # inside: unchanged
    wide = panel._range("loss", [0.5, 2.0])
    assert wide[0] < 0.5  # a point below the range widens it at once
    now[0] += 0.5
    assert panel._range("loss", [0.50, 0.52]) == wide  # narrowing waits
    now[0] += 1.0
    narrow = panel._range("loss", [0.50, 0.52])
    assert narrow[0] > wide[0] and narrow[1] < 1.0
