"""A versioned rollout against a real Temporal dev server, end to end.

Worker v1 of a deployment serves a pinned workflow that waits for a signal; one
such workflow is started on v1 and left waiting. Worker v2 of the same
deployment starts, and the operator's rollout policy (versioning.py) ramps it
and makes it Current. From then on new workflows run on v2, while the waiting
one still finishes on v1 when signalled; Temporal then reports v1 drained and
the policy says to delete v1's pods. On the way, the per-version backlog reader
attributes a waiting task to the version it waits for.

A second test runs the real IngestCsvWorkflow on workers configured as the
workflow worker is (deployment_config): its run is pinned to v1 and moves to v2
by continuing as new at the end of the page it is reading when v2 becomes Current.

The server runs with short drainage refresh intervals (dynamic config), so
"drained" is seen in seconds instead of the default minutes. Every wait is a
poll with a deadline: no step depends on how fast the server or the workers are.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkerDeploymentVersion
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkerDeploymentConfig
from versioned_workflows import FAST_DRAINAGE, WaitForSignalV1, WaitForSignalV2, start_waiting

from docpipe import steps
from docpipe.config import load_settings
from docpipe.local.devstack import DevStack, TemporalServer
from docpipe.models import CsvPage, CsvPageRequest, IngestInput, PipelineOptions
from docpipe.queue_stats import describe_queue
from docpipe.workers.common import deployment_config
from docpipe.workflows import WORKFLOWS, IngestCsvWorkflow, versioning_behavior
from docpipe_operator import versioning, worker_deployments

pytestmark = pytest.mark.integration

T = TypeVar("T")

DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    """A dev server of its own: the shared one runs with default drainage intervals."""
    stack = DevStack(Path(tmp_path_factory.mktemp("versioning")))
    stack.logs_dir.mkdir(parents=True, exist_ok=True)
    server = TemporalServer(stack, None, FAST_DRAINAGE)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], what: str
) -> T:
    """Poll ``probe`` until ``accept`` holds, or fail after DEADLINE_S saying what."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + DEADLINE_S
    last: T | None = None
    while True:
        try:
            last = await probe()
            if accept(last):
                return last
        except Exception as err:  # the server may not know the version yet
            last = err  # type: ignore[assignment]
        if loop.time() > give_up:
            raise AssertionError(f"{what}: still {last!r} after {DEADLINE_S:.0f} s")
        await asyncio.sleep(0.3)


@asynccontextmanager
async def worker(
    client: Client, queue: str, deployment: str, build_id: str, workflow_class: type
) -> AsyncIterator[Worker]:
    """A versioned workflow worker, polling until the block ends."""
    running = Worker(
        client,
        task_queue=queue,
        workflows=[workflow_class],
        workflow_runner=UnsandboxedWorkflowRunner(),
        deployment_config=WorkerDeploymentConfig(
            version=WorkerDeploymentVersion(deployment_name=deployment, build_id=build_id),
            use_worker_versioning=True,
        ),
        graceful_shutdown_timeout=timedelta(seconds=5),
    )
    async with running:
        yield running


async def rolled_out(
    client: Client,
    deployment: str,
    target: str,
    rollout: versioning.Rollout,
    seen: list[versioning.Plan],
) -> versioning.Plan:
    """Tick the policy (as the operator's timer would) until ``target`` is Current."""

    async def tick() -> versioning.Plan:
        decided = await worker_deployments.advance(client, deployment, target, rollout)
        seen.append(decided)
        return decided

    return await eventually(
        tick,
        lambda p: p.phase is versioning.Phase.STEADY and p.routing is None,
        f"rollout of {target}",
    )


async def running_on(handle: WorkflowHandle) -> str:
    """Which release runs the workflow (a query answered by its worker)."""
    return await eventually(
        lambda: handle.query("version", result_type=str),
        lambda v: v in ("v1", "v2"),
        f"{handle.id} to start",
    )


