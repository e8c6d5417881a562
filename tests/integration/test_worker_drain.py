"""A cordoned worker drains: it stops polling, finishes what it holds, reports it,
and polls again when the cordon is lifted (issue 12, item 7: drain before remove).

The operator sets the pod annotation ``docpipe.io/drain: "true"`` on a pod it
wants to remove; the worker sees it in its downward API file
(WORKER_POD_ANNOTATIONS_FILE). Specification, against a real Temporal dev server
with the workers' own loop (docpipe.workers.common.run_until_stopped):

* the activity running when the drain comes still completes, in its first
  attempt, on the draining worker;
* an activity scheduled after the drain took effect is not picked up: it waits
  in the queue while the worker is drained;
* ``docpipe_worker_draining`` reads 1 only once the worker has stopped and
  nothing is in flight (``docpipe_activities_in_flight`` 0 then);
* when the annotation goes, a new Worker on the same client polls again and the
  waiting activity runs on it; the gauge is back to 0;
* a stop (SIGTERM, SIGINT) ends the loop whether the worker polls or is drained;
  a pod that starts cordoned never polls.

The file is re-read every 50 ms here (2 s in a pod); every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from own_temporal import own_temporal_fixture
from prometheus_client import REGISTRY
from temporalio import activity, workflow
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from worker_process import worker_process

from docpipe.local.devstack import TemporalServer
from docpipe.metrics import worker_kind
from docpipe.metrics.activity import ActivityMetricsInterceptor
from docpipe.metrics.worker import set_draining
from docpipe.workers.common import run_until_stopped
from docpipe.workers.drain_switch import DRAIN_ANNOTATION, DrainSwitch

pytestmark = pytest.mark.integration

INTERVAL_S = 0.05
"""How often the worker re-reads the annotations file in these tests."""
METRICS_WORKER = "drain-test"
"""The ``worker`` label of the test worker's activity metrics."""
SLOW_WORKER = Path(__file__).with_name("slow_activity_worker.py")


@workflow.defn
class RunsBlockingStep:
    @workflow.run
    async def run(self, queue: str) -> dict[str, int]:
        return await workflow.execute_activity_method(
            BlockingStep.run,
            workflow.info().workflow_id,
            task_queue=queue,
            start_to_close_timeout=timedelta(seconds=60),
        )


class BlockingStep:
    """An activity that runs until the test releases it, and the Workers built for it."""

    def __init__(self) -> None:
        self.started: dict[str, asyncio.Event] = {}
        self.released: dict[str, asyncio.Event] = {}
        self.workers: list[Worker] = []

    def _event(self, events: dict[str, asyncio.Event], key: str) -> asyncio.Event:
        return events.setdefault(key, asyncio.Event())

    @activity.defn(name="blocking_step")
    async def run(self, key: str) -> dict[str, int]:
        """Says it started, waits for the test; returns its attempt and which Worker
        (1 = the first built) ran it."""
        generation = len(self.workers)
        self._event(self.started, key).set()
        await self._event(self.released, key).wait()
        return {"attempt": activity.info().attempt, "worker": generation}

    def has_started(self, key: str) -> bool:
        return self._event(self.started, key).is_set()

    async def wait_started(self, key: str) -> None:
        await asyncio.wait_for(self._event(self.started, key).wait(), 30)

    def release(self, key: str) -> None:
        self._event(self.released, key).set()


temporal = own_temporal_fixture("drain")


@pytest.fixture(autouse=True)
def _not_drained() -> None:
    """The gauge is this process's: a test that ended drained must not pass the next
    test's waits for 1 before its worker has even started."""
    set_draining(False)


def write_annotations(path: Path, annotations: dict[str, str]) -> None:
    """Replace the file atomically, in the kubelet's format."""
    staged = path.with_name(path.name + ".tmp")
    staged.write_text("\n".join(f'{key}="{value}"' for key, value in annotations.items()))
    os.replace(staged, path)


