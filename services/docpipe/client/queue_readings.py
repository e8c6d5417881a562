"""The four task queues' statistics, read by one loop for everyone in the client.

A run watches the queues for two reasons: admission (start fewer batches while an
activity queue's backlog is long, client/admission.py) and health (warn about a
queue with work and no live poller, client/queue_health.py). Both read the same
DescribeTaskQueue answers, so one :class:`QueueReadings` reads them and hands each
round to its listeners; a run costs the server one read per queue per interval,
not one per purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from temporalio.client import Client

from docpipe.config import Settings
from docpipe.queue_stats import QueueStats, describe_queues

log = logging.getLogger(__name__)

READ_EVERY_S = 2.0
"""How often a run reads the queues: fresh enough for admission to follow a backlog."""

Listener = Callable[[list[QueueStats] | None, Exception | None], None]
"""Called after each read: the statistics, or None and why they could not be read."""


class QueueReadings:
    """Reads the workflow queue and the activity queues every ``every_s`` until
    cancelled or ``stop`` is set. A failed read never ends the loop: a watcher must
    not end the run it watches."""

    def __init__(self, client: Client, settings: Settings, every_s: float = READ_EVERY_S):
        self.client, self.every_s = client, every_s
        self.workflow_queue = settings.workflow_task_queue
        self.activity_queues = [
            settings.cpu_task_queue,
            settings.gpu_task_queue,
            settings.io_task_queue,
        ]
        self.latest: list[QueueStats] | None = None
        self.changed = asyncio.Event()
        """Set after every read (admission decides again); the reader clears it."""
        self.listeners: list[Listener] = []

    @property
    def backlog(self) -> dict[str, int] | None:
        """Each activity queue's approximate backlog; None until read, or while
        Temporal won't say."""
        if self.latest is None:
            return None
        activity = set(self.activity_queues)
        return {s.queue: s.backlog_count for s in self.latest if s.queue in activity}

    async def read_once(self) -> None:
        error: Exception | None = None
        try:
            self.latest = await describe_queues(
                self.client, self.workflow_queue, self.activity_queues
            )
        except Exception as err:  # the server restarting, a network blip: next round
            log.debug("queue statistics unavailable: %s", err)
            self.latest, error = None, err
        self.changed.set()
        for listener in self.listeners:
            listener(self.latest, error)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        while not stop.is_set():
            await self.read_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)
