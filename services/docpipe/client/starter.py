"""Run a list of documents through the pipeline from a client: `docpipe start`.

The documents are cut into batches of ``batch_size``; each batch is one
``DocumentPipelineWorkflow`` (one activity call per step for the whole batch,
see the workflow's docstring for why). Batches are admitted as the workers
drain them (see ``docpipe.client.admission``): the starter watches the activity
queues' backlog (``docpipe.client.queue_readings``: one reader per run, whose
listeners also serve the queue-health warnings) and starts new batches only
while little work waits, up to
``max_in_flight``, so queue waits stay short and memory stays flat for a CSV
of any length.

Nothing fails for waiting its turn: ``timeout_s`` is the budget of one step
attempt once a worker runs it (plus an allowance for its size), and a dead
worker is noticed by heartbeats. Only an explicit ``deadline_s`` bounds a
batch's whole life, queue waits included.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDReusePolicy

from docpipe.client.admission import AdmissionPolicy, batches_to_admit
from docpipe.client.queue_readings import QueueReadings
from docpipe.config import Settings
from docpipe.models import (
    DocumentOutcome,
    DocumentRef,
    PipelineInput,
    PipelineOptions,
    PipelineResult,
    Stage,
    Status,
    StepTimeouts,
    TaskQueues,
)
from docpipe.workflows import DocumentPipelineWorkflow


@dataclass
class RunSummary(PipelineResult):
    """A run's result, its batches' results together: counts for every document;
    the outcomes themselves only where kept (every failure always; successes
    unless ``keep_outcomes`` was off, for huge CSVs)."""

    outcomes: list[DocumentOutcome] = field(default_factory=list)
    elapsed_s: float = 0.0
    documents: int = 0
    succeeded_count: int = 0
    failed_count: int = 0
    chunks: int = 0
    """Chunks embedded, over the succeeded documents."""
    without_text: int = 0
    """Succeeded documents stored without text (images with nothing to read)."""

    def add(self, outcomes: list[DocumentOutcome], *, keep_succeeded: bool = True) -> None:
        for outcome in outcomes:
            self.documents += 1
            if outcome.status == Status.SUCCEEDED:
                self.succeeded_count += 1
                self.chunks += outcome.chunk_count or 0
                self.without_text += outcome.has_text is False
                if keep_succeeded:
                    self.outcomes.append(outcome)
            else:
                self.failed_count += 1
                self.outcomes.append(outcome)

    @property
    def succeeded(self) -> list[DocumentOutcome]:
        return [o for o in self.outcomes if o.status == Status.SUCCEEDED]

    @property
    def documents_per_second(self) -> float:
        return self.documents / self.elapsed_s if self.elapsed_s > 0 else 0.0


def pipeline_options(
    settings: Settings,
    timeout_s: float,
    *,
    deadline_s: float | None = None,
    webhook_url: str = "",
    summarize: bool = False,
) -> PipelineOptions:
    """``timeout_s``: each step attempt's base budget once running (never queue time);
    ``deadline_s``: an explicit bound on a batch's whole life, off unless given."""
    return PipelineOptions(
        queues=TaskQueues(
            cpu=settings.cpu_task_queue,
            gpu=settings.gpu_task_queue,
            io=settings.io_task_queue,
            workflow=settings.workflow_task_queue,
        ),
        timeouts=StepTimeouts(
            io_start_to_close=timeout_s,
            cpu_start_to_close=timeout_s,
            gpu_start_to_close=timeout_s,
        ),
        deadline_seconds=deadline_s,
        webhook_url=webhook_url,
        summarize=summarize,
        image_near_duplicate_bits=settings.image_near_duplicate_bits,
    )


def _unfinished(batch: list[DocumentRef], run_id: str, reason: str) -> list[DocumentOutcome]:
    """The batch's workflow itself failed: every document fails with that reason."""
    return [
        DocumentOutcome(
            document_id=d.document_id,
            source=d.source,
            row_number=d.row_number,
            status=Status.FAILED,
            run_id=run_id,
            title=d.title,
            tags=list(d.tags),
            failure_stage=Stage.TIMEOUT if "timed out" in reason.lower() else Stage.STORE,
            failure_reason=reason,
        )
        for d in batch
    ]


