"""The stalled-queue warning of `docpipe start`, from queue statistics alone.

A queue is starved when tasks wait in it and no worker polls it. A starved
queue is worth a warning only after a grace period (a worker may be loading
its model), and the warning names the worker type to go and look at.
"""

from __future__ import annotations

import asyncio

from docpipe.client.queue_health import (
    QueueWatcher,
    queue_workers,
    stalled_queues,
    starved,
    watch_queues,
)
from docpipe.config import load_settings
from docpipe.queue_stats import QueueStats

WORKERS = {"gpu-bound-queue": "gpu", "io-bound-queue": "io"}


def stats(
    queue: str = "gpu-bound-queue", backlog: int = 12, age_s: float = 45.0, pollers: int = 0
) -> QueueStats:
    return QueueStats(
        queue=queue,
        kind="activity",
        backlog_count=backlog,
        backlog_age_s=age_s,
        add_rate=0.0,
        dispatch_rate=0.0,
        live_pollers=pollers,
    )


def test_a_queue_is_starved_only_with_work_waiting_and_no_live_poller() -> None:
    assert starved(stats(backlog=1, pollers=0))
    assert not starved(stats(backlog=0, pollers=0)), "idle, nothing to do"
    assert not starved(stats(backlog=50, pollers=1)), "busy, but served"


def test_a_queue_starved_past_the_grace_period_gets_a_warning_naming_its_worker() -> None:
    warnings = stalled_queues(
        [stats()], now=100.0, starved_since={"gpu-bound-queue": 60.0}, workers=WORKERS
    )
    assert warnings == [
        "gpu-bound-queue: 12 tasks waiting for 45 s and no live poller — is the gpu worker running?"
    ]


def test_no_warning_within_the_grace_period_or_for_a_queue_first_seen_now() -> None:
    assert stalled_queues([stats()], 100.0, {"gpu-bound-queue": 80.0}, grace_s=30) == []
    assert stalled_queues([stats()], 100.0, {}, grace_s=30) == []


def test_only_the_starved_queues_are_reported() -> None:
    since = {"gpu-bound-queue": 0.0, "io-bound-queue": 0.0}
    warnings = stalled_queues(
        [stats("gpu-bound-queue", pollers=2), stats("io-bound-queue", backlog=1, age_s=3)],
        now=40.0,
        starved_since=since,
        workers=WORKERS,
    )
    assert warnings == [
        "io-bound-queue: 1 task waiting for 40 s and no live poller — is the io worker running?"
    ], "waiting time: the longer of the backlog's age and the time seen starved"


def test_an_unknown_queue_still_gets_a_hint() -> None:
    [warning] = stalled_queues([stats("other-queue")], 50.0, {"other-queue": 0.0})
    assert warning.endswith("no live poller — is a worker for it running?")


def test_the_workers_of_the_configured_queues_are_named() -> None:
    settings = load_settings(gpu_task_queue="gpu-q", io_task_queue="io-q")
    workers = queue_workers(settings)
    assert workers["gpu-q"] == "gpu" and workers["io-q"] == "io"
    assert workers[settings.workflow_task_queue] == "workflow"


def test_the_watcher_warns_after_the_grace_period_then_repeats_slowly() -> None:
    watcher = QueueWatcher(grace_s=30, repeat_s=60, workers=WORKERS)
    seen = {t: watcher.update([stats()], now=t) for t in (0, 10, 29, 30, 35, 89, 90)}
    assert [t for t, lines in seen.items() if lines] == [30, 90]
    assert seen[30] == [
        "gpu-bound-queue: 12 tasks waiting for 45 s and no live poller — is the gpu worker running?"
    ]


def test_the_watcher_says_when_a_warned_queue_is_served_again() -> None:
    watcher = QueueWatcher(grace_s=30, workers=WORKERS)
    watcher.update([stats()], now=0)
    assert watcher.update([stats()], now=40)
    assert watcher.update([stats(pollers=1)], now=52) == [
        "gpu-bound-queue: a worker polls it again (starved for 52 s)"
    ]
    assert watcher.update([stats(pollers=1)], now=60) == []


def test_a_starved_spell_shorter_than_the_grace_period_is_never_mentioned() -> None:
    watcher = QueueWatcher(grace_s=30, workers=WORKERS)
    assert watcher.update([stats()], now=0) == []
    assert watcher.update([stats(pollers=1)], now=20) == [], "served in time: no recovery line"
    assert watcher.update([stats()], now=25) == []
    assert watcher.update([stats()], now=50) == [], "a new spell: its own grace period"
    assert watcher.update([stats()], now=55)


class UnreachableClient:
    """A client whose every call fails, as when the server went away."""

    namespace = "default"

    def __init__(self, calls_before_done: int) -> None:
        self.calls = 0
        self.calls_before_done = calls_before_done
        self.done = asyncio.Event()
        self.workflow_service = self

    async def describe_task_queue(self, request: object) -> None:
        self.calls += 1
        if self.calls >= self.calls_before_done:
            self.done.set()
        raise ConnectionError("connection refused")


async def test_watch_queues_reports_a_failed_read_once_and_keeps_going() -> None:
    client = UnreachableClient(calls_before_done=20)  # 5 rounds of 4 queues
    lines: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        watch_queues(client, load_settings(), lines.append, interval_s=0.01, stop=stop)  # type: ignore[arg-type]
    )
    await asyncio.wait_for(client.done.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert lines == ["cannot read the task queues' stats (connection refused); will keep trying"]
