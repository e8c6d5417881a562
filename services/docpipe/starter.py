"""Run a list of documents through the pipeline from a client: `docpipe start`.

The documents are cut into batches of ``batch_size``; each batch is one
``DocumentPipelineWorkflow`` (one activity call per step for the whole batch,
see the workflow's docstring for why). At most ``max_in_flight`` batches run
at once so a huge CSV does not flood the queues, and each batch has
``timeout_s`` to finish: a document not done by then fails with stage
'timeout', recorded like any other failure.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDReusePolicy

from docpipe.config import Settings
from docpipe.csv_input import batched
from docpipe.models import (
    DocumentOutcome,
    DocumentRef,
    PipelineInput,
    PipelineOptions,
    PipelineResult,
    Stage,
    Status,
    TaskQueues,
)
from docpipe.workflows import DocumentPipelineWorkflow


@dataclass
class RunSummary:
    run_id: str
    outcomes: list[DocumentOutcome] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def succeeded(self) -> list[DocumentOutcome]:
        return [o for o in self.outcomes if o.status == Status.SUCCEEDED]

    @property
    def failed(self) -> list[DocumentOutcome]:
        return [o for o in self.outcomes if o.status == Status.FAILED]

    @property
    def chunks(self) -> int:
        return sum(o.chunk_count or 0 for o in self.succeeded)

    @property
    def documents_per_second(self) -> float:
        return len(self.outcomes) / self.elapsed_s if self.elapsed_s > 0 else 0.0


def pipeline_options(
    settings: Settings, timeout_s: float, *, webhook_url: str = "", summarize: bool = False
) -> PipelineOptions:
    return PipelineOptions(
        queues=TaskQueues(
            cpu=settings.cpu_task_queue,
            gpu=settings.gpu_task_queue,
            io=settings.io_task_queue,
            workflow=settings.workflow_task_queue,
        ),
        deadline_seconds=timeout_s,
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


async def run_documents(
    client: Client,
    settings: Settings,
    documents: list[DocumentRef],
    *,
    batch_size: int = 10,
    timeout_s: float = 120.0,
    max_in_flight: int = 50,
    run_id: str | None = None,
    webhook_url: str = "",
    summarize: bool = False,
    on_batch_done: Callable[[list[DocumentOutcome]], None] | None = None,
) -> RunSummary:
    run_id = run_id or f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    options = pipeline_options(settings, timeout_s, webhook_url=webhook_url, summarize=summarize)
    summary = RunSummary(run_id)
    gate = asyncio.Semaphore(max_in_flight)
    started = time.perf_counter()

    async def run_batch(index: int, batch: list[DocumentRef]) -> None:
        async with gate:
            try:
                result: PipelineResult = await client.execute_workflow(
                    DocumentPipelineWorkflow.run,
                    PipelineInput(run_id=run_id, documents=batch, options=options),
                    id=f"{run_id}-batch-{index:06d}",
                    task_queue=settings.workflow_task_queue,
                    # Past the deadline the workflow records outcomes, then gives up for good.
                    execution_timeout=timedelta(
                        seconds=timeout_s + 2 * options.timeouts.metadata_grace
                    ),
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                )
                outcomes = result.outcomes
            except WorkflowFailureError as err:
                cause = err.cause or err
                outcomes = _unfinished(batch, run_id, f"batch workflow failed: {cause}")
        summary.outcomes.extend(outcomes)
        if on_batch_done:
            on_batch_done(outcomes)

    await asyncio.gather(*(run_batch(i, b) for i, b in enumerate(batched(documents, batch_size))))
    summary.elapsed_s = time.perf_counter() - started
    summary.outcomes.sort(key=lambda o: o.row_number)
    return summary
