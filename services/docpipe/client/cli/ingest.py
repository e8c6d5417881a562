"""`docpipe ingest` and `docpipe watch`: a CSV run server-side, independent of this terminal.

``ingest`` starts the pipeline's IngestCsvWorkflow (a local CSV is uploaded to
the workers' bucket first) and follows it, or leaves it running with
``--detach``; ``watch`` reattaches to it at any time. Ctrl-C only detaches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from docpipe.client.cli.root import (
    Address,
    BatchOptions,
    Namespace,
    Output,
    OutputFormat,
    Strict,
    batch_options,
    cli_settings,
    console,
    err_console,
    print_json,
    screen_for,
)
from docpipe.client.progress_view import document_progress
from docpipe.client.starter import new_run_id

if TYPE_CHECKING:
    from temporalio.client import Client


MaxBatchesInFlight = Annotated[int, typer.Option(min=1, help="At most this many batches at once")]


@batch_options(max_in_flight=20, max_in_flight_option=MaxBatchesInFlight)
def ingest(
    csv: Annotated[
        str, typer.Argument(help="CSV of documents: a local path, s3://bucket/key or http(s) URL")
    ],
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--detach",
            help="Show progress until done, or print the run id and leave it running",
        ),
    ] = True,
    *,
    batch: BatchOptions,
    address: Address = None,
    namespace: Namespace = None,
    output: Output = OutputFormat.table,
) -> None:
    """Run a CSV server-side, independent of this terminal.

    The pipeline's IngestCsvWorkflow reads the CSV and fans out its batches.

    A local CSV is uploaded to the workers' bucket first. --detach prints the run id;
    `docpipe watch RUN_ID` shows its progress at any time."""
    from docpipe.client.ingestion import stage_csv, start_ingestion
    from docpipe.client.reachability import connect_temporal
    from docpipe.client.starter import auto_batch_size, pipeline_options

    settings = cli_settings(address, namespace)
    run_id = new_run_id()

    async def go() -> int:
        client = await connect_temporal(settings)
        staged = await stage_csv(settings, csv)
        size = batch.batch_size or (auto_batch_size(staged.documents) if staged.documents else 10)
        options = pipeline_options(
            settings,
            batch.timeout,
            deadline_s=batch.deadline,
            webhook_url=batch.webhook_url,
            summarize=batch.summarize,
        )
        await start_ingestion(
            client,
            settings,
            staged,
            run_id=run_id,
            options=options,
            batch_size=size,
            max_batches_in_flight=batch.max_in_flight,
        )
        if not wait:
            _report_detached(run_id, staged.location, output)
            return 0
        return await _watch(client, run_id, batch.strict, output)

    _follow_ingestion(go, run_id)


def watch(
    run_id: Annotated[str, typer.Argument(help="The run id `docpipe ingest` printed")],
    strict: Strict = True,
    address: Address = None,
    namespace: Namespace = None,
    output: Output = OutputFormat.table,
) -> None:
    """Reattach to an ingestion: progress, then its summary.

    Works while it runs and after it ended; Ctrl-C leaves it running."""
    from docpipe.client.reachability import connect_temporal

    settings = cli_settings(address, namespace)

    async def go() -> int:
        return await _watch(await connect_temporal(settings), run_id, strict, output)

    _follow_ingestion(go, run_id)


def _follow_ingestion(go: Callable[[], Awaitable[int]], run_id: str) -> NoReturn:
    """Run an ingest/watch coroutine and exit with its status: an ingestion error is one
    line and its own exit code; Ctrl-C leaves the ingestion running and says how to
    watch it again."""
    from docpipe.client.ingestion import IngestionError

    try:
        code = asyncio.run(go())
    except IngestionError as err:
        err_console.print(
            f"docpipe: {err}", style="red", markup=False, highlight=False, soft_wrap=True
        )
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        _report_still_running(run_id)
        raise typer.Exit(130) from None
    raise typer.Exit(code)


async def _watch(client: Client, run_id: str, strict: bool, output: OutputFormat) -> int:
    """Follow the ingestion with the progress bar (on stderr under -o json); its
    summary; the exit status it calls for."""
    from docpipe.client.ingestion import exit_code, follow
    from docpipe.client.progress_view import IngestBar, ingest_summary_json, print_ingest_summary

    with document_progress(screen_for(output)) as progress:
        summary = await follow(client, run_id, IngestBar(progress).update)
    if output is OutputFormat.json:
        print_json(ingest_summary_json(run_id, summary))
    else:
        print_ingest_summary(console, run_id, summary)
    return exit_code(summary, strict=strict)


def _report_detached(run_id: str, location: str, output: OutputFormat) -> None:
    if output is OutputFormat.json:
        print_json({"run_id": run_id, "location": location, "watch": f"docpipe watch {run_id}"})
        return
    console.print(f"ingestion started: {run_id}", highlight=False)
    console.print(f"  reading  {location}", highlight=False)
    console.print(f"  watch    docpipe watch {run_id}", highlight=False)
    console.print(f"  failures docpipe failures --run-id {run_id}", highlight=False)


def _report_still_running(run_id: str) -> None:
    err_console.print(
        f"detached: ingestion {run_id} goes on in the pipeline; docpipe watch {run_id}",
        highlight=False,
    )
