"""Warn when a task queue has work waiting and no worker polling it.

With external workers (``docpipe start``), a worker type that is not running
(never started, crashed, scaled to zero with no one to scale it up) shows up
as nothing at all: the run waits, by design, because time in a queue is not a
failure. This module turns that silence into a line a human can act on::

    gpu-bound-queue: 12 tasks waiting for 45 s and no live poller — is the gpu worker running?

Pieces, from the pure policy up:

- :func:`stalled_queues` (pure): ``QueueStats`` (``docpipe.queue_stats``), the
  time now and since when each queue has been starved -> warning lines for the
  queues starved for at least ``grace_s``. "Starved" is :func:`starved`: a
  backlog and no live poller.
- :class:`QueueWatcher` (small state): remembers since when each queue has
  been starved across calls, repeats a warning at most every ``repeat_s``, and
  says when a starved queue is polled again.
- :func:`health_listener`: a :class:`~docpipe.client.queue_readings.QueueReadings`
  listener that feeds each round to a watcher and passes each line to
  ``on_warning``; a failed read is said once, never raised.
- :func:`watch_queues` (async loop): a reader of its own with that listener,
  for a command that has no run reading the queues already.

Wiring it into a run (one reader for admission and health)::

    readings = QueueReadings(client, settings)
    readings.listeners.append(health_listener(settings, print_warning))
    summary = await run_documents(client, settings, documents, readings=readings, ...)

What it can see is limited by the server: the
backlog figures are refreshed about every 6 s, and a poller counts as live
until ``LIVE_POLLER_WINDOW`` (70 s) after its last poll, so a worker killed
mid-run is reported up to that window plus ``grace_s`` later; a worker that
never started is reported after ``grace_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from temporalio.client import Client

from docpipe.client.queue_readings import Listener, QueueReadings
from docpipe.config import Settings
from docpipe.queue_stats import QueueStats

DEFAULT_GRACE_S = 30.0
"""Long enough for a starting worker to load its model and poll."""
DEFAULT_REPEAT_S = 60.0


def queue_workers(settings: Settings) -> dict[str, str]:
    """queue name -> the worker kind that polls it (for the warning's hint)."""
    return {
        settings.workflow_task_queue: "workflow",
        settings.cpu_task_queue: "cpu",
        settings.gpu_task_queue: "gpu",
        settings.io_task_queue: "io",
    }


def starved(stats: QueueStats) -> bool:
    """Work is waiting and no worker polls for it."""
    return stats.backlog_count > 0 and stats.live_pollers == 0


def stalled_queues(
    stats: list[QueueStats],
    now: float,
    starved_since: Mapping[str, float],
    *,
    grace_s: float = DEFAULT_GRACE_S,
    workers: Mapping[str, str] | None = None,
) -> list[str]:
    """A warning for each queue starved (see :func:`starved`) for ``grace_s`` or more.

    ``starved_since`` maps a queue to the time (same clock as ``now``) it was
    first seen starved; a queue missing from it is starved as of ``now``.
    ``workers`` maps a queue to the kind of worker that serves it (see
    :func:`queue_workers`), named in the warning.
    """
    warnings = []
    for queue in stats:
        if not starved(queue):
            continue
        starved_s = now - starved_since.get(queue.queue, now)
        if starved_s < grace_s:
            continue
        waiting_s = max(queue.backlog_age_s, starved_s)
        count = queue.backlog_count
        kind = (workers or {}).get(queue.queue)
        hint = f"is the {kind} worker running?" if kind else "is a worker for it running?"
        warnings.append(
            f"{queue.queue}: {count} task{'' if count == 1 else 's'} waiting for "
            f"{waiting_s:.0f} s and no live poller — {hint}"
        )
    return warnings


@dataclass
class QueueWatcher:
    """:func:`stalled_queues` across calls: feed it each round of stats with
    :meth:`update`; it returns the lines worth printing this round."""

    grace_s: float = DEFAULT_GRACE_S
    repeat_s: float = DEFAULT_REPEAT_S
    """A queue still starved is warned about again after this long."""
    workers: Mapping[str, str] = field(default_factory=dict)
    starved_since: dict[str, float] = field(default_factory=dict)
    _warned_at: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def update(self, stats: list[QueueStats], now: float) -> list[str]:
        lines = []
        for queue in stats:
            if starved(queue):
                self.starved_since.setdefault(queue.queue, now)
                continue
            since = self.starved_since.pop(queue.queue, None)
            if self._warned_at.pop(queue.queue, None) is not None and since is not None:
                served = "a worker polls it again" if queue.live_pollers else "its backlog is gone"
                lines.append(f"{queue.queue}: {served} (starved for {now - since:.0f} s)")
        for queue in stats:
            warning = stalled_queues(
                [queue], now, self.starved_since, grace_s=self.grace_s, workers=self.workers
            )
            last = self._warned_at.get(queue.queue)
            if warning and (last is None or now - last >= self.repeat_s):
                self._warned_at[queue.queue] = now
                lines += warning
        return lines


def health_listener(
    settings: Settings,
    on_warning: Callable[[str], None],
    *,
    grace_s: float = DEFAULT_GRACE_S,
    repeat_s: float = DEFAULT_REPEAT_S,
    clock: Callable[[], float] = time.monotonic,
) -> Listener:
    """A readings listener: each round's warning and recovery lines go to
    ``on_warning``; a failed read is said once until a read succeeds again."""
    watcher = QueueWatcher(grace_s=grace_s, repeat_s=repeat_s, workers=queue_workers(settings))
    unreadable = False

    def listen(stats: list[QueueStats] | None, error: Exception | None) -> None:
        nonlocal unreadable
        if stats is None:
            if not unreadable:
                on_warning(f"cannot read the task queues' stats ({error}); will keep trying")
            unreadable = True
            return
        unreadable = False
        for line in watcher.update(stats, clock()):
            on_warning(line)

    return listen


async def watch_queues(
    client: Client,
    settings: Settings,
    on_warning: Callable[[str], None],
    interval_s: float = 5.0,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    repeat_s: float = DEFAULT_REPEAT_S,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Every ``interval_s``, read the four queues' stats and pass each warning
    (and each recovery) line to ``on_warning``; until ``stop`` is set or the
    task is cancelled."""
    readings = QueueReadings(client, settings, interval_s)
    readings.listeners.append(
        health_listener(settings, on_warning, grace_s=grace_s, repeat_s=repeat_s, clock=clock)
    )
    await readings.run(stop)
