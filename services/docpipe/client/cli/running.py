"""`docpipe start` and `docpipe run`: a CSV through the pipeline, with a progress bar.

``start`` admits the documents to workers that run elsewhere and warns about
a queue that has work and nobody polling it; ``run`` starts the local stack
and all four workers first, and restarts a worker that dies (stopping the
run, naming the worker and its log, if it keeps crashing). Both end with
the same summary; ``redrive`` runs failed documents the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from docpipe.client.cli.root import (
    Address,
    BatchOptions,
    CsvArg,
    Namespace,
    Output,
    OutputFormat,
    StalledAfter,
    batch_options,
    cli_settings,
    console,
    err_console,
    print_json,
    read_csv,
    screen_for,
    warn,
)
from docpipe.client.progress_view import document_progress, print_run_summary, run_summary_json
from docpipe.client.queue_health import DEFAULT_GRACE_S, health_listener
from docpipe.client.queue_readings import QueueReadings
from docpipe.client.starter import RunSummary, new_run_id, run_documents
from docpipe.config import Settings
from docpipe.models import DocumentOutcome, DocumentRef

if TYPE_CHECKING:
    from temporalio.client import Client

    from docpipe.local.supervisor import WorkerSupervisor


def report_summary(summary: RunSummary, output: OutputFormat) -> None:
    if output is OutputFormat.json:
        print_json(run_summary_json(summary))
    else:
        print_run_summary(console, summary)


class WorkerGaveUp(Exception):
    """The supervisor stopped restarting these workers, so their queues' work
    would wait forever: the run was stopped instead."""

    def __init__(self, logs: Mapping[str, Path]) -> None:
        super().__init__(f"gave up on the {', '.join(logs)} worker(s)")
        self.logs = dict(logs)
        """Worker name -> its log file."""


GAVE_UP_CHECK_S = 0.2


async def _unless_given_up(
    run: Awaitable[RunSummary], supervisor: WorkerSupervisor, client: Client, run_id: str
) -> RunSummary:
    """``run``, raced against the supervisor giving up on a worker: then the run is
    cancelled, its unfinished batch workflows terminated, and WorkerGaveUp raised."""
    task = asyncio.ensure_future(run)
    try:
        while not task.done() and not supervisor.gave_up:
            await asyncio.wait({task}, timeout=GAVE_UP_CHECK_S)
        if task.done():
            return task.result()
    finally:
        if not task.done():  # given up on a worker, or we were cancelled (Ctrl-C)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await _terminate_run(client, run_id, "a worker it needs kept crashing (see the CLI's output)")
    workers = supervisor.workers.by_name
    raise WorkerGaveUp({name: workers[name].log_path for name in supervisor.gave_up})


async def _terminate_run(client: Client, run_id: str, reason: str, timeout_s: float = 15) -> None:
    """Best effort: terminate the run's batch workflows still running, so that a
    persistent stack's next start does not resume work nobody waits for."""

    async def terminate_all() -> None:
        query = f'WorkflowId STARTS_WITH "{run_id}-batch-" AND ExecutionStatus = "Running"'
        async for execution in client.list_workflows(query):
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            with contextlib.suppress(Exception):  # it may have ended meanwhile
                await handle.terminate(reason=reason)

    with contextlib.suppress(Exception):  # the stack is stopped next either way
        await asyncio.wait_for(terminate_all(), timeout_s)


async def run_with_progress(
    settings: Settings,
    documents: list[DocumentRef],
    options: BatchOptions,
    *,
    supervisor: WorkerSupervisor | None = None,
    stalled_after: float | None = None,
    screen: Console | None = None,
) -> RunSummary:
    """Run ``documents`` with a progress bar.

    ``supervisor`` (local workers, ``docpipe run``): its lines are printed, and
    the run ends with :class:`WorkerGaveUp` if it gives up on a worker.
    ``stalled_after`` (external workers): watch the queues and warn about one
    that has had work and no live poller for that many seconds (None or 0: off).
    ``screen``: where the progress bar goes (stderr when stdout carries JSON).
    """
    from docpipe.client.reachability import connect_temporal

    client = await connect_temporal(settings)
    # One reader of the queues for the run: admission, and the stalled-queue warnings.
    readings = QueueReadings(client, settings)
    if stalled_after:
        readings.every_s = min(readings.every_s, max(0.5, stalled_after / 4))
        readings.listeners.append(health_listener(settings, warn, grace_s=stalled_after))
    with document_progress(screen or console) as progress:
        task = progress.add_task("documents", total=len(documents), failed=0, chunks=0)
        failed = chunks = 0

        def on_batch_done(outcomes: list[DocumentOutcome]) -> None:
            nonlocal failed, chunks
            failed += sum(1 for o in outcomes if o.status == "failed")
            chunks += sum(o.chunk_count or 0 for o in outcomes if o.status == "succeeded")
            progress.update(task, advance=len(outcomes), failed=failed, chunks=chunks)

        run_id = new_run_id()
        run = run_documents(
            client,
            settings,
            documents,
            batch_size=options.batch_size,
            timeout_s=options.timeout,
            deadline_s=options.deadline,
            max_in_flight=options.max_in_flight,
            run_id=run_id,
            webhook_url=options.webhook_url,
            summarize=options.summarize,
            on_batch_done=on_batch_done,
            # Failures are kept for the summary; successes are in PostgreSQL.
            keep_outcomes=False,
            readings=readings,
        )
        if supervisor is None:
            return await run
        return await _unless_given_up(run, supervisor, client, run_id)