def draining() -> float | None:
    """``docpipe_worker_draining`` of this process (None: no series)."""
    return REGISTRY.get_sample_value("docpipe_worker_draining", {"worker": worker_kind()})


def in_flight() -> float:
    value = REGISTRY.get_sample_value(
        "docpipe_activities_in_flight", {"worker": METRICS_WORKER, "activity": "blocking_step"}
    )
    return value or 0.0


async def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not true after {timeout:g} s: {check}"
        await asyncio.sleep(0.02)


async def pending_states(handle: WorkflowHandle) -> list[tuple[int, int]]:
    """(state, attempt) of the workflow's pending activities."""
    pending = (await handle.describe()).raw_description.pending_activities
    return [(p.state, p.attempt) for p in pending]


async def start(client: Client, name: str, queue: str) -> WorkflowHandle:
    return await client.start_workflow(
        RunsBlockingStep.run,
        queue,
        id=f"{name}-{queue}",
        task_queue=f"{queue}-workflows",
        execution_timeout=timedelta(seconds=120),
    )


@pytest.fixture
async def client(temporal: TemporalServer) -> Client:
    return await Client.connect(temporal.address)


def worker_factory(
    client: Client, queue: str, step: BlockingStep, grace_s: float = 30
) -> Callable[[], Worker]:
    def make_worker() -> Worker:
        worker = Worker(
            client,
            task_queue=queue,
            activities=[step.run],
            interceptors=[ActivityMetricsInterceptor(METRICS_WORKER)],
            graceful_shutdown_timeout=timedelta(seconds=grace_s),
        )
        step.workers.append(worker)
        return worker

    return make_worker


@dataclass
class Drainable:
    stop: asyncio.Event
    running: asyncio.Task[None]


