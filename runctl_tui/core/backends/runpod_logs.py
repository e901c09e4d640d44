"""A pod's container log from RunPod's Server-Sent Events endpoint, as a `LogSource`.

`GET /v2/pods/{id}/logs` backfills the last lines (`tail`) and then streams new ones. When the
connection drops, the source reconnects with backoff and sends the last event id it saw as
`Last-Event-ID`, so the stream resumes where it stopped; ids already seen are skipped, so a
server that replays a little never shows a line twice.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runctl_tui.core.aio import wait_for
from runctl_tui.core.errors import BackendError
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.logs.text import collapse_line
from runctl_tui.core.logsource import LogChunk

if TYPE_CHECKING:
    from runctl_tui.core.backends.runpod_client import RunPodClient, SseEvent

log = get_logger("runpod.logs")

_SEEN_IDS = 4096
_FIRST_WAIT = 0.5
"""Seconds to wait for the backfill before reporting an empty tail."""


@dataclass
class _End:
    error: BaseException | None = None


class RunPodLogSource:
    """The container (or system) log of one pod, followed over SSE.

    Args:
        client: The API client (shared with the backend; not closed here).
        pod_id: The pod.
        source: `container`, `system`, or None for both.
        backoff_base: First reconnect delay in seconds (doubles up to `backoff_max`).
        backoff_max: Longest reconnect delay.
    """

    def __init__(
        self,
        client: RunPodClient,
        pod_id: str,
        *,
        source: str | None = "container",
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
    ) -> None:
        self.client = client
        self.pod_id = pod_id
        self.source = source
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.last_event_id: str | None = None
        self.reconnects = 0

    @property
    def description(self) -> str:
        """`runpod:<pod> container log`."""
        return f"runpod:{self.pod_id} {self.source or 'pod'} log"

    async def follow(self, initial_lines: int = 200) -> AsyncIterator[LogChunk]:
        """Yield the tail, then new lines until cancelled; reconnect after a dropped stream.

        Raises:
            BackendError: The key was rejected or the pod does not exist (not retried).
        """
        from runctl_tui.core.backends.runpod_client import (
            RunPodAPIError,
            RunPodAuthError,
            RunPodNotFoundError,
        )

        seen: deque[str] = deque(maxlen=_SEEN_IDS)
        seen_set: set[str] = set()
        failures = 0
        first = True
        while True:
            params = {"tail": str(max(0, min(initial_lines, 5000)) if first else 0)}
            if self.source:
                params["source"] = self.source
            queue: asyncio.Queue[SseEvent | _End] = asyncio.Queue()
            error: BaseException | None = None
            try:
                async with self.client.stream_events(
                    f"/v2/pods/{self.pod_id}/logs",
                    params=params,
                    last_event_id=self.last_event_id,
                ) as events:
                    if not first:
                        yield LogChunk(notice="log stream reconnected")
                    failures = 0
                    reader = asyncio.create_task(_pump(events, queue))
                    try:
                        pending_tail = first
                        while True:
                            if pending_tail:
                                try:
                                    item = await wait_for(queue.get(), _FIRST_WAIT)
                                except asyncio.TimeoutError:
                                    pending_tail = False
                                    yield LogChunk()
                                    continue
                            else:
                                item = await queue.get()
                            items: list[SseEvent | _End] = [item]
                            await asyncio.sleep(0)
                            while not queue.empty():
                                items.append(queue.get_nowait())
                            lines: list[str] = []
                            end: _End | None = None
                            for entry in items:
                                if isinstance(entry, _End):
                                    end = entry
                                    break
                                if entry.id is not None:
                                    if entry.id in seen_set:
                                        continue
                                    if len(seen) == seen.maxlen:
                                        seen_set.discard(seen[0])
                                    seen.append(entry.id)
                                    seen_set.add(entry.id)
                                    self.last_event_id = entry.id
                                line = _line(entry)
                                if line is not None:
                                    lines.append(line)
                            if lines or pending_tail:
                                pending_tail = False
                                yield LogChunk(lines=tuple(lines))
                            if end is not None:
                                error = end.error
                                break
                    finally:
                        reader.cancel()
                        await asyncio.gather(reader, return_exceptions=True)
            except RunPodAuthError:
                raise
            except RunPodNotFoundError:
                raise BackendError(
                    f"pod {self.pod_id} no longer exists, so it has no log to follow."
                ) from None
            except RunPodAPIError as exc:
                if exc.status < 500 and exc.status != 429:
                    raise
                error = exc
            except BackendError as exc:
                error = exc
            first = False
            failures += 1
            self.reconnects += 1
            step = min(self.backoff_max, self.backoff_base * (2 ** (failures - 1)))
            delay = step / 2 + random.uniform(0, step / 2)
            reason = str(error) if error else "the server closed it"
            log.info(
                "pod %s log stream ended (%s); reconnecting in %.1f s", self.pod_id, reason, delay
            )
            yield LogChunk(notice=f"log stream dropped; reconnecting in {delay:.0f} s")
            await asyncio.sleep(delay)


async def _pump(events: AsyncIterator[SseEvent], queue: asyncio.Queue[SseEvent | _End]) -> None:
    import httpx

    try:
        async for event in events:
            await queue.put(event)
    except (httpx.HTTPError, OSError) as exc:
        await queue.put(_End(BackendError(type(exc).__name__)))
        return
    await queue.put(_End())


def _line(event: SseEvent) -> str | None:
    """The log line of one event (JSON `{source, line, ts}`; plain text is taken as is)."""
    if event.event not in ("message", "log"):
        return None
    try:
        payload = json.loads(event.data)
    except ValueError:
        return collapse_line(event.data)
    if isinstance(payload, dict) and "line" in payload:
        return collapse_line(str(payload["line"]))
    return None
