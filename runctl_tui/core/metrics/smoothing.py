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
