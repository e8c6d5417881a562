"""kill -9 a worker while its activity runs: the task is retried on a new
worker within the heartbeat timeout, and every document lands exactly once.
The workflow worker is killed too: a new one replays the workflows.

The S3 proxy adds latency during the run so each activity stays in flight
long enough to be caught; the test kills the worker whose identity Temporal
shows on the running activity, so the kill certainly interrupts real work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from temporalio.client import Client

from docpipe import steps
from docpipe.config import Settings
from docpipe.local.workers import LocalWorkers

from .harness import (
    HEARTBEAT_S,
    START_TO_CLOSE_S,
    DocServer,
    FaultFigure,
    activity_history,
    check_stores,
    first_workflow_task_by,
    record,
    refs_for,
    start_run,
    wait_results,
    wait_until_retried,
    wait_until_running,
)
from .latency_proxy import LatencyProxy

pytestmark = pytest.mark.integration

# Each worker type, killed while running the step it serves.
KILLS = [
    ("io", steps.DOWNLOAD_DOCUMENT),
    ("cpu", steps.PREPARE_TEXT),
    ("gpu", steps.GENERATE_EMBEDDINGS),
]
STORAGE_LATENCY_S = 0.5
# Timers on the server and our polling add a little to the heartbeat timeout.
DETECTION_SLACK_S = 4.0


@dataclass
class Kill:
    kind: str
    activity: str
    workflow_id: str
    activity_id: str
    killed_at: float
    """Unix time of the kill (compared with history event times)."""
    detected_s: float
    """Kill -> the server failed the attempt and scheduled a retry."""


async def test_killed_workers_lose_and_duplicate_no_document(
    client: Client,
    fault_settings: Settings,
    check_settings: Settings,
    workers: LocalWorkers,
    doc_server: DocServer,
    s3_proxy: LatencyProxy,
) -> None:
    documents = refs_for(doc_server.add_documents(12, "kill"))
    kills: list[Kill] = []
    s3_proxy.latency_s = STORAGE_LATENCY_S
    try:
        run = await start_run(client, fault_settings, documents, tag="kill", batch_size=4)
        for kind, activity in KILLS:
            workflow_id, pending = await wait_until_running(client, run, activity)
            victim = workers.processes[kind]
            assert pending.last_worker_identity.startswith(f"{victim.pid}@"), (
                f"{activity} runs on the {kind} worker we kill"
            )
            killed_at, began = time.time(), time.monotonic()
            workers.kill_one(kind)
            workers.start_one(kind)  # the replacement, as a Deployment would start one
            await wait_until_retried(client, workflow_id, pending.activity_id)
            kills.append(
                Kill(
                    kind,
                    activity,
                    workflow_id,
                    pending.activity_id,
                    killed_at,
                    time.monotonic() - began,
                )
            )
        # The workflow worker too, while every batch waits for the GPU replacement:
        # its cached workflows are replayed from history by the new one.
        workflow_killed_at = time.time()
        workers.kill_one("workflow")
        new_workflow_worker = workers.start_one("workflow")
        outcomes = await wait_results(client, run)
    finally:
        s3_proxy.latency_s = 0.0

    check = await check_stores(check_settings, run, outcomes)
    for kill in kills:
        history = (await activity_history(client, kill.workflow_id))[kill.activity_id]
        assert history.attempt >= 2, f"the killed {kill.activity} was retried"
        assert history.completed_at is not None
        record(
            FaultFigure(
                f"kill -9 {kill.kind} worker during {kill.activity}",
                check.expected,
                check.completed,
                len(check.lost),
                len(check.duplicated),
                detected_s=kill.detected_s,
                recovered_s=history.completed_at - kill.killed_at,
                note=f"heartbeat timeout {HEARTBEAT_S:g} s; attempt {history.attempt} completed",
            )
        )
    took_over = await first_workflow_task_by(client, run, new_workflow_worker.pid)
    assert took_over is not None, "the new workflow worker carried the workflows on"
    record(
        FaultFigure(
            "kill -9 workflow worker mid-run",
            check.expected,
            check.completed,
            len(check.lost),
            len(check.duplicated),
            recovered_s=took_over - workflow_killed_at,
            note="workflows replayed from history on the new worker",
        )
    )
    assert not check.lost and not check.duplicated, check.problems()
    assert check.completed == len(documents)
    for kill in kills:
        # The heartbeat timeout, not the start-to-close timeout, decides when a
        # dead worker's task goes to another worker.
        assert kill.detected_s <= HEARTBEAT_S + DETECTION_SLACK_S, kill
        assert kill.detected_s < START_TO_CLOSE_S / 4, kill
    for kind in ("workflow", "io", "cpu", "gpu"):
        await workers.processes[kind].wait_polling()
