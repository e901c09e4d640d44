"""The plain data of training metrics: one point, one named series, a run's set of series."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import NamedTuple

Points = list[tuple[float | None, float]]
"""A series as plain data: `(step, value)` pairs in the order they occurred; step None when
the source gave no step."""


class MetricPoint(NamedTuple):
    """One value of one metric, as a source reported it.

    A NamedTuple rather than a dataclass: the line parser creates one per value on its hot
    path, and tuple construction is several times cheaper.
    """

    name: str
    """The source's own name (`loss`, `val_loss`, `train/loss`, `eval_loss`...)."""
    step: float | None
    """The step the source gave (or the parser counted); None when none can be known."""
    value: float


class Series:
    """The points of one metric, in occurrence order, with cheap running aggregates."""

    __slots__ = ("_min", "name", "steps", "values")

    def __init__(self, name: str, points: Iterable[tuple[float | None, float]] = ()) -> None:
        self.name = name
        self.steps: list[float | None] = []
        self.values: list[float] = []
        self._min = math.inf
        for step, value in points:
            self.append(step, value)

    def append(self, step: float | None, value: float) -> None:
        """Add a point at the end."""
        self.steps.append(step)
        self.values.append(value)
        if value < self._min:  # NaN compares False and never becomes the minimum
            self._min = value

    def extend(self, steps: list[float | None], values: list[float]) -> None:
        """Add points at the end, given as columns of equal length."""
        if not values:
            return
        self.steps.extend(steps)
        self.values.extend(values)
        low = min(values)
        if low != low:  # NaN first: min() compared nothing else with it
            low = min((value for value in values if value == value), default=math.inf)
        if low < self._min:
            self._min = low

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[tuple[float | None, float]]:
        return zip(self.steps, self.values, strict=False)

    def __repr__(self) -> str:
        return f"Series({self.name!r}, {len(self)} points)"

    @property
    def last(self) -> float | None:
        """The newest value, or None when empty."""
        return self.values[-1] if self.values else None

    @property
    def last_step(self) -> float | None:
        """The newest point's step (None when empty or unknown)."""
        return self.steps[-1] if self.steps else None

    @property
    def minimum(self) -> float | None:
        """The smallest finite value so far, or None when there is none."""
        return self._min if self._min != math.inf else None

    def points(self) -> Points:
        """The points as `(step, value)` pairs."""
        return list(zip(self.steps, self.values, strict=False))

    def x_values(self) -> list[float]:
        """X coordinates for plotting (see `x_positions`)."""
        return x_positions(self.steps)


def x_positions(steps: Iterable[float | None]) -> list[float]:
    """X coordinates for plotting: the steps, or where a step is unknown, one past the last x.

    Args:
        steps: The steps of a series' points.

    Returns:
        One x per point.
    """
    xs: list[float] = []
    previous = -1.0
    for step in steps:
        previous = float(step) if step is not None else previous + 1
        xs.append(previous)
    return xs


def to_points(series: dict[str, Series]) -> dict[str, Points]:
    """Plain `{name: [(step, value), ...]}` from Series objects."""
    return {name: s.points() for name, s in series.items()}
