"""TensorBoard's smoothing of scalar curves: a debiased exponential moving average.

Exactly TensorBoard's `classicSmoothing` (tensorboard/webapp/widgets/line_chart_v2/
data_transformer.ts, the algorithm of its scalar dashboard since 2019): an EMA started at 0 and
divided by `1 - w**n` (n counting finite points) so early points are not pulled towards zero;
non-finite points pass through unsmoothed and do not advance the count; a constant series is
returned as it is; the weight is clamped to [0, 1] (NaN weight means 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def debiased_ema(values: Sequence[float], weight: float) -> list[float]:
    """Smooth a series the way TensorBoard's scalar dashboard does.

    Args:
        values: The raw values, in step order.
        weight: TensorBoard's "Smoothing" slider: 0 leaves the curve raw, values near 1
            smooth strongly.

    Returns:
        One smoothed value per input value.
    """
    if not values:
        return []
    if not math.isfinite(weight):
        weight = 0.0
    weight = max(0.0, min(weight, 1.0))
    first = values[0]
    if all(v == first for v in values):  # TensorBoard #786: a flat line stays exactly flat
        return list(values)
    last = 0.0
    count = 0
    out: list[float] = []
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        last = last * weight + (1 - weight) * value
        count += 1
        debias = 1.0 if weight == 1 else 1 - weight**count
        out.append(last / debias)
    return out


class EmaSmoother:
    """`debiased_ema` computed incrementally, for a series that keeps growing.

    Feeding the values in pieces gives what `debiased_ema` gives on the whole series (up to
    the last bit of floating point), so a live curve costs one step per new point instead of
    a pass over the whole history on every redraw.
    """

    def __init__(self, weight: float) -> None:
        """Start an empty smoother.

        Args:
            weight: The smoothing weight, as for `debiased_ema`.
        """
        if not math.isfinite(weight):
            weight = 0.0
        self.weight = max(0.0, min(weight, 1.0))
        self._ema: list[float] = []
        self._last = 0.0
        self._count = 0
        self._first: float | None = None
        self._constant = True

    def __len__(self) -> int:
        return len(self._ema)

    @property
    def smoothed(self) -> list[float]:
        """One smoothed value per value fed so far (the raw values while all are equal)."""
        if self._constant and self._first is not None:
            return [self._first] * len(self._ema)  # TensorBoard #786: flat stays exactly flat
        return self._ema

    def extend(self, values: Sequence[float]) -> list[float]:
        """Smooth more values (the continuation of the series).

        Args:
            values: The new raw values.

        Returns:
            `smoothed`, now one longer per value.
        """
        weight = self.weight
        out = self._ema
        last = self._last
        count = self._count
        for value in values:
            if self._first is None:
                self._first = value
                self._constant = value == value  # a NaN is not equal to itself
            elif self._constant and value != self._first:
                self._constant = False
            if not math.isfinite(value):
                out.append(value)
                continue
            last = last * weight + (1 - weight) * value
            count += 1
            out.append(last / (1.0 if weight == 1 else 1 - weight**count))
        self._last = last
        self._count = count
        return self.smoothed
