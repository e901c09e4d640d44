"""Training metrics from whatever a run already writes: console output, metric files, events.

Public interface: `LineMetricsParser`, `read_metrics`, `MetricsTracker`, `MetricPoint`,
`Series`, `debiased_ema`, `Alert`.
"""

from runctl_tui.core.metrics.detectors import Alert
from runctl_tui.core.metrics.lines import LineMetricsParser
from runctl_tui.core.metrics.models import MetricPoint, Points, Series
from runctl_tui.core.metrics.smoothing import debiased_ema
from runctl_tui.core.metrics.tracker import MetricsTracker, read_metrics

__all__ = [
    "Alert",
    "LineMetricsParser",
    "MetricPoint",
    "MetricsTracker",
    "Points",
    "Series",
    "debiased_ema",
    "read_metrics",
]
