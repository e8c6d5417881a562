"""A backlog on demand: activity tasks left on a queue where no worker polls, which
is what the operator tests read back as a pool's backlog (tests/operator)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker


@workflow.defn(name="FanOut", sandboxed=False)
class FanOut:
    """Schedules ``count`` activities on ``queue``, where no worker polls."""

    @workflow.run
    async def run(self, queue: str, count: int) -> None:
        await asyncio.gather(
            *(
                workflow.execute_activity(
                    "process", i, task_queue=queue, start_to_close_timeout=timedelta(minutes=5)
                )
                for i in range(count)
            )
        )


class BacklogDriver:
    """Runs FanOut workflows from a task queue of its own (``name``)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.name = f"driver-{uuid.uuid4().hex[:6]}"

    async def fan_out(self, queue: str, count: int) -> None:
        """Leave ``count`` activity tasks on ``queue``."""
        await self.client.start_workflow(
            FanOut.run, args=[queue, count], id=f"{queue}-{self.name}", task_queue=self.name
        )


@asynccontextmanager
async def backlog_driver(client: Client) -> AsyncIterator[BacklogDriver]:
    """A BacklogDriver whose workflow worker runs while the block does."""
    driver = BacklogDriver(client)
    async with Worker(
        client,
        task_queue=driver.name,
        workflows=[FanOut],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        yield driver
