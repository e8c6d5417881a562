"""What the three activity workers (cpu, gpu, io) share: how they poll.

Kept apart from :mod:`docpipe.workers.common` so the workflow worker does not
import (and export) the per-activity metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from temporalio.client import Client

from docpipe.activities.heartbeat import HeartbeatInterceptor
from docpipe.config import Settings
from docpipe.metrics.activity import ActivityMetricsInterceptor
from docpipe.workers.common import poll


async def poll_activities(
    settings: Settings,
    client: Client,
    kind: str,
    activities: Sequence[Callable[..., Any]],
    max_concurrent: int,
) -> None:
    """Serve ``activities`` on ``kind``'s task queue until stopped (:func:`poll`),
    at most ``max_concurrent`` at once, each one
    measured (``docpipe_activity_*{worker=kind}``) and heartbeating while it runs, so
    a dead worker's task is retried after the heartbeat timeout, not the
    start-to-close one."""
    await poll(
        settings,
        client,
        kind,
        activities=list(activities),
        max_concurrent_activities=max_concurrent,
        interceptors=[ActivityMetricsInterceptor(kind), HeartbeatInterceptor()],
    )
