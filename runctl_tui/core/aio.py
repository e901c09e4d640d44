"""Small asyncio pieces the standard library gets wrong on the Pythons we support."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """Like `asyncio.wait_for`, but a cancellation is never lost.

    On Python 3.10 and 3.11, `asyncio.wait_for` returns the inner result when the caller is
    cancelled in the same loop step as the inner awaitable completes (CPython gh-86296, fixed
    in 3.12). A loop that waits on an event with a timeout then never sees its cancellation
    and runs forever: a log follower or poller that cannot be stopped.

    Args:
        awaitable: What to wait for.
        timeout: Seconds before giving up; None waits as long as it takes.

    Returns:
        The awaitable's result.

    Raises:
        asyncio.TimeoutError: The timeout passed first (the awaitable is cancelled).
    """
    if sys.version_info >= (3, 12):
        return await asyncio.wait_for(awaitable, timeout)
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        task.cancel()
        raise
    if not done:
        task.cancel()
        # Let it finish cancelling (as wait_for does): its cleanup has run when we return.
        await asyncio.wait({task})
        if not task.cancelled():
            return task.result()
        raise asyncio.TimeoutError
    return task.result()
