"""Two replicas of every worker type against one stack share the work and
process every document exactly once.

Scaling out is the operator's whole job (it sets each Deployment's replica
count), so it must be safe and useful: replicas of a kind poll the same queue,
each activity runs on one of them, and the upserts keyed by document id keep
the stores free of duplicates. Each replica is its own process with its own
metrics port, read here as Prometheus would scrape it.
"""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest
from corpus import text_documents
from faults.harness import Run, check_stores
from prometheus_client.parser import text_string_to_metric_families
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from docpipe.client.starter import run_documents
from docpipe.config import load_settings
from docpipe.local.workers import WORKER_KINDS, LocalWorkers, WorkerProcess
from docpipe.models import Status
from docpipe.workers.common import connect

pytestmark = pytest.mark.integration

REPLICAS = 2
DOCUMENTS = 40
BATCH_SIZE = 2
"""Small batches: 20 workflows, so every queue gets many tasks to share."""


def activities_run(worker: WorkerProcess) -> int:
    """Activity executions this replica finished (any outcome), from its /metrics."""
    url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "docpipe_activity_duration_seconds"
            for sample in family.samples
            if sample.name.endswith("_count")
        )
    )


async def workflow_task_pids(client: Client, workflow_ids: list[str]) -> set[int]:
    """The pids of the workflow workers that completed the workflows' tasks."""
    pids = set()
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                identity = event.workflow_task_completed_event_attributes.identity
                pids.add(int(identity.split("@", 1)[0]))
    return pids


async def test_two_replicas_of_each_worker_share_the_work_without_duplicates(
    devstack, tmp_path: Path
) -> None:
    env = {
        **devstack.env,
        "S3_BUCKET": "scaling-documents",
        "VECTOR_COLLECTION": "scaling_chunks",
        "WORKER_CPU_THREADS": "1",  # 2 cores for 8 workers: one pool process per CPU worker
    }
    settings = load_settings(**{k.lower(): v for k, v in env.items()})
    documents = text_documents(tmp_path / "docs", DOCUMENTS, words=80, origin="horizontal-scaling")

    with LocalWorkers(tmp_path / "logs", env) as workers:
        workers.start(replicas=dict.fromkeys(WORKER_KINDS, REPLICAS))
        every = [w for kind in WORKER_KINDS for w in workers.replicas(kind)]
        assert [w.name for w in every] == [
            name for kind in WORKER_KINDS for name in (kind, f"{kind}-2")
        ]
        assert len({w.metrics_port for w in every} | {w.sdk_metrics_port for w in every}) == 16
        assert len({w.log_path for w in every}) == 8
        # Every replica polls before the first document: none starts with a head start.
        await asyncio.gather(*(w.wait_polling(180) for w in every))

        client = await connect(settings)
        summary = await run_documents(
            client, settings, documents, batch_size=BATCH_SIZE, timeout_s=120
        )
        workers.check_alive()

        assert [o.status for o in summary.outcomes] == [Status.SUCCEEDED] * DOCUMENTS, [
            o.failure_reason for o in summary.failed
        ]
        check = await check_stores(settings, Run(summary.run_id, documents, []), summary.outcomes)
        assert check.completed == DOCUMENTS, check.problems()
        assert not check.duplicated, check.problems()

        ran = {w.name: activities_run(w) for w in every if w.kind != "workflow"}
        assert all(count > 0 for count in ran.values()), f"activities per replica: {ran}"

        batches = (DOCUMENTS + BATCH_SIZE - 1) // BATCH_SIZE
        workflow_ids = [f"{summary.run_id}-batch-{i:06d}" for i in range(batches)]
        pids = await workflow_task_pids(client, workflow_ids)
        assert pids == {w.pid for w in workers.replicas("workflow")}, "both ran workflow tasks"
