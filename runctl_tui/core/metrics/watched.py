"""The state and queries `MetricsTracker` and `MetricsStream` share: series, clock, alerts.

Both keep a run's series by name, when a new point last arrived and the divergence state of
each loss series; the points view and the NaN/inf, divergence and stall alerts over that state
are the same whichever way the lines arrived (files polled, a log stream followed).
"""

from __future__ import annotations

from collections.abc import Callable

from runctl_tui.core.metrics.detectors import Alert, DivergenceWatch, check_series, check_stall
from runctl_tui.core.metrics.models import Points, Series, to_points


class WatchedSeries:
    """A run's series with the clock and divergence state their alerts need."""

    def __init__(self, clock: Callable[[], float]) -> None:
        """Start with no series; watching begins now.

        Args:
            clock: Wall clock, replaceable in tests.
        """
        self._clock = clock
        self.series: dict[str, Series] = {}
        """The series by name, in the order they first appeared."""
        self.started_at = clock()
        """When watching began (epoch seconds)."""
        self.last_point_at: float | None = None
        """Wall time when a new point last arrived; None before the first."""
        self._watches: dict[str, DivergenceWatch] = {}
        """Divergence state per loss series, so each `alerts` call reads only new points."""

    def points(self) -> dict[str, Points]:
        """The series as plain `(step, value)` lists."""
        return to_points(self.series)

    def alerts(
        self,
        *,
        divergence_factor: float,
        stall_seconds: float,
        running: bool = True,
        now: float | None = None,
    ) -> list[Alert]:
        """NaN/inf, divergence and (for a running run) stall alerts.

        Args:
            divergence_factor: `[monitor] divergence_factor`.
            stall_seconds: `[monitor] stall_seconds`.
            running: Whether the run is still going; a finished run never stalls.
            now: Wall time; default the clock given at creation.

        Returns:
            The alerts, stall first.
        """
        alerts = check_series(self.series, divergence_factor, self._watches)
        if running:
            since = self.last_point_at if self.last_point_at is not None else self.started_at
            stall = check_stall(since, self._clock() if now is None else now, stall_seconds)
            if stall is not None:
                alerts.insert(0, stall)
        return alerts


__all__ = ["WatchedSeries"]