T = TypeVar("T")


def batched(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` cut into lists of ``size`` (the last one shorter), in order.

    ``itertools.batched`` does this from Python 3.12 (tuples); we support 3.11.
    """
    if size < 1:
        raise ValueError("batch size must be at least 1")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


AUTO_BATCH_MIN, AUTO_BATCH_MAX, AUTO_BATCHES = 10, 50, 16


def auto_batch_size(documents: int) -> int:
    """Documents per batch when none is given: each batch costs a fixed ~200 ms of
    Temporal CPU (six activities and their workflow tasks, measured with the embedded
    server), so large runs use batches of up to 50 (short documents went from 25 to
    31 per second on 2 cores, bench/overhead.py); small runs keep at least 16 batches
    so every worker type has work at once (the steps of different batches overlap)."""
    return max(AUTO_BATCH_MIN, min(AUTO_BATCH_MAX, -(-documents // AUTO_BATCHES)))


def new_run_id() -> str:
    """A run's id: its batch workflows are ``<run id>-batch-<n>``."""
    return f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


async def run_documents(
    client: Client,
    settings: Settings,
    documents: list[DocumentRef],
    *,
    batch_size: int | None = None,
    timeout_s: float = 120.0,
    deadline_s: float | None = None,
    max_in_flight: int = 50,
    run_id: str | None = None,
    webhook_url: str = "",
    summarize: bool = False,
    on_batch_done: Callable[[list[DocumentOutcome]], None] | None = None,
    keep_outcomes: bool = True,
    admission: AdmissionPolicy | None = None,
    readings: QueueReadings | None = None,
) -> RunSummary:
    run_id = run_id or new_run_id()
    options = pipeline_options(
        settings, timeout_s, deadline_s=deadline_s, webhook_url=webhook_url, summarize=summarize
    )
    policy = admission or AdmissionPolicy(max_in_flight=max_in_flight)
    summary = RunSummary(run_id)
    started = time.perf_counter()
    # Only an explicit deadline bounds the workflow itself: past it, the workflow
    # records its outcomes (within the grace period), then gives up for good.
    execution_timeout = (
        timedelta(seconds=deadline_s + 2 * options.timeouts.metadata_grace) if deadline_s else None
    )

    async def run_batch(index: int, batch: list[DocumentRef]) -> None:
        try:
            result: PipelineResult = await client.execute_workflow(
                DocumentPipelineWorkflow.run,
                PipelineInput(run_id=run_id, documents=batch, options=options),
                id=f"{run_id}-batch-{index:06d}",
                task_queue=settings.workflow_task_queue,
                execution_timeout=execution_timeout,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
            outcomes = result.outcomes
        except WorkflowFailureError as err:
            cause = err.cause or err
            outcomes = _unfinished(batch, run_id, f"batch workflow failed: {cause}")
        summary.add(outcomes, keep_succeeded=keep_outcomes)
        if on_batch_done:
            on_batch_done(outcomes)

    pending = list(enumerate(batched(documents, batch_size or auto_batch_size(len(documents)))))
    pending.reverse()  # pop() from the end takes them in order
    running: set[asyncio.Task[None]] = set()
    # The run's one reader of the queues: admission here, and the caller's listeners.
    watch = readings or QueueReadings(client, settings)
    watcher = asyncio.create_task(watch.run())
    try:
        while pending or running:
            for _ in range(batches_to_admit(policy, len(running), len(pending), watch.backlog)):
                index, batch = pending.pop()
                running.add(asyncio.create_task(run_batch(index, batch)))
            # Decide again when a batch ends or fresh statistics arrive.
            watch.changed.clear()
            changed = asyncio.create_task(watch.changed.wait())
            done, _ = await asyncio.wait({*running, changed}, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            for task in done - {changed}:
                running.discard(task)
                task.result()  # a bug in run_batch surfaces here, not silently
    finally:
        watcher.cancel()
        for task in running:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    summary.elapsed_s = time.perf_counter() - started
    summary.outcomes.sort(key=lambda o: o.row_number)
    return summary
