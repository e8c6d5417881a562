"""Keep an activity's heartbeat going while it awaits long work.

A worker killed mid-task is noticed within the heartbeat timeout instead of
the whole start-to-close timeout, so its batch is retried quickly elsewhere.
That only holds if the beat is more frequent than the timeout: the interval
follows the activity's own ``heartbeat_timeout`` (a third of it), so a short
timeout (tests, latency-sensitive deployments) never expires on a healthy
activity. The SDK throttles what it sends (to 0.8 x the timeout), so beating
often costs little.

:class:`HeartbeatInterceptor` gives every activity of a worker a heartbeat
whenever the workflow asked for one, so an activity whose author forgot
``heartbeating()`` is still retried promptly after its worker dies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

DEFAULT_INTERVAL_S = 5.0
# Beats per heartbeat timeout: one late beat (a busy event loop) must not expire it.
_BEATS_PER_TIMEOUT = 3
_MIN_INTERVAL_S = 0.05


def beat_interval(default_s: float = DEFAULT_INTERVAL_S) -> float:
    """Seconds between beats: ``default_s``, or less if the heartbeat timeout is short."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        return default_s
    return max(min(default_s, timeout.total_seconds() / _BEATS_PER_TIMEOUT), _MIN_INTERVAL_S)


@contextlib.asynccontextmanager
async def heartbeating(interval_s: float = DEFAULT_INTERVAL_S) -> AsyncIterator[None]:
    """Heartbeat from a background task for as long as the block runs."""
    every = beat_interval(interval_s)

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _HeartbeatInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        # Only async activities run in this event loop; a heartbeat matters
        # only when the workflow set a heartbeat timeout.
        if not info.heartbeat_timeout or not _is_async(input):
            return await super().execute_activity(input)
        async with heartbeating():
            return await super().execute_activity(input)


def _is_async(input: ExecuteActivityInput) -> bool:
    return asyncio.iscoroutinefunction(input.fn)


class HeartbeatInterceptor(Interceptor):
    """Heartbeat every async activity that has a heartbeat timeout, for its whole run."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _HeartbeatInbound(next)
