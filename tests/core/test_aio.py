"""core/aio: a wait with a timeout never loses its caller's cancellation."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from runctl_tui.core.aio import wait_for
from runctl_tui.core.logs import follow as follow_module
from runctl_tui.core.logs.follow import _Follower

Waiter = Callable[[Awaitable[bool], float], Awaitable[bool]]


async def _loop_until_cancelled(wait: Waiter, event: asyncio.Event) -> None:
    """A poller like the log follower: wait on an event with a timeout, forever."""
    while True:
        try:
            await wait(event.wait(), 10.0)
        except asyncio.TimeoutError:
            pass
        event.clear()


async def _cancel_as_it_wakes(task: asyncio.Task[None], wake: asyncio.Event) -> bool:
    """Set `wake` and cancel `task` in the same loop step; say whether the task stopped."""
    await asyncio.sleep(0.01)
    wake.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if not done:
        task.cancel()  # it lost the first cancellation: stop it now, for the next tests
        await asyncio.wait({task}, timeout=1.0)
    return bool(done) and task.cancelled()


async def _cancel_as_the_event_fires(wait: Waiter) -> bool:
    """Cancel a poller in the step its event fires; say whether it stopped."""
    event = asyncio.Event()
    task = asyncio.create_task(_loop_until_cancelled(wait, event))
    return await _cancel_as_it_wakes(task, event)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the standard library bug is fixed")
async def test_the_standard_wait_for_loses_this_cancellation() -> None:
    # The oracle: the bug this module exists for is real on this Python.
    assert not await _cancel_as_the_event_fires(asyncio.wait_for)


async def test_our_wait_for_keeps_the_cancellation() -> None:
    assert await _cancel_as_the_event_fires(wait_for)


async def test_wait_for_returns_the_result_or_times_out_and_cancels() -> None:
    assert await wait_for(asyncio.sleep(0, result=7), 1.0) == 7
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(asyncio.TimeoutError):
        await wait_for(slow(), 0.05)
    assert started.is_set() and cancelled == [True]
    with pytest.raises(ValueError, match="boom"):
        await wait_for(_raise(ValueError("boom")), 1.0)


async def _raise(exc: Exception) -> None:
    raise exc


async def _follow_cancelled_as_it_wakes(log: Path) -> bool:
    """Cancel a log follower in the step its wake event is set; say whether it stopped."""
    log.write_text("start\n")
    follower = _Follower(log, 1024)
    wake = asyncio.Event()
    first = asyncio.Event()

    async def follow() -> None:
        async for _chunk in follower.run(10, wake, 10.0):
            first.set()

    task = asyncio.create_task(follow())
    await first.wait()
    stopped = await _cancel_as_it_wakes(task, wake)
    follower.close()
    return stopped


async def test_a_log_follower_cancelled_as_it_wakes_stops(tmp_path: Path) -> None:
    # The CI hang this module fixed: a follow woken by a write in the step it was cancelled.
    assert await _follow_cancelled_as_it_wakes(tmp_path / "a.log")


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the standard library bug is fixed")
async def test_with_the_standard_wait_for_the_follower_would_not_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow_module, "wait_for", asyncio.wait_for)
    assert not await _follow_cancelled_as_it_wakes(tmp_path / "a.log")
