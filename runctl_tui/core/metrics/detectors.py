"""Alerts on a run's metrics: NaN/inf values, a diverging loss, a stalled run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from runctl_tui.core.metrics.models import Series

MIN_POINTS_FOR_DIVERGENCE = 3
"""A loss needs a few points before its running minimum means anything."""


@dataclass(frozen=True)
class Alert:
    """Something wrong with a run, for the dashboard's pane and the machine's row."""

    kind: str
    """`nonfinite`, `divergence` or `stall`."""
    series: str | None
    """The series concerned; None for the run as a whole (a stall)."""
    message: str
    """A sentence for the user."""


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _step(series: Series) -> str:
    step = series.last_step
    if step is None:
        return f"point {len(series)}"
    return f"step {int(step) if float(step).is_integer() else step}"


def is_loss(name: str) -> bool:
    """Whether a series name is a loss (lower is better), by the names libraries use."""
    lowered = name.lower()
    return "loss" in lowered or lowered.endswith(("nll", "perplexity", "ppl"))


def check_nonfinite(series: Series) -> Alert | None:
    """An alert when the series' newest value is NaN or infinite.

    Args:
        series: Any series.

    Returns:
        The alert, or None.
    """
    last = series.last
    if last is None or math.isfinite(last):
        return None
    word = "NaN" if math.isnan(last) else ("+inf" if last > 0 else "-inf")
    return Alert("nonfinite", series.name, f"{series.name} is {word} at {_step(series)}")


def check_divergence(series: Series, factor: float) -> Alert | None:
    """An alert when a loss rises above `factor` times its running minimum.

    Only loss-like series with a positive minimum are judged (a loss that can go negative
    has no meaningful ratio).

    Args:
        series: A series; non-loss names are ignored.
        factor: `[monitor] divergence_factor`.

    Returns:
        The alert, or None.
    """
    if not is_loss(series.name) or len(series) < MIN_POINTS_FOR_DIVERGENCE:
        return None
    last = series.last
    minimum = series.minimum
    if last is None or minimum is None or minimum <= 0 or not math.isfinite(last):
        return None
    if last > factor * minimum:
        return Alert(
            "divergence",
            series.name,
            f"{series.name} is diverging: {_fmt(last)} at {_step(series)} is "
            f"{last / minimum:.1f}x its minimum {_fmt(minimum)}",
        )
    return None


def check_stall(last_point_at: float, now: float, stall_seconds: float) -> Alert | None:
    """An alert when a running run has shown no new point for `stall_seconds`.

    Args:
        last_point_at: Wall time (epoch seconds) of the newest point, or of when watching
            began if there is none yet.
        now: Current wall time.
        stall_seconds: `[monitor] stall_seconds`; 0 or less disables the check.

    Returns:
        The alert, or None.
    """
    if stall_seconds <= 0:
        return None
    idle = now - last_point_at
    if idle <= stall_seconds:
        return None
    minutes = idle / 60
    age = f"{minutes:.0f} min" if minutes >= 1 else f"{idle:.0f} s"
    return Alert("stall", None, f"no new step for {age} (stall limit {stall_seconds:.0f} s)")


def check_series(series: dict[str, Series], divergence_factor: float) -> list[Alert]:
    """NaN/inf and divergence alerts over every series, in series order.

    Args:
        series: The run's series by name.
        divergence_factor: `[monitor] divergence_factor`.

    Returns:
        The alerts, at most one per series (NaN/inf first).
    """
    alerts: list[Alert] = []
    for item in series.values():
        alert = check_nonfinite(item) or check_divergence(item, divergence_factor)
        if alert is not None:
            alerts.append(alert)
    return alerts
