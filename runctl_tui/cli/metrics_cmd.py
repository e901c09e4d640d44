"""`runctl metrics PATH`: the series in a log, a metrics file, an event file or a run directory."""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runctl_tui.cli.common import EXIT_OK, Context
from runctl_tui.core.errors import NotFoundError, RunctlError

ORDER = 40
SPARK_CHARS = "▁▂▃▄▅▆▇█"


def register(subparsers: Any) -> None:
    """Add `metrics` to the `runctl` parser."""
    parser = subparsers.add_parser(
        "metrics",
        help="show the metric series of a log, metrics file, event file or run directory",
        description=(
            "Read training metrics from PATH: a console log (key=value lines, tqdm/Lightning/"
            "Keras bars, printed dicts, JSON lines), a CSVLogger file, trainer_state.json, a "
            "metrics.jsonl, a TensorBoard event file, or a run directory (every source inside)."
        ),
    )
    parser.add_argument("path", metavar="PATH", help="file or run directory")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"series": {"<name>": [[step, value], ...]}}; step null where unknown, '
        "non-finite values as NaN/Infinity",
    )
    parser.set_defaults(handler=cmd_metrics)


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """A one-line unicode sparkline of `values`, averaged into at most `width` cells.

    Args:
        values: The series; non-finite values are left out.
        width: Maximum number of characters.

    Returns:
        The sparkline (empty for no finite value).
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    if len(finite) > width:
        buckets = []
        for index in range(width):
            start = index * len(finite) // width
            end = (index + 1) * len(finite) // width
            chunk = finite[start:end]
            buckets.append(sum(chunk) / len(chunk))
        finite = buckets
    low, high = min(finite), max(finite)
    span = high - low
    if span <= 0:
        return SPARK_CHARS[len(SPARK_CHARS) // 2] * len(finite)
    top = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[round((v - low) / span * top)] for v in finite)


def _number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if math.isfinite(value) and float(value).is_integer() else value


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def cmd_metrics(args: argparse.Namespace, context: Context) -> int:
    """Print the series found in PATH as JSON or as a table with sparklines."""
    from runctl_tui.core.metrics import read_metrics

    path = Path(args.path).expanduser()
    if not path.exists():
        raise NotFoundError(f"{path} does not exist; give a log, metrics file or run directory")
    patterns = context.config.monitor.metrics_regex
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise RunctlError(
                f"[monitor] metrics_regex {pattern!r} is not a valid regex ({exc}); fix it with "
                "`runctl config show`"
            ) from None
    try:
        series = read_metrics(path, patterns)
    except PermissionError as exc:
        raise RunctlError(f"cannot read {exc.filename or path}: permission denied") from None
    if args.json:
        data = {
            "series": {
                name: [[_number(step), float(value)] for step, value in points]
                for name, points in series.items()
            }
        }
        # Compact: a series of 100k points stays one readable line per run, not 400k lines.
        print(json.dumps(data, separators=(", ", ": ")))
        return EXIT_OK
    if not series:
        print(f"No metrics found in {path}.")
        return EXIT_OK
    width = max(len("series"), *(len(name) for name in series))
    print(f"{'series':<{width}}  {'count':>6}  {'first':>10}  {'last':>10}  {'min':>10}  trend")
    for name, points in series.items():
        values = [value for _, value in points]
        finite = [v for v in values if math.isfinite(v)]
        print(
            f"{name:<{width}}  {len(values):>6}  {_fmt(values[0]):>10}  {_fmt(values[-1]):>10}"
            f"  {_fmt(min(finite) if finite else None):>10}  {sparkline(values)}"
        )
    return EXIT_OK
