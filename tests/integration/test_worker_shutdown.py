"""A worker told to stop (SIGTERM: a scale-down, a rollout, a node drain) stops
taking tasks at once and finishes the activity it is running, within
WORKER_SHUTDOWN_GRACE_S, instead of abandoning it to a retry after the heartbeat
timeout. Against a real Temporal dev server, with the workers' own shutdown code
(docpipe.workers.common) in a subprocess; every wait polls with a deadline."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from own_temporal import own_temporal_fixture
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from worker_process import worker_process

from docpipe.local.devstack import TemporalServer

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("slow_activity_worker.py")
ACTIVITY_SECONDS = 4.0
"""How long the activity still runs after the worker is told to stop."""
GRACE_S = 60
"""The worker's WORKER_SHUTDOWN_GRACE_S: far longer than the activity needs."""


@workflow.defn
class RunsSlowStep:
    @workflow.run
    async def run(self, queue: str) -> dict[str, int]:
        return await workflow.execute_activity(
            "slow_step",
            ACTIVITY_SECONDS,
            task_queue=queue,
            start_to_close_timeout=timedelta(seconds=120),
            heartbeat_timeout=timedelta(seconds=30),
        )


temporal = own_temporal_fixture("shutdown")


async def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not true after {timeout:g} s: {check}"
        await asyncio.sleep(0.1)


async def test_sigterm_stops_polling_and_lets_the_running_activity_finish(
    temporal: TemporalServer, tmp_path: Path
) -> None:
    queue = f"slow-{uuid.uuid4().hex[:8]}"
    env = {"TEMPORAL_HOST": temporal.address, "WORKER_SHUTDOWN_GRACE_S": str(GRACE_S)}
    async with worker_process(
        WORKER, queue, str(tmp_path), env=env, log_path=tmp_path / "worker.log"
    ) as process:
        client = await Client.connect(temporal.address)
        async with Worker(
            client,
            task_queue=f"{queue}-workflows",
            workflows=[RunsSlowStep],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            first = await client.start_workflow(
                RunsSlowStep.run, queue, id=f"first-{queue}", task_queue=f"{queue}-workflows"
            )
            await wait_for(lambda: (tmp_path / f"first-{queue}.started").exists())

            process.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            await wait_for(lambda: "no new tasks" in (tmp_path / "worker.log").read_text())
            second = await client.start_workflow(
                RunsSlowStep.run, queue, id=f"second-{queue}", task_queue=f"{queue}-workflows"
            )

            # The running activity finishes on the stopping worker, in its first attempt.
            result = await asyncio.wait_for(first.result(), timeout=GRACE_S)
            assert result == {"attempt": 1, "pid": process.pid}
            code = await asyncio.wait_for(process.wait(), GRACE_S)
            assert code == 0, (tmp_path / "worker.log").read_text()
            assert time.monotonic() - stopped_at < GRACE_S
            # Work that arrived after SIGTERM was left for another worker.
            assert not (tmp_path / f"second-{queue}.started").exists()
            pending = (await second.describe()).raw_description.pending_activities
            assert [p.attempt for p in pending] == [1]
            await second.terminate("the test is over")
