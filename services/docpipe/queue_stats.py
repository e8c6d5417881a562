"""Task-queue statistics from Temporal: the signal `docpipe status` shows and the
operator scales on.

``DescribeTaskQueue`` with ``report_stats`` gives an approximate backlog count
and age and the add/dispatch rates (the server refreshes them every few
seconds). Its poller list keeps workers that exited minutes ago, so live
pollers are those seen within ``LIVE_POLLER_WINDOW``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue, TaskQueueStats
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

LIVE_POLLER_WINDOW = timedelta(seconds=70)


@dataclass(frozen=True)
class QueueStats:
    queue: str
    kind: str
    """'workflow' or 'activity': which task type the numbers are for."""
    backlog_count: int
    backlog_age_s: float
    add_rate: float
    dispatch_rate: float
    live_pollers: int
    reported: bool = True
    """False when the server answered without ``stats`` (it does not report them):
    the numbers above are then zeros that mean nothing, not an idle queue."""


def task_queue_type(workflow: bool) -> TaskQueueType.ValueType:
    """The task type a queue is described for: its workflow tasks or its activity tasks."""
    return (
        TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        if workflow
        else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    )


def live_pollers(pollers: Iterable[PollerInfo], now: datetime) -> list[PollerInfo]:
    """The pollers seen within ``LIVE_POLLER_WINDOW`` (the server lists exited ones too)."""
    return [
        poller
        for poller in pollers
        if poller.HasField("last_access_time")
        and now - poller.last_access_time.ToDatetime(tzinfo=UTC) <= LIVE_POLLER_WINDOW
    ]


def queue_stats(
    queue: str,
    stats: TaskQueueStats,
    live: int,
    *,
    workflow: bool = False,
    reported: bool = True,
) -> QueueStats:
    """Temporal's ``TaskQueueStats`` (of a queue, or of one version on it) as QueueStats."""
    return QueueStats(
        queue=queue,
        kind="workflow" if workflow else "activity",
        backlog_count=int(stats.approximate_backlog_count),
        backlog_age_s=stats.approximate_backlog_age.ToTimedelta().total_seconds(),
        add_rate=float(stats.tasks_add_rate),
        dispatch_rate=float(stats.tasks_dispatch_rate),
        live_pollers=live,
        reported=reported,
    )


async def describe_queue(client: Client, queue: str, *, workflow: bool = False) -> QueueStats:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=task_queue_type(workflow),
            report_stats=True,
        )
    )
    return queue_stats(
        queue,
        response.stats,
        len(live_pollers(response.pollers, datetime.now(UTC))),
        workflow=workflow,
        reported=response.HasField("stats"),
    )


async def describe_queues(
    client: Client, workflow_queue: str, activity_queues: list[str]
) -> list[QueueStats]:
    return list(
        await asyncio.gather(
            describe_queue(client, workflow_queue, workflow=True),
            *(describe_queue(client, q) for q in activity_queues),
        )
    )
