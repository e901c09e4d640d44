"""Metrics from a log stream: the lines any `LogSource` yields (a remote log over SSH, a file).

A run on a pod or an instance has no local folder to read; its console log comes over SSH as
`LogChunk`s. `MetricsStream` feeds those lines to a `LineMetricsParser` and keeps the series,
with the same NaN/inf, divergence and stall alerts as `MetricsTracker`.

Completed lines are always parsed. A chunk's `partial` (the unterminated line in its latest
state) is parsed only when it ends with `]`, the end of a tqdm/Lightning bar redraw: such a
redraw is complete (the bar's postfix sits inside the brackets, and a redraw showing no new
value adds nothing), while any other unterminated line may be half-written. A notice that the
file is read again from the start (truncated, replaced) starts the series afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Sequence

from runctl_tui.core.aio import wait_for
from runctl_tui.core.logsource import LogChunk, LogSource
from runctl_tui.core.metrics.lines import LineMetricsParser
from runctl_tui.core.metrics.models import Series
from runctl_tui.core.metrics.watched import WatchedSeries

INITIAL_LINES = 1_000_000
"""Lines of the log's existing end asked for at the start (a remote source bounds it by bytes)."""
THREAD_LINES = 2000
"""Chunks with more lines than this are parsed in a thread, so the event loop keeps going."""
_RESTART_WORDS = ("from the start",)
"""In a source's notice: the file is being read again from its beginning."""


class MetricsStream(WatchedSeries):
    """The series of a run whose console log arrives as a stream of `LogChunk`s.

    Feed chunks with `feed` (synchronous, for tests and threads) or let `follow` consume the
    source. `series`, `last_point_at` and `alerts` are `MetricsTracker`'s (`WatchedSeries`).
    """

    def __init__(
        self,
        source: LogSource,
        *,
        patterns: Sequence[str] = (),
        initial_lines: int = INITIAL_LINES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Create a stream; nothing is read until `follow` (or `feed`).

        Args:
            source: Where the lines come from.
            patterns: Extra line regexes, `[monitor] metrics_regex`.
            initial_lines: Lines of the existing log to read first.
            clock: Wall clock, replaceable in tests.
        """
        super().__init__(clock)
        self.source = source
        self._patterns = tuple(patterns)
        self._parser = LineMetricsParser(self._patterns)
        self._initial_lines = initial_lines
        self._partial: str | None = None
        self.lines = 0
        """Complete lines read so far."""
        self.notice: str | None = None
        """The source's latest notice (`reconnecting in 2 s`...), None once lines flow again."""

    def feed(self, chunk: LogChunk) -> bool:
        """Parse one chunk's lines into the series.

        Args:
            chunk: The next chunk from the source.

        Returns:
            True when new points arrived (or the series were started afresh).
        """
        lines = list(chunk.lines)
        partial = chunk.partial
        if partial is not None and partial != self._partial and partial.rstrip().endswith("]"):
            lines.append(partial)
        self._partial = chunk.partial
        columns = self._parser.feed_columns(lines) if lines else {}
        self.lines += len(chunk.lines)
        series = self.series
        for name, (steps, values) in columns.items():
            item = series.get(name)
            if item is None:
                item = series[name] = Series(name)
            item.extend(steps, values)
        changed = bool(columns)
        if chunk.notice is not None:
            self.notice = chunk.notice
            if any(word in chunk.notice for word in _RESTART_WORDS):
                self._parser = LineMetricsParser(self._patterns)
                self._partial = None
                changed = changed or bool(self.series)
                self.series = {}
                self._watches = {}
        elif chunk.lines:
            self.notice = None
        if columns:
            self.last_point_at = self._clock()
        return changed

    async def follow(self, *, tick: float = 5.0) -> AsyncGenerator[bool, None]:
        """Consume the source until cancelled, yielding after each chunk and on quiet ticks.

        Large chunks (the initial tail) are parsed in a thread. The quiet ticks let a caller
        re-check alerts (a stall is the absence of chunks).

        Args:
            tick: Seconds without a chunk after which False is yielded.

        Yields:
            True when a chunk brought new points, else False.

        Raises:
            Exception: Whatever the source raised (it is not swallowed).
        """
        queue: asyncio.Queue[LogChunk | BaseException | None] = asyncio.Queue(maxsize=8)

        async def pump() -> None:
            try:
                async for chunk in self.source.follow(self._initial_lines):
                    await queue.put(chunk)
            except Exception as exc:
                await queue.put(exc)
            else:
                await queue.put(None)

        task = asyncio.create_task(pump())
        try:
            while True:
                try:
                    item = await wait_for(queue.get(), tick)
                except asyncio.TimeoutError:
                    yield False
                    continue
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                if len(item.lines) > THREAD_LINES:
                    yield await asyncio.to_thread(self.feed, item)
                else:
                    yield self.feed(item)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["MetricsStream"]
