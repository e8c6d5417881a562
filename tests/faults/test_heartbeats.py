"""Every activity of a docpipe worker heartbeats, however short its timeout.

A worker's death is only noticed within the heartbeat timeout if the activity
keeps heartbeating while it works. Two things used to break that: an activity
whose author never wrapped it in ``heartbeating()`` (it then relies on the
start-to-close timeout), and a heartbeat timeout shorter than the fixed 5 s
beat (a healthy activity then timed out). Here a real worker with docpipe's
``HeartbeatInterceptor`` runs activities three times longer than a 1 s
heartbeat timeout, and each must finish on its first attempt.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from docpipe.activities.heartbeat import HeartbeatInterceptor, heartbeating

pytestmark = pytest.mark.integration

HEARTBEAT_TIMEOUT = timedelta(seconds=1)
WORK_S = 3.0


@activity.defn
async def works_without_heartbeat_code() -> int:
    await asyncio.sleep(WORK_S)
    return activity.info().attempt


@activity.defn
async def works_inside_heartbeating() -> int:
    async with heartbeating():  # its default beat (5 s) is longer than the timeout
        await asyncio.sleep(WORK_S)
    return activity.info().attempt


@workflow.defn(sandboxed=False)
class LongActivities:
    @workflow.run
    async def run(self) -> list[int]:
        return list(
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        fn,
                        start_to_close_timeout=timedelta(seconds=60),
                        heartbeat_timeout=HEARTBEAT_TIMEOUT,
                        retry_policy=RetryPolicy(maximum_attempts=2),
                    )
                    for fn in (works_without_heartbeat_code, works_inside_heartbeating)
                )
            )
        )


async def test_activities_longer_than_their_heartbeat_timeout_finish_first_time(
    client: Client,
) -> None:
    queue = f"heartbeat-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[LongActivities],
        activities=[works_without_heartbeat_code, works_inside_heartbeating],
        interceptors=[HeartbeatInterceptor()],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        attempts = await client.execute_workflow(
            LongActivities.run,
            id=queue,
            task_queue=queue,
            execution_timeout=timedelta(seconds=60),
        )
    assert attempts == [1, 1], "no heartbeat timeout on a healthy activity"
