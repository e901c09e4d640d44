"""The metrics pane: a sparkline per series that matters, live, with alerts.

Loss first, then eval loss, then learning rate (the user can pick others with `s`); each row
shows the smoothed curve with the newest point at the right edge, the latest value, the minimum
and the trend. The y-range of a row only widens at once (so no point is clipped) and narrows at
most once a second, so it does not jump with every point. `[`/`]` change the smoothing weight
(TensorBoard's debiased EMA), enter opens the full chart with the raw curve.

One exclusive worker follows the run (`set_run` cancels the previous one); reading happens in a
thread, so a large log never blocks the screen. A run with no local files (on a pod or an
instance) is followed through its log stream instead: `set_stream(source)` parses the lines a
`LogSource` yields (`MetricsStream`), in the same exclusive worker.

A hidden pane (another tab in a small terminal, or another pane zoomed) does not poll the run's
files and draws nothing; it reads what it missed when shown (the tracker is incremental).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget
from textual.worker import Worker, WorkerState

from runctl_tui.core.config import Config
from runctl_tui.core.logsource import LogSource
from runctl_tui.core.metrics.detectors import Alert, is_loss
from runctl_tui.core.metrics.models import Series, x_positions
from runctl_tui.core.metrics.smoothing import EmaSmoother
from runctl_tui.core.metrics.stream import MetricsStream
from runctl_tui.core.metrics.tracker import MetricsTracker

SPARK = "▁▂▃▄▅▆▇█"
NAME_WIDTH = 18
STATS_WIDTH = 30
WEIGHT_STEP = 0.05
MAX_WEIGHT = 0.99
SHRINK_AFTER_SECONDS = 1.0
"""The y-range narrows at most this often (it widens at once)."""
REPAINT_SECONDS = 1.0
"""New points are drawn at most this often: at once after a quiet spell, else together with
those that follow within the second (a log at 10 lines/s was polled and redrawn every 0.5 s)."""
_CHECKPOINT_DIR = re.compile(r"(?:checkpoint|ckpt|step)[-_=]?(\d+)", re.IGNORECASE)

PRIORITY = (
    ("loss", "train_loss", "train/loss", "loss_step", "train_loss_step"),
    ("eval_loss", "val_loss", "eval/loss", "val/loss", "validation_loss", "valid_loss"),
    ("learning_rate", "lr", "train/learning_rate", "train/lr", "lr-SGD", "lr-Adam", "lr-AdamW"),
)
"""What matters first: training loss, evaluation loss, learning rate."""


def default_selection(names: Sequence[str], limit: int = 4) -> list[str]:
    """The series shown before the user picks: loss, eval loss, learning rate, then losses.

    Args:
        names: Every series, in the order they appeared.
        limit: How many to choose.

    Returns:
        The chosen names, most important first.
    """
    chosen: list[str] = []
    for group in PRIORITY:
        found = next((n for n in group if n in names), None)
        if found is None:
            found = next((n for n in names if n.lower() in group and n not in chosen), None)
        if found is not None:
            chosen.append(found)
    for name in names:
        if len(chosen) >= limit:
            break
        if name not in chosen and is_loss(name):
            chosen.append(name)
    for name in names:
        if len(chosen) >= limit:
            break
        if name not in chosen and name not in ("epoch", "step"):
            chosen.append(name)
    return chosen[:limit]


def bucket(values: Sequence[float], width: int) -> list[float]:
    """Average `values` into at most `width` cells, the newest in the last cell."""
    if len(values) <= width:
        return list(values)
    out = []
    for index in range(width):
        start = index * len(values) // width
        end = (index + 1) * len(values) // width
        chunk = values[start:end]
        out.append(sum(chunk) / len(chunk))
    return out


def checkpoint_steps_in(directory: Path) -> list[float]:
    """Steps of checkpoints saved below a run folder (`checkpoint-500`, `step=1000.ckpt`)."""
    steps: list[float] = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return steps
    for entry in entries:
        match = _CHECKPOINT_DIR.search(entry.name)
        if match:
            steps.append(float(match.group(1)))
    return sorted(steps)


Snapshot = tuple[dict[str, tuple[list[float | None], list[float]]], dict[str, float | None]]


def _poll_and_copy(tracker: MetricsTracker) -> Snapshot | None:
    """Poll in a worker thread; on change, copy the series there too (the UI never waits).

    Returns:
        ({name: (steps, values)}, {name: minimum}), or None when nothing changed.
    """
    if not tracker.poll():
        return None
    series = tracker.series
    return (
        {name: (list(s.steps), list(s.values)) for name, s in series.items()},
        {name: s.minimum for name, s in series.items()},
    )


def _copy_series(series: dict[str, Series]) -> Snapshot:
    """The series copied for the UI (in a worker thread): ({name: (steps, values)}, minima)."""
    return (
        {name: (list(s.steps), list(s.values)) for name, s in series.items()},
        {name: s.minimum for name, s in series.items()},
    )


class MetricsPanel(Widget, can_focus=True):
    """Live sparklines of a run's metrics, with NaN, divergence and stall alerts.

    Args:
        config: The configuration (`[monitor]` and `[ui] ema_weight`); defaults when None.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left_square_bracket", "smoothing(-1)", "Smooth less"),
        Binding("right_square_bracket", "smoothing(1)", "Smooth more"),
        Binding("enter,g", "open_chart", "Chart"),
        Binding("p", "pick_series", "Pick series"),
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
    ]

    DEFAULT_CSS = """
    MetricsPanel { height: 1fr; padding: 0 1; }
    """

    weight: reactive[float] = reactive(0.6)
    """Smoothing weight of the sparklines and the chart."""
    cursor: reactive[int] = reactive(0)
    """Index of the highlighted row."""

    class AlertsChanged(Message):
        """The run's alerts changed (for the machine's row and a notification)."""

        def __init__(self, alerts: list[Alert]) -> None:
            super().__init__()
            self.alerts = alerts

    def __init__(
        self,
        config: Config | None = None,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.config = config if config is not None else Config()
        self.weight = self.config.ui.ema_weight
        self._tracker: MetricsTracker | None = None
        self._stream: MetricsStream | None = None
        """The log stream followed instead of files (a remote run), if any."""
        self._data: dict[str, tuple[list[float | None], list[float]]] = {}
        """Per series (steps, values): a copy taken in the worker thread after each poll."""
        self._minimum: dict[str, float | None] = {}
        self._smoothers: dict[str, EmaSmoother] = {}
        self._selection: list[str] | None = None
        self._bounds: dict[str, tuple[float, float, float]] = {}
        self._alerts: list[Alert] = []
        self._status = "no run selected"
        self._checkpoint_steps: list[float] = []
        self._stale = False
        self._last_repaint = -math.inf
        """When new data was last drawn (monotonic seconds)."""
        self._repaint_timer: Timer | None = None
        self._visible = asyncio.Event()
        """Set while the pane is on screen (Textual's Show and Hide events)."""
        self.running = True
        """Whether the followed run is still going (a finished run never stalls)."""

    # --- following a run -------------------------------------------------------------------
    def set_run(self, log_path: Path | None, run_dir: Path | None) -> None:
        """Follow a run's metrics (its log and every source in its folder), or nothing.

        Args:
            log_path: The run's console log, if any.
            run_dir: The run's folder, searched for metric files and event files.
        """
        self._data = {}
        self._smoothers = {}
        self._bounds = {}
        self._selection = None
        self._alerts = []
        self.cursor = 0
        self._stream = None
        main = run_dir if run_dir is not None else log_path
        if main is None:
            self._tracker = None
            self._status = "no run selected"
            self.workers.cancel_group(self, "metrics")
            self.refresh()
            return
        extra = [log_path] if run_dir is not None and log_path is not None else []
        self._tracker = MetricsTracker(
            main, extra_paths=extra, patterns=self.config.monitor.metrics_regex
        )
        self._status = f"reading {main.name}…"
        self.refresh()
        self._follow(self._tracker, run_dir)

    def set_checkpoint_steps(self, steps: Sequence[float]) -> None:
        """Steps where checkpoints were saved, marked on the full chart."""
        self._checkpoint_steps = sorted(steps)

    def set_stream(self, source: LogSource | None) -> None:
        """Follow the metrics in a log stream (a remote run's log over SSH), or nothing.

        The same exclusive worker as `set_run`'s: either call replaces what was followed.

        Args:
            source: The run's console log as a `LogSource`; None follows nothing.
        """
        self._data = {}
        self._minimum = {}
        self._smoothers = {}
        self._bounds = {}
        self._selection = None
        self._alerts = []
        self.cursor = 0
        self._tracker = None
        if source is None:
            self._stream = None
            self._status = "no run selected"
            self.workers.cancel_group(self, "metrics")
            self.refresh()
            return
        self._stream = MetricsStream(source, patterns=self.config.monitor.metrics_regex)
        self._status = f"reading {source.description}…"
        self.refresh()
        self._follow_stream(self._stream)

    @work(exclusive=True, group="metrics", exit_on_error=False)
    async def _follow_stream(self, stream: MetricsStream) -> None:
        # Quiet ticks only re-check the stall alert: a fraction of the stall limit is enough.
        stall = self.config.monitor.stall_seconds
        tick = max(1.0, min(30.0, stall / 10)) if stall > 0 else 30.0
        async for changed in stream.follow(tick=tick):
            if stream is not self._stream:
                return
            if changed:
                self._data, self._minimum = await asyncio.to_thread(_copy_series, stream.series)
            points = sum(len(values) for _, values in self._data.values())
            status = f"{stream.source.description} · {points} points"
            if stream.notice:
                status += f" · {stream.notice}"
            alerts = stream.alerts(
                divergence_factor=self.config.monitor.divergence_factor,
                stall_seconds=self.config.monitor.stall_seconds,
                running=self.running,
            )
            if alerts != self._alerts:
                self._alerts = alerts
                self.post_message(self.AlertsChanged(list(alerts)))
            elif not changed and status == self._status:
                continue  # nothing to redraw
            self._status = status
            self._repaint()

    @work(exclusive=True, group="metrics", exit_on_error=False)
    async def _follow(self, tracker: MetricsTracker, run_dir: Path | None) -> None:
        interval = max(0.1, self.config.monitor.log_poll_seconds)
        while True:
            await self._visible.wait()
            data = await asyncio.to_thread(_poll_and_copy, tracker)
            if tracker is not self._tracker:
                return
            if data is not None:
                self._data, self._minimum = data
                if run_dir is not None:
                    found = await asyncio.to_thread(checkpoint_steps_in, run_dir)
                    self._checkpoint_steps = sorted({*self._checkpoint_steps, *found})
            sources = len(tracker.sources)
            points = sum(len(values) for _, values in self._data.values())
            status = (
                f"{sources} source{'s' if sources != 1 else ''} · {points} points"
                if sources
                else "waiting for metrics…"
            )
            alerts = tracker.alerts(
                divergence_factor=self.config.monitor.divergence_factor,
                stall_seconds=self.config.monitor.stall_seconds,
                running=self.running,
            )
            changed = data is not None or status != self._status or alerts != self._alerts
            self._status = status
            if alerts != self._alerts:
                self._alerts = alerts
                self.post_message(self.AlertsChanged(list(alerts)))
            if changed:
                self._repaint()
            await asyncio.sleep(interval)

    def _repaint(self) -> None:
        """Redraw after new data, at most once per `REPAINT_SECONDS`; a hidden pane (tabbed
        layout) redraws when shown instead."""
        # Refreshing a widget that is not on screen makes the next frame rebuild the map of
        # every widget, for nothing.
        if not self.is_on_screen:
            self._stale = True
            return
        wait = self._last_repaint + REPAINT_SECONDS - time.monotonic()
        if wait <= 0:
            self._last_repaint = time.monotonic()
            self.refresh()
        elif self._repaint_timer is None:
            self._repaint_timer = self.set_timer(wait, self._repaint_due, name="metrics frame")

    def _repaint_due(self) -> None:
        self._repaint_timer = None
        self._repaint()

    def on_hide(self) -> None:
        self._visible.clear()

    def on_show(self) -> None:
        self._visible.set()
        if self._stale:
            self._stale = False
            self.refresh()

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "metrics" and event.state is WorkerState.ERROR:
            self._status = f"metrics stopped: {event.worker.error}"
            self.refresh()

    # --- what is shown ---------------------------------------------------------------------
    @property
    def shown(self) -> list[str]:
        """The series on screen, in order."""
        names = list(self._data)
        if self._selection is not None:
            return [n for n in self._selection if n in self._data]
        return default_selection(names, limit=max(1, (self.size.height or 8) - 2))

    @property
    def alerts(self) -> list[Alert]:
        """The current alerts."""
        return list(self._alerts)

    def _range(self, name: str, values: list[float]) -> tuple[float, float]:
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return 0.0, 1.0
        low, high = min(finite), max(finite)
        pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
        now = time.monotonic()
        current = self._bounds.get(name)
        if current is None or low < current[0] or high > current[1]:
            lo = low - pad if current is None else min(current[0], low - pad)
            hi = high + pad if current is None else max(current[1], high + pad)
            self._bounds[name] = (lo, hi, now)
        elif (high - low) < 0.5 * (current[1] - current[0]) and (
            now - current[2] >= SHRINK_AFTER_SECONDS
        ):
            self._bounds[name] = (low - pad, high + pad, now)
        lo, hi, _ = self._bounds[name]
        return lo, hi

    def render(self) -> Text:
        """The rows: one per series shown, then the alerts."""
        width = max(self.size.width, NAME_WIDTH + STATS_WIDTH + 8)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"smoothing {self.weight:.2f}", style="dim")
        text.append(f" · {self._status}\n", style="dim")
        shown = self.shown
        if not shown:
            text.append("No metrics yet.", style="dim")
        spark_width = max(8, width - NAME_WIDTH - STATS_WIDTH - 2)
        for index, name in enumerate(shown):
            _, values = self._data[name]
            smoothed = self._smoothed(name, values)
            cells = [c for c in bucket(smoothed, spark_width) if math.isfinite(c)]
            lo, hi = self._range(name, cells)
            span = hi - lo or 1.0
            line = "".join(
                SPARK[min(len(SPARK) - 1, max(0, int((v - lo) / span * len(SPARK))))] for v in cells
            )
            selected = index == self.cursor and self.has_focus
            label = name if len(name) <= NAME_WIDTH - 1 else name[: NAME_WIDTH - 2] + "…"
            text.append(f"{label:<{NAME_WIDTH}}", style="bold reverse" if selected else "bold")
            text.append(f"{line:>{spark_width}}", style="cyan")
            text.append("  ")
            text.append_text(self._stats(name, values, smoothed))
            text.append("\n")
        for alert in self._alerts:
            text.append(f"⚠ {alert.message}\n", style="bold red")
        return text

    def _smoothed(self, name: str, values: list[float]) -> list[float]:
        """The smoothed series, extended by the new points only (redraws stay cheap)."""
        smoother = self._smoothers.get(name)
        if smoother is None or smoother.weight != self.weight or len(smoother) > len(values):
            smoother = self._smoothers[name] = EmaSmoother(self.weight)
        return smoother.extend(values[len(smoother) :])

    def _stats(self, name: str, values: list[float], smoothed: list[float]) -> Text:
        last = values[-1] if values else math.nan
        minimum = self._minimum.get(name)
        if minimum is None:
            minimum = math.nan
        stats = Text()
        style = "bold red" if not math.isfinite(last) else ""
        stats.append(f"{last:>9.4g}", style=style)
        stats.append(f"  min {minimum:<9.4g}", style="dim")
        stats.append_text(self._trend(name, smoothed))
        return stats

    @staticmethod
    def _trend(name: str, smoothed: list[float]) -> Text:
        # Only the newest tenth matters; look at no more than a few thousand points. A finite
        # sum means every point is finite (NaN and inf propagate): no per-point check then.
        window = smoothed[-5000:]
        finite = window if math.isfinite(sum(window)) else [v for v in window if math.isfinite(v)]
        if len(finite) < 2:
            return Text(" ·")
        back = finite[max(0, len(finite) - 1 - max(1, len(finite) // 10))]
        now = finite[-1]
        scale = max(abs(back), abs(now), 1e-12)
        if abs(now - back) / scale < 0.01:
            return Text(" →", style="dim")
        falling = now < back
        good = falling if is_loss(name) else None
        style = "green" if good is True else ("red" if good is False else "")
        return Text(" ↓" if falling else " ↑", style=style)

    # --- keys ------------------------------------------------------------------------------
    def action_smoothing(self, direction: int) -> None:
        """Change the smoothing weight by one step (0 to 0.99)."""
        self.weight = round(min(MAX_WEIGHT, max(0.0, self.weight + direction * WEIGHT_STEP)), 2)

    def action_move(self, delta: int) -> None:
        """Move the highlighted row."""
        count = len(self.shown)
        if count:
            self.cursor = (self.cursor + delta) % count

    def action_open_chart(self) -> None:
        """Open the full chart of the highlighted series."""
        from runctl_tui.ui.screens.metrics_chart import MetricsChartScreen

        shown = self.shown
        if not shown:
            self.notify("No metrics to chart yet.", severity="warning")
            return
        name = shown[min(self.cursor, len(shown) - 1)]
        steps, values = self._data[name]
        self.app.push_screen(
            MetricsChartScreen(
                name,
                x_positions(steps),
                values,
                weight=self.weight,
                checkpoint_steps=self._checkpoint_steps,
            )
        )

    def action_pick_series(self) -> None:
        """Choose the series to show."""
        from runctl_tui.ui.screens.metrics_pick import MetricsPickScreen

        def chosen(names: list[str] | None) -> None:
            if names is not None:
                self._selection = names
                self.cursor = 0
                self.refresh()

        self.app.push_screen(MetricsPickScreen(list(self._data), self.shown), chosen)

    def watch_weight(self) -> None:
        self.refresh()

    def watch_cursor(self) -> None:
        self.refresh()
