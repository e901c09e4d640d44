"""Metrics of runs on pods and instances that no pane follows: the log's new bytes, now and then.

The metrics pane follows the selected remote run's log live (`MetricsStream` over a `tail -F`).
Every other run on a pod or instance would go unwatched, so a loss going NaN there would mark
nothing. `RemoteLogTail` reads, over one short SSH command, only the bytes appended to the run's
log since the last read (the last 256 KB the first time, for a divergence baseline) and feeds
them to a `MetricsStream`, whose series and alerts the fleet summarises like a local run's.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence

from runctl_tui.core.errors import BackendError
from runctl_tui.core.logsource import LogChunk
from runctl_tui.core.metrics.stream import MetricsStream
from runctl_tui.core.models import SshEndpoint

FIRST_READ_BYTES = 256 * 1024
"""How much of an existing log the first read takes (its end)."""
MAX_READ_BYTES = 1024 * 1024
"""The most one read transfers; a log that grew more is skipped forward to its end."""
READ_TIMEOUT_SECONDS = 20.0


def _command(path: str, offset: int | None) -> str:
    """One shell command: the log's size, where this read starts, its length, then the bytes."""
    start = -1 if offset is None else offset
    # A `~/` path is left to the remote shell's $HOME (runs record absolute paths, but be kind).
    word = '"$HOME"/' + shlex.quote(path[2:]) if path.startswith("~/") else shlex.quote(path)
    return (
        f'f={word}; s=$(wc -c < "$f") || exit 3; o={start}; '
        f'if [ "$o" -lt 0 ]; then o=$((s - {FIRST_READ_BYTES})); fi; '
        'if [ "$o" -lt 0 ] || [ "$s" -lt "$o" ]; then o=0; fi; n=$((s - o)); '
        f'if [ "$n" -gt {MAX_READ_BYTES} ]; then o=$((s - {MAX_READ_BYTES})); '
        f"n={MAX_READ_BYTES}; fi; "
        'echo "$s $o $n"; if [ "$n" -gt 0 ]; then tail -c +$((o + 1)) "$f" | head -c "$n"; fi'
    )


class RemoteLogTail:
    """A remote run's log, read incrementally into a `MetricsStream`.

    Args:
        endpoint: The machine's SSH endpoint (direct SSH).
        path: The log file on the machine.
        patterns: Extra metric regexes (`[monitor] metrics_regex`).
        clock: Epoch-seconds clock (for stall alerts).
    """

    def __init__(
        self,
        endpoint: SshEndpoint,
        path: str,
        *,
        patterns: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        from runctl_tui.core.remote_log import RemoteFileLogSource

        self.endpoint = endpoint
        self.path = path
        self._patterns = tuple(patterns)
        self._clock = clock
        # The source is never followed here; it names where the stream's lines come from.
        self._source = RemoteFileLogSource(endpoint, path)
        self.stream = MetricsStream(self._source, patterns=self._patterns, clock=clock)
        self.offset: int | None = None
        """Bytes of the log read so far; None before the first read."""
        self._rest = ""

    def _restart(self) -> None:
        self.stream = MetricsStream(self._source, patterns=self._patterns, clock=self._clock)
        self._rest = ""

    async def poll(self) -> bool:
        """Read what was appended since the last call and parse it.

        Returns:
            True when new metric points arrived.

        Raises:
            BackendError: SSH failed or the log cannot be read.
        """
        from runctl_tui.core.ssh import SshSession

        async with await SshSession.connect(self.endpoint) as session:
            result = await session.run(
                _command(self.path, self.offset), timeout=READ_TIMEOUT_SECONDS
            )
        header, _, data = result.stdout.partition("\n")
        fields = header.split()
        if result.exit_status != 0 or len(fields) != 3 or not all(f.isdigit() for f in fields):
            detail = result.stderr.strip().splitlines()[-1:] or ["no such file?"]
            raise BackendError(f"could not read {self.path} over SSH ({detail[0]})")
        size, start, length = (int(f) for f in fields)
        contiguous = self.offset is not None and start == self.offset
        if self.offset is not None and size < self.offset:
            self._restart()  # truncated or replaced: its series start afresh
        text = data
        if not contiguous:
            self._rest = ""
            if start > 0:
                # Started inside a line (first read, or skipped forward): drop its head.
                text = text.partition("\n")[2]
        self.offset = start + length
        lines = (self._rest + text).split("\n")
        self._rest = lines.pop()
        if not lines:
            return False
        return self.stream.feed(LogChunk(lines=tuple(lines)))