@asynccontextmanager
async def drainable_worker(
    client: Client, queue: str, step: BlockingStep, switch: DrainSwitch, grace_s: float = 30
) -> AsyncIterator[Drainable]:
    """The blocking step's workflow worker, and ``run_until_stopped`` over a factory of
    its activity workers with ``switch``; stopped, released and awaited on the way out."""
    stop = asyncio.Event()
    async with Worker(
        client,
        task_queue=f"{queue}-workflows",
        workflows=[RunsBlockingStep],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        make_worker = worker_factory(client, queue, step, grace_s)
        running = asyncio.create_task(run_until_stopped(make_worker, switch, stop=stop))
        try:
            yield Drainable(stop, running)
        finally:
            stop.set()
            for key in list(step.released):
                step.release(key)
            await asyncio.wait_for(running, 30)


async def test_drain_finishes_the_running_activity_takes_no_new_one_and_undrain_polls_again(
    client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="docpipe.worker")
    queue = f"drain-{uuid.uuid4().hex[:8]}"
    annotations = tmp_path / "annotations"
    write_annotations(annotations, {"other.io/note": "x"})
    step = BlockingStep()
    switch = DrainSwitch(annotations, interval_s=INTERVAL_S)
    async with drainable_worker(client, queue, step, switch) as worker:
        first = await start(client, "first", queue)
        await step.wait_started(first.id)
        assert in_flight() == 1
        assert draining() == 0

        # Cordon the pod while the first activity runs.
        write_annotations(annotations, {DRAIN_ANNOTATION: "true", "other.io/note": "x"})
        await wait_for(lambda: "drain requested: no new tasks" in caplog.text)
        second = await start(client, "second", queue)
        scheduled = (PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED, 1)
        pending = []

        async def second_is_scheduled() -> bool:
            pending[:] = await pending_states(second)
            return pending == [scheduled]

        deadline = time.monotonic() + 30
        while not await second_is_scheduled():
            assert time.monotonic() < deadline, pending
            await asyncio.sleep(0.02)
        # Not drained yet: the first activity is still in flight.
        assert draining() == 0
        assert in_flight() == 1

        # The running activity completes on the draining worker, first attempt.
        step.release(first.id)
        assert await asyncio.wait_for(first.result(), 30) == {"attempt": 1, "worker": 1}
        await wait_for(lambda: draining() == 1)
        assert in_flight() == 0
        # Drained, the worker took nothing: the second activity waits in the queue.
        await asyncio.sleep(10 * INTERVAL_S)
        assert not step.has_started(second.id)
        assert await pending_states(second) == [scheduled]
        assert len(step.workers) == 1
        assert step.workers[0].is_shutdown

        # Lift the cordon: a new Worker on the same client takes the waiting task.
        write_annotations(annotations, {"other.io/note": "x"})
        await step.wait_started(second.id)
        assert len(step.workers) == 2
        assert draining() == 0
        step.release(second.id)
        assert await asyncio.wait_for(second.result(), 30) == {"attempt": 1, "worker": 2}

        # A stop while polling ends the loop, as SIGTERM does.
        worker.stop.set()
        await asyncio.wait_for(worker.running, 30)
        assert step.workers[1].is_shutdown


async def test_an_activity_that_outlives_the_grace_is_handed_back_before_drained(
    client: Client, tmp_path: Path
) -> None:
    """A drain gives in-flight work the Worker's graceful_shutdown_timeout, as SIGTERM
    does; what still runs then is cancelled and handed back to Temporal, and only then
    does the worker report drained, with nothing in flight."""
    queue = f"outlives-{uuid.uuid4().hex[:8]}"
    annotations = tmp_path / "annotations"
    write_annotations(annotations, {})
    step = BlockingStep()
    switch = DrainSwitch(annotations, INTERVAL_S)
    async with drainable_worker(client, queue, step, switch, grace_s=0.2):
        handle = await start(client, "outlives", queue)
        await step.wait_started(handle.id)  # and never released
        write_annotations(annotations, {DRAIN_ANNOTATION: "true"})
        await wait_for(lambda: draining() == 1)
        assert in_flight() == 0
        # Handed back: the server has it again, for its next attempt.
        await wait_for(lambda: step.workers[0].is_shutdown)
        deadline = time.monotonic() + 30
        while [attempt for _, attempt in await pending_states(handle)] != [2]:
            assert time.monotonic() < deadline, await pending_states(handle)
            await asyncio.sleep(0.05)
        await handle.terminate("the test is over")


async def test_a_pod_that_starts_cordoned_never_polls_and_stops_when_told(
    client: Client, tmp_path: Path
) -> None:
    queue = f"cordoned-{uuid.uuid4().hex[:8]}"
    annotations = tmp_path / "annotations"
    write_annotations(annotations, {DRAIN_ANNOTATION: "true"})
    step = BlockingStep()
    stop = asyncio.Event()
    switch = DrainSwitch(annotations, interval_s=INTERVAL_S)
    running = asyncio.create_task(
        run_until_stopped(worker_factory(client, queue, step), switch, stop=stop)
    )
    await wait_for(lambda: draining() == 1)
    assert step.workers == []

    stopped_at = time.monotonic()
    stop.set()  # the SIGTERM of a drained pod: nothing to wait for
    await asyncio.wait_for(running, 10)
    assert time.monotonic() - stopped_at < 2
    assert step.workers == []


async def test_a_real_worker_process_reads_its_annotations_file_and_stops_on_sigterm(
    temporal: TemporalServer, tmp_path: Path
) -> None:
    """The settings' way in (WORKER_POD_ANNOTATIONS_FILE) and a real SIGTERM while
    drained: the process never polls, then exits 0 at once."""
    annotations = tmp_path / "annotations"
    write_annotations(annotations, {DRAIN_ANNOTATION: "true"})
    log_path = tmp_path / "worker.log"
    queue = f"cordoned-{uuid.uuid4().hex[:8]}"
    env = {"TEMPORAL_HOST": temporal.address, "WORKER_POD_ANNOTATIONS_FILE": str(annotations)}
    async with worker_process(
        SLOW_WORKER, queue, str(tmp_path), env=env, log_path=log_path
    ) as process:
        await wait_for(lambda: "drained (pod annotation" in log_path.read_text())
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0, log_path.read_text()
    assert "polling task queue" not in log_path.read_text()