@batch_options(timeout=120.0)
def start(
    csv_file: CsvArg,
    batch: BatchOptions,
    stalled_after: StalledAfter = DEFAULT_GRACE_S,
    address: Address = None,
    namespace: Namespace = None,
    output: Output = OutputFormat.table,
) -> None:
    """Run a CSV through the running pipeline.

    The workers run elsewhere (containers, pods, `docpipe worker`); this admits the
    CSV's documents in batches as the workers drain them and prints a summary."""
    settings = cli_settings(address, namespace)
    documents = read_csv(csv_file)
    summary = asyncio.run(
        run_with_progress(
            settings, documents, batch, stalled_after=stalled_after, screen=screen_for(output)
        )
    )
    report_summary(summary, output)
    if batch.strict and summary.failed:
        raise typer.Exit(1)


@batch_options(timeout=300.0, webhook=False)
def run(
    csv_file: Annotated[Path, typer.Argument(help="CSV of documents")] = Path(
        "testdata/documents.csv"
    ),
    data_dir: Annotated[Path, typer.Option(help="Where the local stack keeps its data")] = Path(
        ".docpipe"
    ),
    *,
    batch: BatchOptions,
    output: Output = OutputFormat.table,
) -> None:
    """Run a CSV on a local stack started here.

    The embedded default: starts Temporal, PostgreSQL, Chroma, an object store and
    all four workers, runs the CSV, prints the summary and where the results are,
    and stops everything. Local files are read only inside the CSV's folder."""
    from docpipe.local.devstack import DevStack
    from docpipe.local.supervisor import WorkerSupervisor
    from docpipe.local.workers import LocalWorkers, all_task_queues, wait_for_pollers
    from docpipe.workers.common import connect

    documents = read_csv(csv_file)
    data_dir = data_dir.resolve()
    # Local files are read only inside LOCAL_SOURCE_ROOT; by default the CSV's
    # own folder, so a row cannot name /proc/self/environ or ~/.ssh.
    source_roots = cli_settings().local_source_roots or (csv_file.resolve().parent,)
    screen = screen_for(output)
    screen.print(f"[bold]starting the local stack[/bold] in {data_dir} ...")
    with DevStack(
        data_dir, persistent=True, object_store="local", local_source_roots=source_roots
    ) as stack:
        settings = stack.settings()
        with LocalWorkers(data_dir / "logs", stack.env) as workers:
            workers.start()

            async def go() -> RunSummary:
                client = await connect(settings)
                with screen.status("waiting for the workers (the GPU worker loads its model) ..."):
                    await wait_for_pollers(client, all_task_queues(settings), workers)
                # From here on a worker that exits is restarted, as its pod would be.
                async with WorkerSupervisor(workers, warn) as supervisor:
                    screen.print(
                        f"workers polling; running {len(documents)} documents "
                        "(a worker that exits is restarted)"
                    )
                    return await run_with_progress(
                        settings, documents, batch, supervisor=supervisor, screen=screen
                    )

            try:
                summary = asyncio.run(go())
            except WorkerGaveUp as stopped:
                for name, log in stopped.logs.items():
                    err_console.print(
                        f"[red]run stopped: the {name} worker kept crashing and is not restarted "
                        f"again, so the work waiting for it would wait forever; see its log: "
                        f"{log}[/red]",
                        highlight=False,
                    )
                raise typer.Exit(1) from None
        report_summary(summary, output)
        screen.print(
            "\n[bold]results[/bold]\n"
            f"  metadata  PostgreSQL {settings.metadata_db_name} (table documents) in {data_dir / 'postgres'}\n"
            f"  vectors   Chroma collection {settings.vector_collection} in {data_dir / 'chroma'}\n"
            f"  objects   {settings.s3_endpoint}\n"
            f"  logs      {data_dir / 'logs'}"
        )
    if batch.strict and summary.failed:
        raise typer.Exit(1)