async def test_a_pinned_workflow_finishes_on_v1_while_v2_rolls_out_then_v1_drains(
    temporal: TemporalServer,
) -> None:
    client = await Client.connect(temporal.address)
    deployment = f"docpipe-test-{uuid.uuid4().hex[:6]}"
    queue = f"versioned-{uuid.uuid4().hex[:6]}"
    progressive = versioning.Rollout(
        versioning.Strategy.PROGRESSIVE,
        steps=(versioning.RampStep(50, timedelta(0)),),
        scale_down_delay=timedelta(0),
    )
    seen: list[versioning.Plan] = []

    async with worker(client, queue, deployment, "v1", WaitForSignalV1):
        # v1 registers by polling; the first version becomes Current directly.
        await eventually(
            lambda: worker_deployments.describe_deployment(client, deployment),
            lambda s: s is not None and "v1" in s.versions,
            "v1 to register",
        )
        await rolled_out(client, deployment, "v1", progressive, seen)
        assert versioning.SetCurrent("v1") in [p.routing for p in seen]

        old = await start_waiting(client, queue)
        assert await running_on(old) == "v1"

        async with worker(client, queue, deployment, "v2", WaitForSignalV2) as v2:
            seen.clear()
            await rolled_out(client, deployment, "v2", progressive, seen)
            # Through a ramp step, then Current.
            routings = [p.routing for p in seen if p.routing is not None]
            assert routings == [versioning.SetRamp("v2", 50), versioning.SetCurrent("v2")]

            state = await worker_deployments.describe_deployment(client, deployment)
            assert state is not None and (state.current, state.ramping) == ("v2", None)

            new = await start_waiting(client, queue)
            assert await running_on(new) == "v2"
            await new.signal("go")
            assert await new.result() == "finished on v2"

            # v1 still has an open pinned workflow: it drains, its pods stay.
            drained_plan = await eventually(
                lambda: worker_deployments.advance(
                    client, deployment, "v2", progressive, {"v1", "v2"}
                ),
                lambda p: p.roles.get("v1") is versioning.Role.DRAIN,
                "v1 to be draining",
            )
            assert drained_plan.roles["v2"] is versioning.Role.SERVE
            assert await old.query("version", result_type=str) == "v1"

            # Per-version backlog: with v2's worker stopped, a new workflow's first
            # task waits for v2, not for v1.
            await v2.shutdown()
            waiting = await start_waiting(client, queue)
            backlog = await eventually(
                lambda: worker_deployments.backlog_by_build_id(
                    client, deployment, {"v1", "v2"}, queue, workflow=True
                ),
                lambda b: b["v2"] is not None and b["v2"].backlog_count >= 1,
                "the waiting task to show in v2's backlog",
            )
            assert backlog["v1"] is not None and backlog["v1"].backlog_count == 0
            # The queue-wide reading the pool scaler uses counts every version's backlog.
            await eventually(
                lambda: describe_queue(client, queue, workflow=True),
                lambda whole: whole.backlog_count >= 1,
                "the waiting task to show in the whole queue's backlog",
            )
            await waiting.terminate("test over")

        # The pinned workflow finishes on v1, the code it started with.
        await old.signal("go")
        assert await old.result() == "finished on v1"

        state = await eventually(
            lambda: worker_deployments.describe_deployment(client, deployment),
            lambda s: s is not None and s.versions["v1"].status is versioning.VersionStatus.DRAINED,
            "v1 to be drained",
        )
        done = versioning.plan("v2", state, progressive, datetime.now(UTC), {"v1", "v2"})
        assert done.roles == {"v1": versioning.Role.DELETE, "v2": versioning.Role.SERVE}
        assert done.routing is None


async def _build_id_of_run(client: Client, workflow_id: str, run_id: str | None) -> str:
    described = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    info = described.raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id


async def test_an_ingestion_moves_to_the_new_release_at_its_next_page_boundary(
    temporal: TemporalServer,
) -> None:
    """IngestCsvWorkflow, the real code on the real workflow worker settings: a run
    is pinned to v1, and when v2 becomes Current it continues as new at the end
    of the page it is reading, onto v2 (upgrade on continue-as-new), each page
    read once. parse_csv is a stand-in that holds page 1 until told."""
    client = await Client.connect(temporal.address)
    deployment = f"docpipe-ingest-{uuid.uuid4().hex[:6]}"
    queue = f"ingest-wf-{uuid.uuid4().hex[:6]}"
    io_queue = f"ingest-io-{uuid.uuid4().hex[:6]}"
    hold_page_1 = asyncio.Event()
    pages_read: list[int] = []

    @activity.defn(name=steps.PARSE_CSV)
    async def parse_csv(request: CsvPageRequest) -> CsvPage:
        pages_read.append(request.offset)
        if request.offset == 1:
            await hold_page_1.wait()
        return CsvPage(documents=[], next_offset=request.offset + 1 if request.offset < 3 else None)

    def workflow_worker(build_id: str) -> Worker:
        settings = load_settings().model_copy(
            update={"worker_build_id": build_id, "worker_deployment_name": deployment}
        )
        return Worker(
            client,
            task_queue=queue,
            workflows=WORKFLOWS,
            deployment_config=deployment_config(settings, "workflow", versioning_behavior()),
        )

    options = replace(
        PipelineOptions(), queues=replace(PipelineOptions().queues, workflow=queue, io=io_queue)
    )
    all_at_once = versioning.Rollout(versioning.Strategy.ALL_AT_ONCE)
    async with (
        Worker(client, task_queue=io_queue, activities=[parse_csv]),
        workflow_worker("v1"),
    ):
        await rolled_out(client, deployment, "v1", all_at_once, [])
        handle = await client.start_workflow(
            IngestCsvWorkflow.run,
            IngestInput(
                location="stand-in.csv", run_id="ingest", pages_per_run=10, options=options
            ),
            id=f"ingest-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
            execution_timeout=timedelta(minutes=5),
        )
        await eventually(lambda: asyncio.sleep(0, list(pages_read)), lambda p: 1 in p, "page 1")

        async with workflow_worker("v2"):
            await rolled_out(client, deployment, "v2", all_at_once, [])
            hold_page_1.set()
            summary = await handle.result()

    assert summary.documents == 0 and summary.error is None
    assert pages_read == [0, 1, 2, 3]
    assert await _build_id_of_run(client, handle.id, handle.first_execution_run_id) == "v1"
    assert await _build_id_of_run(client, handle.id, None) == "v2"
