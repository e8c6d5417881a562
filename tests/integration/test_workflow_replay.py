"""Workflow code changes must replay the histories already recorded.

A running DocumentPipelineWorkflow is replayed from its history whenever a worker
picks it up again (a restart, a cache eviction, a new deployment of unversioned
workers). If a change makes the workflow issue different commands for the same
history, those workflows fail with a non-determinism error in production. The
histories in ``histories/`` were recorded from the workflow as it stood (every
phase, failures at each kind of step, OCR, the webhook); each must still replay.

Re-record after a deliberate, versioned change only (and keep the old file):
``DOCPIPE_RECORD_HISTORIES=1 pytest tests/integration/test_workflow_replay.py``.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer, Worker

from docpipe.models import DocumentRef, PipelineInput
from docpipe.workflows import DocumentPipelineWorkflow

from .test_pipeline_workflow import FakeSteps, one_queue_options

HISTORIES = Path(__file__).parent / "histories"
RECORDED = HISTORIES / "document_pipeline_mixed_batch.json"
SOURCES = ["good-1", "bad-download", "bad-text", "image-blank", "image-noise", "good-2"]


async def record(client: Client) -> str:
    """Run one mixed batch on the stand-in steps and return its history as JSON."""
    queue = f"replay-{uuid.uuid4().hex[:8]}"
    docs = [
        DocumentRef(s if s.startswith("image-") else f"doc-{i}", s, i + 2)
        for i, s in enumerate(SOURCES)
    ]
    docs.append(DocumentRef("row-bad", "", 99, invalid_reason="row has no url"))
    options = one_queue_options(queue, webhook_url="http://hook")
    fakes = FakeSteps()
    async with Worker(
        client, task_queue=queue, workflows=[DocumentPipelineWorkflow], activities=fakes.all()
    ):
        handle = await client.start_workflow(
            DocumentPipelineWorkflow.run,
            PipelineInput(run_id="replay", documents=docs, options=options),
            id=f"wf-{queue}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=60),
        )
        await handle.result()
    history = await handle.fetch_history()
    return history.to_json()


@pytest.mark.skipif(not os.environ.get("DOCPIPE_RECORD_HISTORIES"), reason="re-recording only")
async def test_record_the_mixed_batch_history(devstack) -> None:
    client = await Client.connect(devstack.env["TEMPORAL_HOST"])
    HISTORIES.mkdir(exist_ok=True)
    RECORDED.write_text(await record(client))


async def test_recorded_histories_replay_on_todays_workflow() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    assert files, "no recorded history to replay"
    replayer = Replayer(workflows=[DocumentPipelineWorkflow])
    for path in files:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        await replayer.replay_workflow(history)  # raises on a non-determinism error


async def test_a_fresh_run_replays_too(devstack) -> None:
    """The same check on a history made now: the workflow is deterministic today."""
    client = await Client.connect(devstack.env["TEMPORAL_HOST"])
    history = WorkflowHistory.from_json("fresh", await record(client))
    await Replayer(workflows=[DocumentPipelineWorkflow]).replay_workflow(history)
