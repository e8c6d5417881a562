"""Server-side ingestion of a whole CSV: parse on the io queue, fan out batches.

The CSV is read page by page by the ``parse_csv`` activity, each page is cut
into batches, and each batch runs as a child ``DocumentPipelineWorkflow`` with
a bound on batches in flight. After ``pages_per_run`` pages the workflow
continues as new, carrying its offset and running totals, so a CSV of any
length keeps the event history small.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ContinueAsNewVersioningBehavior

with workflow.unsafe.imports_passed_through():
    from docpipe import steps
    from docpipe.models import (
        CsvPage,
        CsvPageRequest,
        DocumentFailure,
        IngestInput,
        IngestSummary,
        PipelineInput,
        PipelineResult,
        Stage,
        Status,
    )
    from docpipe.workflows.document_pipeline import DocumentPipelineWorkflow

MAX_FAILURES_KEPT = 100


def _next_run_versioning() -> ContinueAsNewVersioningBehavior | None:
    """Where the next run starts: on the deployment's Current version, when versioned.

    Each run is PINNED (the workflow worker's default behaviour when it runs with a
    Build ID), so a run never changes code under its own history; continuing as new
    on the Current version moves an ingestion of any length to a new release at
    a page boundary and drains the old version within one run, without the new
    code ever replaying the old one's history (plain AUTO_UPGRADE would demand
    that, i.e. patching). Only data crosses the boundary: IngestInput must stay
    compatible between releases. Unversioned workers must not ask for it.
    """
    if workflow.info().get_current_deployment_version() is None:
        return None
    return ContinueAsNewVersioningBehavior.AUTO_UPGRADE


@workflow.defn(name="IngestCsvWorkflow")
class IngestCsvWorkflow:
    def __init__(self) -> None:
        self._summary = IngestSummary()

    @workflow.query
    def summary(self) -> IngestSummary:
        """Progress so far (``docpipe watch``): admitted, succeeded, failed, chunks.

        A query only reads state: it never changes what the workflow does next.
        """
        return self._summary

    @workflow.run
    async def run(self, input: IngestInput) -> IngestSummary:
        summary = self._summary = input.summary or IngestSummary()
        if summary.started_at is None:  # the first run; later runs carry it
            summary.started_at = workflow.now().timestamp()
        options = input.options
        gate = asyncio.Semaphore(input.max_batches_in_flight)
        batch_index = input.batches_started
        offset: int | None = input.offset

        async def run_batch(index: int, documents: list) -> None:
            async with gate:
                result: PipelineResult = await workflow.execute_child_workflow(
                    DocumentPipelineWorkflow.run,
                    PipelineInput(run_id=input.run_id, documents=documents, options=options),
                    id=f"{input.run_id}-batch-{index:06d}",
                    task_queue=options.queues.workflow,
                )
            for outcome in result.outcomes:
                if outcome.status == Status.SUCCEEDED:
                    summary.succeeded += 1
                    summary.chunks += outcome.chunk_count or 0
                    summary.without_text += outcome.has_text is False
                else:
                    summary.failed += 1
                    if len(summary.failures) < MAX_FAILURES_KEPT:
                        summary.failures.append(
                            DocumentFailure(
                                outcome.document_id,
                                outcome.failure_stage or Stage.STORE,
                                outcome.failure_reason or "unknown",
                            )
                        )

        for _ in range(input.pages_per_run):
            if offset is None:
                break
            try:
                page: CsvPage = await workflow.execute_activity(
                    steps.PARSE_CSV,
                    CsvPageRequest(
                        input.location, offset, input.page_size, base_dir=input.base_dir
                    ),
                    result_type=CsvPage,
                    task_queue=options.queues.io,
                    start_to_close_timeout=timedelta(seconds=options.timeouts.io_start_to_close),
                    heartbeat_timeout=timedelta(seconds=options.timeouts.heartbeat),
                    retry_policy=steps.IO_RETRY,
                )
            except ActivityError as err:
                cause = err.cause
                if isinstance(cause, ApplicationError) and cause.type == "DocumentError":
                    # The file as a whole is unusable (no url column, wrong bucket):
                    # the ingestion ends with that reason instead of failing blindly.
                    summary.error = cause.message
                    summary.finished_at = workflow.now().timestamp()
                    return summary
                raise
            summary.documents += len(page.documents)
            if page.total is not None:
                summary.total = page.total
            tasks = []
            for start in range(0, len(page.documents), input.batch_size):
                batch = page.documents[start : start + input.batch_size]
                tasks.append(run_batch(batch_index, batch))
                batch_index += 1
            await asyncio.gather(*tasks)
            offset = page.next_offset
            if workflow.info().is_target_worker_deployment_version_changed():
                break  # a new release is Current: hand over at this page boundary

        if offset is not None:
            workflow.continue_as_new(
                replace(input, offset=offset, batches_started=batch_index, summary=summary),
                initial_versioning_behavior=_next_run_versioning(),
            )
        summary.finished_at = workflow.now().timestamp()
        return summary
