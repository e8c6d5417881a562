"""Keep an activity's heartbeat going while it awaits long work.

A worker killed mid-task is noticed within the heartbeat timeout (a minute)
instead of the whole start-to-close timeout, so its batch is retried quickly
elsewhere. The SDK throttles heartbeats, so beating often costs little.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity


@contextlib.asynccontextmanager
async def heartbeating(interval_s: float = 5.0) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
