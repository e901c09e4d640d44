"""A full chart of one metric: axes, steps, smoothed and raw curves, checkpoint saves marked."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from typing import ClassVar

import plotext
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.events import Resize
from textual.screen import ModalScreen
from textual.widgets import Static

from runctl_tui.core.metrics.smoothing import debiased_ema

WEIGHT_STEP = 0.05
MAX_WEIGHT = 0.99
MAX_PLOTTED = 3000
"""Points drawn at most per curve: a terminal has a few hundred columns of braille dots."""


def _thin(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """Every k-th point (and always the newest), at most MAX_PLOTTED of them."""
    if len(xs) <= MAX_PLOTTED:
        return list(xs), list(ys)
    stride = -(-len(xs) // MAX_PLOTTED)
    keep = [*range(0, len(xs) - 1, stride), len(xs) - 1]
    return [xs[i] for i in keep], [ys[i] for i in keep]


def render_chart(
    name: str,
    xs: Sequence[float],
    values: Sequence[float],
    *,
    weight: float,
    width: int,
    height: int,
    checkpoint_steps: Sequence[float] = (),
    show_raw: bool = True,
) -> str:
    """The chart as text with ANSI colours, drawn by plotext.

    Args:
        name: Series name, for the title.
        xs: Steps (x) of the points.
        values: Raw values.
        weight: Smoothing weight (TensorBoard's debiased EMA).
        width: Columns available.
        height: Rows available.
        checkpoint_steps: Steps where a checkpoint was saved, drawn as vertical lines.
        show_raw: Whether to draw the raw curve beside the smoothed one.

    Returns:
        The rendered chart.
    """
    finite = [(x, v) for x, v in zip(xs, values, strict=False) if math.isfinite(v)]
    # plotext 6 draws on one module-level figure and prints warnings on stdout, which would
    # scribble over the Textual screen: capture them (this only runs on the UI thread).
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        # Size the plot to the widget, not to the terminal plotext would measure.
        plotext.terminal.limit(False, False)
        fig = plotext.figure
        fig.clear()
        fig.plot_size(max(width, 20), max(height, 6))
        fig.theme("dark")
        fig.title(f"{name}  (smoothing {weight:.2f})")
        fig.label("step", axis="x")
        if finite:
            fx = [x for x, _ in finite]
            fv = [v for _, v in finite]
            # Smooth the whole series, then thin both curves for drawing.
            sx, sv = _thin(fx, debiased_ema(fv, weight))
            if show_raw and weight > 0:
                rx, rv = _thin(fx, fv)
                raw = fig.signal(rx, rv, marker="dot")
                raw.lines()
                raw.label("raw")
                fig.draw(raw)
            smooth = fig.signal(sx, sv, marker="braille")
            smooth.lines()
            smooth.label("smoothed" if weight > 0 else "raw")
            fig.draw(smooth)
            low, high = min(fx), max(fx)
            for step in checkpoint_steps:
                if low <= step <= high:
                    fig.line(step, "vertical")
        return str(fig.build())


class MetricsChartScreen(ModalScreen[None]):
    """One series at full size; `[`/`]` change smoothing, `r` hides the raw curve.

    Args:
        name: Series name.
        xs: Steps of the points.
        values: Raw values.
        weight: Initial smoothing weight.
        checkpoint_steps: Steps where checkpoints were saved.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,c", "close", "Close"),
        Binding("left_square_bracket", "smoothing(-1)", "Less smoothing"),
        Binding("right_square_bracket", "smoothing(1)", "More smoothing"),
        Binding("r", "toggle_raw", "Raw curve"),
    ]

    DEFAULT_CSS = """
    MetricsChartScreen { align: center middle; }
    MetricsChartScreen > #chart-dialog {
        width: 95%; height: 90%; border: round $accent; background: $surface; padding: 0 1;
    }
    MetricsChartScreen #chart { height: 1fr; }
    MetricsChartScreen #chart-help { height: 1; color: $text-muted; }
    """

    def __init__(
        self,
        name: str,
        xs: Sequence[float],
        values: Sequence[float],
        *,
        weight: float = 0.6,
        checkpoint_steps: Sequence[float] = (),
    ) -> None:
        super().__init__()
        self.series_name = name
        self.xs = list(xs)
        self.values = list(values)
        self.weight = weight
        self.checkpoint_steps = list(checkpoint_steps)
        self.show_raw = True

    def compose(self) -> ComposeResult:
        with Vertical(id="chart-dialog"):
            yield Static(id="chart")
            yield Static(
                "[ ] smoothing · r raw curve · esc close"
                + ("" if not self.checkpoint_steps else " · │ checkpoint saved"),
                id="chart-help",
            )

    def on_mount(self) -> None:
        # The chart's size is known once the dialog is laid out.
        self.call_after_refresh(self._draw)

    def on_resize(self, event: Resize) -> None:
        self._draw()

    def _draw(self) -> None:
        chart = self.query_one("#chart", Static)
        width, height = chart.size.width, chart.size.height
        if width <= 0 or height <= 0:
            width, height = max(self.size.width - 8, 20), max(self.size.height - 6, 6)
        text = render_chart(
            self.series_name,
            self.xs,
            self.values,
            weight=self.weight,
            width=width,
            height=height,
            checkpoint_steps=self.checkpoint_steps,
            show_raw=self.show_raw,
        )
        chart.update(Text.from_ansi(text))

    def action_smoothing(self, direction: int) -> None:
        """Change the smoothing weight by one step."""
        self.weight = round(min(MAX_WEIGHT, max(0.0, self.weight + direction * WEIGHT_STEP)), 2)
        self._draw()

    def action_toggle_raw(self) -> None:
        """Show or hide the raw curve."""
        self.show_raw = not self.show_raw
        self._draw()

    def action_close(self) -> None:
        """Close the chart."""
        self.dismiss(None)
