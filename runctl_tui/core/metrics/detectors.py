"""Alerts on a run's metrics: NaN/inf values, a diverging loss, a stalled run."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from statistics import median

from runctl_tui.core.metrics.models import Series

DIVERGENCE_WINDOW = 5
"""Raw points in the rolling median the divergence rule starts from (a spike of up to two
points moves it not at all)."""
DIVERGENCE_WEIGHT = 0.8
"""Weight of TensorBoard's debiased EMA laid over that median (evens out minibatch noise)."""
DIVERGENCE_WARMUP = 10
"""Finite points of a loss before the divergence rule judges it (early losses swing)."""
DIVERGENCE_PATIENCE = 2
"""Consecutive points the smoothed loss must stay above the limit before the alert."""


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


class DivergenceWatch:
    """The divergence rule applied incrementally to one growing loss series.

    The rule: each finite raw value is replaced by the median of the last
    `DIVERGENCE_WINDOW` finite values (isolated spikes vanish), and that median is smoothed
    with TensorBoard's debiased EMA (weight `DIVERGENCE_WEIGHT`; minibatch noise evens out).
    The running minimum is that of the smoothed curve, so one lucky minibatch cannot set it.
    After `DIVERGENCE_WARMUP` finite points, a smoothed value above `factor` times the
    smoothed minimum counts; the loss is diverging once `DIVERGENCE_PATIENCE` consecutive
    points count, and stops being so as soon as one does not. A loss that jumps to 10x and
    stays there is caught about 3 to 5 points later; the bundled demo's noisy per-step loss,
    whose raw values swing 4x around their running minimum, stays below 2x smoothed.

    Each `update` reads only the points added since the last one, so a long run costs
    nothing per poll; a series replaced or shortened (a log read again from the start) is
    judged afresh. NaN/inf values are skipped here (`check_nonfinite` reports them at once).
    """

    __slots__ = (
        "_count",
        "_ema",
        "_minimum",
        "_recent",
        "_seen",
        "_series",
        "_smoothed",
        "_streak",
    )

    def __init__(self) -> None:
        """Start with no points seen."""
        self._reset(None)

    def _reset(self, series: Series | None) -> None:
        self._series = series
        self._seen = 0
        self._recent: deque[float] = deque(maxlen=DIVERGENCE_WINDOW)
        self._ema = 0.0
        self._count = 0
        self._minimum = math.inf
        self._streak = 0
        self._smoothed = 0.0

    def update(self, series: Series, factor: float) -> Alert | None:
        """Take in the points added since the last call and judge the newest state.

        Args:
            series: The loss series (the same object each call while it grows).
            factor: `[monitor] divergence_factor`.

        Returns:
            The divergence alert while the rule holds, else None.
        """
        values = series.values
        if series is not self._series or len(values) < self._seen:
            self._reset(series)
        weight = DIVERGENCE_WEIGHT
        recent = self._recent
        ema, count, minimum, streak = self._ema, self._count, self._minimum, self._streak
        smoothed = self._smoothed
        for value in values[self._seen :]:
            if not math.isfinite(value):
                continue
            recent.append(value)
            ema = ema * weight + (1 - weight) * median(recent)
            count += 1
            smoothed = ema / (1 - weight**count)
            if count > DIVERGENCE_WARMUP and minimum > 0 and smoothed > factor * minimum:
                streak += 1
            else:
                streak = 0
            minimum = min(minimum, smoothed)
        self._seen = len(values)
        self._ema, self._count, self._minimum, self._streak = ema, count, minimum, streak
        self._smoothed = smoothed
        if streak < DIVERGENCE_PATIENCE:
            return None
        return Alert(
            "divergence",
            series.name,
            f"{series.name} is diverging: smoothed {_fmt(smoothed)} at {_step(series)} is "
            f"{smoothed / minimum:.1f}x its smoothed minimum {_fmt(minimum)} "
            f"for {streak} points",
        )


def check_divergence(
    series: Series, factor: float, watch: DivergenceWatch | None = None
) -> Alert | None:
    """An alert when a loss has diverged: see `DivergenceWatch` for the rule.

    In short: the loss smoothed (rolling median of `DIVERGENCE_WINDOW` points, then
    TensorBoard's debiased EMA) has stayed above `factor` times the running minimum of the
    smoothed loss for `DIVERGENCE_PATIENCE` consecutive points, past a warm-up of
    `DIVERGENCE_WARMUP` points. Raw minibatch noise does not trip it; a real blow-up (the
    loss several times higher and staying there) does within a few points. Only loss-like
    series with a positive smoothed minimum are judged (a loss that can go negative has no
    meaningful ratio). NaN/inf is `check_nonfinite`'s, immediate.

    Args:
        series: A series; non-loss names are ignored.
        factor: `[monitor] divergence_factor`.
        watch: The series' incremental state, kept by the caller between calls so only new
            points are read; None judges the whole series afresh.

    Returns:
        The alert, or None.
    """
    if not is_loss(series.name):
        return None
    return (watch if watch is not None else DivergenceWatch()).update(series, factor)


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


def check_series(
    series: dict[str, Series],
    divergence_factor: float,
    watches: dict[str, DivergenceWatch] | None = None,
) -> list[Alert]:
    """NaN/inf and divergence alerts over every series, in series order.

    Args:
        series: The run's series by name.
        divergence_factor: `[monitor] divergence_factor`.
        watches: Divergence state by series name, kept by the caller between calls (filled
            in here) so each call reads only new points; None judges every series afresh.

    Returns:
        The alerts, at most one per series (NaN/inf first).
    """
    alerts: list[Alert] = []
    for name, item in series.items():
        watch = None
        if watches is not None and is_loss(name):
            watch = watches.setdefault(name, DivergenceWatch())
        # The divergence state must see every point, also while a NaN alert shows.
        divergence = check_divergence(item, divergence_factor, watch)
        alert = check_nonfinite(item) or divergence
        if alert is not None:
            alerts.append(alert)
    return alerts
