"""The `docpipe` command.

docpipe start --csv-file F   run a CSV through a running pipeline (workers elsewhere)
docpipe run F                the embedded default: start everything locally, run F, stop
docpipe worker KIND          run one worker (workflow, cpu, gpu, io)
docpipe status               backlog, age, rates and live pollers of every queue
docpipe search QUERY         the stored chunks that best answer QUERY (vector, text, hybrid)
docpipe show ID-OR-SOURCE    everything recorded about one document
docpipe serve                the same read path as an HTTP API
docpipe codec-server         decrypt payloads for the Temporal UI and CLI (remote codec)

While documents run, nothing waits in silence: `docpipe run` restarts a local
worker that dies (and stops the run, naming the worker and its log, if it
keeps crashing); `docpipe start` and `docpipe redrive`, whose workers run
elsewhere, warn when a queue has work waiting and no worker polling it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from docpipe.client.progress_view import document_progress
from docpipe.client.queue_health import DEFAULT_GRACE_S, watch_queues
from docpipe.client.starter import RunSummary, new_run_id, run_documents
from docpipe.config import ConfigError, Settings, load_settings
from docpipe.csv_input import CsvFormatError, parse_documents_csv
from docpipe.models import DocumentOutcome, DocumentRef
from docpipe.process_exit import run_then_exit

if TYPE_CHECKING:
    from temporalio.client import Client

    from docpipe.client.redrive import RedrivePlan
    from docpipe.local.supervisor import WorkerSupervisor
    from docpipe.retrieval.filters import SearchRequest
    from docpipe.retrieval.searcher import SearchHit

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
console = Console()
err_console = Console(stderr=True)


class WorkerKind(StrEnum):
    workflow = "workflow"
    cpu = "cpu"
    gpu = "gpu"
    io = "io"


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


Output = Annotated[
    OutputFormat,
    typer.Option(
        "--output", "-o", help="table for people, json for programs (same data, on stdout)"
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Temporal frontend host:port [default: TEMPORAL_ADDRESS, else localhost:7233]",
        show_default=False,
    ),
]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="Temporal namespace [default: TEMPORAL_NAMESPACE, else default]",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"docpipe {version('docpipe')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """docpipe: a document pipeline on Temporal, split by the resource each step needs.

    Exit status: 0 done; 1 some documents failed (or nothing found); 2 bad usage or
    configuration; 3 a service (Temporal, PostgreSQL, Chroma) could not be reached.
    """


def _settings(address: str | None = None, namespace: str | None = None) -> Settings:
    overrides: dict[str, object] = {}
    if address:
        overrides["temporal_host"] = address
    if namespace:
        overrides["temporal_namespace"] = namespace
    try:
        settings = load_settings(**overrides)
    except ConfigError as err:
        err_console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    if "log_level" in settings.model_fields_set:
        # The CLI's own output is its progress and summary: logs only when LOG_LEVEL asks.
        from docpipe.workers.common import configure_logging

        configure_logging(settings.log_level)
    return settings


def _read_csv(path: Path) -> list[DocumentRef]:
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
        return parse_documents_csv(text, base_dir=path.resolve().parent, origin=str(path.resolve()))
    except OSError as err:
        err_console.print(f"[red]cannot read {path}: {err.strerror}[/red]")
        raise typer.Exit(2) from None
    except CsvFormatError as err:
        err_console.print(f"[red]{path}: {err}[/red]")
        raise typer.Exit(2) from None


def summary_json(summary: RunSummary) -> dict[str, object]:
    """The run summary as ``-o json`` prints it: the same figures as the table."""
    return {
        "run_id": summary.run_id,
        "documents": summary.documents,
        "succeeded": summary.succeeded_count,
        "without_text": summary.without_text,
        "failed": summary.failed_count,
        "chunks": summary.chunks,
        "elapsed_s": round(summary.elapsed_s, 3),
        "documents_per_second": round(summary.documents_per_second, 3),
        "failures": [
            {
                "document_id": o.document_id,
                "row": o.row_number,
                "source": o.source,
                "stage": str(o.failure_stage) if o.failure_stage else None,
                "reason": o.failure_reason,
            }
            for o in summary.failed
        ],
    }


def print_json(value: object) -> None:
    """JSON on stdout, nothing else there: progress and warnings go to stderr."""
    from docpipe.retrieval.render import json_text

    print(json_text(value), flush=True)


def report_summary(summary: RunSummary, output: OutputFormat) -> None:
    if output is OutputFormat.json:
        print_json(summary_json(summary))
    else:
        print_summary(summary)


def print_summary(summary: RunSummary) -> None:
    table = Table(title=f"docpipe run {summary.run_id}", show_header=False)
    table.add_row("documents", str(summary.documents))
    table.add_row("[green]succeeded[/green]", str(summary.succeeded_count))
    if summary.without_text:
        table.add_row("  of which without text", str(summary.without_text))
    table.add_row("[red]failed[/red]", str(summary.failed_count))
    table.add_row("chunks embedded", str(summary.chunks))
    table.add_row("elapsed", f"{summary.elapsed_s:.1f} s")
    table.add_row("documents/s", f"{summary.documents_per_second:.2f}")
    if summary.elapsed_s > 0:
        table.add_row("chunks/s", f"{summary.chunks / summary.elapsed_s:.1f}")
    console.print(table)
    if summary.failed:
        failures = Table(title="failed documents", show_lines=False)
        for column in ("row", "source", "stage", "reason"):
            failures.add_column(column, overflow="fold")
        for outcome in summary.failed:
            failures.add_row(
                str(outcome.row_number),
                outcome.source or "-",
                str(outcome.failure_stage or "-"),
                outcome.failure_reason or "-",
            )
        console.print(failures)


def warn(line: str) -> None:
    """A supervisor or queue-watch line, in yellow (above the progress bar while
    one is live); printed as is: a log tail may hold text that looks like markup."""
    console.print(line, style="yellow", markup=False, highlight=False)


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


async def _start(
    settings: Settings,
    documents: list[DocumentRef],
    batch_size: int | None,
    timeout: float,
    max_in_flight: int,
    webhook_url: str = "",
    summarize: bool = False,
    deadline: float | None = None,
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
    watcher = None
    if stalled_after:
        interval_s = min(5.0, max(0.5, stalled_after / 4))
        watcher = asyncio.create_task(
            watch_queues(client, settings, warn, interval_s, grace_s=stalled_after)
        )
    try:
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
                batch_size=batch_size,
                timeout_s=timeout,
                deadline_s=deadline,
                max_in_flight=max_in_flight,
                run_id=run_id,
                webhook_url=webhook_url,
                summarize=summarize,
                on_batch_done=on_batch_done,
                # Failures are kept for the summary; successes are in PostgreSQL.
                keep_outcomes=False,
            )
            if supervisor is None:
                return await run
            return await _unless_given_up(run, supervisor, client, run_id)
    finally:
        if watcher is not None:  # a watcher never ends the run: it ends with it
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


CsvArg = Annotated[
    Path, typer.Option("--csv-file", "-f", help="CSV of documents (see testdata/README.md)")
]
BatchSize = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=1000,
        help="Documents per workflow and per activity call [default: from the CSV's size, "
        "10 to 50]",
        show_default=False,
    ),
]
Timeout = Annotated[
    float,
    typer.Option(
        min=1,
        help="Seconds one step of a batch may run before it counts as stuck and is retried "
        "(plus an allowance per chunk, page and MB); time waiting in a queue never counts",
    ),
]
Deadline = Annotated[
    float | None,
    typer.Option(
        min=1,
        help="Optional: seconds a batch may take end to end, queue waits included, before "
        "its unfinished documents fail with stage 'timeout' (off by default)",
    ),
]
MaxInFlight = Annotated[
    int,
    typer.Option(
        min=1, help="At most this many batches at once (fewer while the workers' queues are busy)"
    ),
]
Strict = Annotated[bool, typer.Option(help="Exit non-zero if any document failed")]
Summarize = Annotated[bool, typer.Option(help="Also write a summary of each document")]
WebhookUrl = Annotated[
    str, typer.Option(help="POST each document's result here (signed with WEBHOOK_SECRET)")
]
StalledAfter = Annotated[
    float,
    typer.Option(
        min=0,
        help="Warn when a task queue has had work waiting and no live worker polling it for "
        "this many seconds (is a worker type not running?); 0: don't watch",
    ),
]


@app.command()
def start(
    csv_file: CsvArg,
    batch_size: BatchSize = None,
    timeout: Timeout = 120.0,
    deadline: Deadline = None,
    max_in_flight: MaxInFlight = 50,
    strict: Strict = True,
    webhook_url: WebhookUrl = "",
    summarize: Summarize = False,
    stalled_after: StalledAfter = DEFAULT_GRACE_S,
    address: Address = None,
    namespace: Namespace = None,
    output: Output = OutputFormat.table,
) -> None:
    """Run a CSV through the running pipeline.

    The workers run elsewhere (containers, pods, `docpipe worker`); this admits the
    CSV's documents in batches as the workers drain them and prints a summary."""
    settings = _settings(address, namespace)
    documents = _read_csv(csv_file)
    summary = asyncio.run(
        _start(
            settings,
            documents,
            batch_size,
            timeout,
            max_in_flight,
            webhook_url,
            summarize,
            deadline=deadline,
            stalled_after=stalled_after,
            screen=err_console if output is OutputFormat.json else None,
        )
    )
    report_summary(summary, output)
    if strict and summary.failed:
        raise typer.Exit(1)


@app.command()
def run(
    csv_file: Annotated[Path, typer.Argument(help="CSV of documents")] = Path(
        "testdata/documents.csv"
    ),
    data_dir: Annotated[Path, typer.Option(help="Where the local stack keeps its data")] = Path(
        ".docpipe"
    ),
    batch_size: BatchSize = None,
    timeout: Timeout = 300.0,
    deadline: Deadline = None,
    max_in_flight: MaxInFlight = 50,
    strict: Strict = True,
    summarize: Summarize = False,
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

    documents = _read_csv(csv_file)
    data_dir = data_dir.resolve()
    # Local files are read only inside LOCAL_SOURCE_ROOT; by default the CSV's
    # own folder, so a row cannot name /proc/self/environ or ~/.ssh.
    source_roots = _settings().local_source_roots or (csv_file.resolve().parent,)
    screen = err_console if output is OutputFormat.json else console
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
                    return await _start(
                        settings,
                        documents,
                        batch_size,
                        timeout,
                        max_in_flight,
                        summarize=summarize,
                        deadline=deadline,
                        supervisor=supervisor,
                        screen=screen,
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
    if strict and summary.failed:
        raise typer.Exit(1)


async def _failed_rows(
    settings: Settings, run_id: str | None, stage: str | None, limit: int
) -> list:
    from docpipe.client.reachability import open_metadata

    async with open_metadata(settings) as metadata:
        await metadata.migrate()  # a database no worker has written to yet has no tables
        return await metadata.failures(limit=limit, run_id=run_id, stage=stage)


RunFilter = Annotated[str | None, typer.Option(help="Only this run's documents")]
StageFilter = Annotated[str | None, typer.Option(help="Only documents that failed at this stage")]
Limit = Annotated[int, typer.Option(min=1, help="At most this many documents")]


@app.command()
def failures(
    run_id: RunFilter = None,
    stage: StageFilter = None,
    limit: Limit = 100,
    output: Output = OutputFormat.table,
) -> None:
    """List failed documents and why.

    The dead letter, from PostgreSQL: each failed document with the stage it
    failed at and the reason."""
    settings = _settings()
    rows = asyncio.run(_failed_rows(settings, run_id, stage, limit))
    if output is OutputFormat.json:
        print_json(rows)
        return
    table = Table(title=f"failed documents ({len(rows)})")
    for column in ("document", "row", "source", "stage", "reason", "attempts", "run"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r["document_id"], str(r["row_number"]), r["source"] or "-", r["stage"] or "-",
            r["reason"] or "-", str(r["attempts"]), r["run_id"],
        )  # fmt: skip
    console.print(table)


@app.command()
def redrive(
    run_id: RunFilter = None,
    stage: StageFilter = None,
    limit: Limit = 10_000,
    batch_size: BatchSize = None,
    timeout: Timeout = 120.0,
    deadline: Deadline = None,
    max_in_flight: MaxInFlight = 50,
    strict: Strict = True,
    stalled_after: StalledAfter = DEFAULT_GRACE_S,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be re-driven, start nothing")
    ] = False,
    address: Address = None,
    namespace: Namespace = None,
    output: Output = OutputFormat.table,
) -> None:
    """Run failed documents again.

    From their source, with the same ids, so rows, objects and vectors are
    updated in place. --dry-run lists them without starting anything."""
    from docpipe.client.redrive import plan_redrive

    settings = _settings(address, namespace)
    plan = plan_redrive(asyncio.run(_failed_rows(settings, run_id, stage, limit)))
    screen = err_console if output is OutputFormat.json else console
    if dry_run:
        _print_redrive_plan(plan, output)
        return
    for r in plan.not_redrivable:
        screen.print(
            f"[yellow]not re-driven[/yellow] row {r['row_number']}: {r['reason']} (fix the CSV row)"
        )
    if not plan.documents:
        screen.print("nothing to re-drive")
        raise typer.Exit(1 if strict and plan.not_redrivable else 0)
    summary = asyncio.run(
        _start(
            settings,
            plan.documents,
            batch_size,
            timeout,
            max_in_flight,
            deadline=deadline,
            stalled_after=stalled_after,
            screen=screen,
        )
    )
    report_summary(summary, output)
    if strict and (summary.failed or plan.not_redrivable):
        raise typer.Exit(1)


def _print_redrive_plan(plan: RedrivePlan, output: OutputFormat) -> None:
    would = [
        {"document_id": d.document_id, "row": d.row_number, "source": d.source}
        for d in plan.documents
    ]
    skipped = [
        {"document_id": r["document_id"], "row": r["row_number"], "reason": r["reason"]}
        for r in plan.not_redrivable
    ]
    if output is OutputFormat.json:
        print_json({"would_redrive": would, "not_redrivable": skipped})
        return
    table = Table(title=f"would re-drive {len(would)} documents (dry run: nothing started)")
    for column in ("document", "row", "source"):
        table.add_column(column, overflow="fold")
    for item in would:
        table.add_row(item["document_id"], str(item["row"]), item["source"])
    console.print(table)
    for item in skipped:
        console.print(f"[yellow]not re-drivable[/yellow] row {item['row']}: {item['reason']}")


Api = Annotated[
    str | None,
    typer.Option(
        "--api",
        envvar="DOCPIPE_API_URL",
        help="Ask a running `docpipe serve` at this URL instead of the stores",
        show_default=False,
    ),
]


class SearchModeChoice(StrEnum):
    vector = "vector"
    text = "text"
    hybrid = "hybrid"


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for, in words")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many chunks")] = 10,
    mode: Annotated[
        SearchModeChoice,
        typer.Option(help="vector: meaning (Chroma); text: words (PostgreSQL); hybrid: both"),
    ] = SearchModeChoice.hybrid,
    tag: Annotated[str | None, typer.Option(help="Only documents with this tag")] = None,
    language: Annotated[str | None, typer.Option(help="Only this language (ISO 639-1)")] = None,
    type_: Annotated[
        str | None, typer.Option("--type", help="Only this MIME type, e.g. text/html")
    ] = None,
    api: Api = None,
    output: Output = OutputFormat.table,
) -> None:
    """Search what was ingested.

    Returns the chunks that best answer QUERY with their document's title and
    source: by meaning (vector), by words (text) or both fused (hybrid)."""
    from docpipe.retrieval.filters import BadSearch, search_request
    from docpipe.retrieval.render import hits_table, json_text

    try:
        request = search_request(
            query, k=k, mode=mode.value, tag=tag, language=language, content_type=type_
        )
    except BadSearch as err:
        err_console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    try:
        if api:
            from docpipe.retrieval.remote import DocpipeApi

            hits = asyncio.run(DocpipeApi(api).search(request))
        else:
            hits = asyncio.run(_search_stores(_settings(), request))
    except BadSearch as err:  # the API server's 422
        err_console.print(f"[red]{err}[/red]", highlight=False)
        raise typer.Exit(2) from None
    if output is OutputFormat.json:
        print(json_text({"query": request.query, "mode": request.mode.value, "results": hits}))
    else:
        console.print(hits_table(request.query, request.mode.value, hits))


async def _search_stores(settings: Settings, request: SearchRequest) -> list[SearchHit]:
    from docpipe.retrieval.service import open_read_path

    async with open_read_path(settings) as read_path:
        return await read_path.search(request)


async def _show_from_stores(settings: Settings, reference: str) -> dict | None:
    from docpipe.retrieval.service import open_read_path

    async with open_read_path(settings) as read_path:
        return await read_path.show(reference)


@app.command()
def show(
    document: Annotated[str, typer.Argument(help="A document id, or its source (URL or path)")],
    api: Api = None,
    output: Output = OutputFormat.table,
) -> None:
    """Show one document's record.

    Status, type, language, classification, quality, duplicates, image
    information, summary, chunks, object keys, attempts and timings."""
    from docpipe.retrieval.lookup import sections
    from docpipe.retrieval.render import json_text, record_view

    if api:
        from docpipe.retrieval.remote import DocpipeApi

        found = asyncio.run(DocpipeApi(api).show(document))
    else:
        found = asyncio.run(_show_from_stores(_settings(), document))
    if found is None:
        err_console.print(
            f"[red]no document {document!r}: not an id or source docpipe stored[/red]"
        )
        raise typer.Exit(1)
    if output is OutputFormat.json:
        print(json_text(found))
    else:
        console.print(record_view(sections(found)))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a container)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    request_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds one request may take (then 504)")
    ] = 10.0,
) -> None:
    """Serve search and lookup over HTTP.

    GET /search, /documents/{id}, /documents?source=, /healthz; the OpenAPI
    schema is at /openapi.json and browsable at /docs."""
    import uvicorn

    from docpipe.retrieval.api import create_app

    settings = _settings()
    app_ = create_app(settings, request_timeout_s=request_timeout)
    uvicorn.run(app_, host=host, port=port, log_level=settings.log_level.lower())


@app.command()
def worker(kind: Annotated[WorkerKind, typer.Argument(help="Which worker to run")]) -> None:
    """Run one worker (what each image runs).

    Polls its task queue until SIGTERM or SIGINT, then finishes what it holds."""
    import importlib

    module = importlib.import_module(f"docpipe.workers.{kind.value}")
    module.main()


@app.command()
def status(
    address: Address = None, namespace: Namespace = None, output: Output = OutputFormat.table
) -> None:
    """Show the task queues' backlog and pollers.

    Backlog, backlog age, add and dispatch rates and live pollers of every queue."""
    from docpipe.client.reachability import connect_temporal
    from docpipe.queue_stats import describe_queues

    settings = _settings(address, namespace)

    async def go() -> list:
        client = await connect_temporal(settings)
        return await describe_queues(
            client,
            settings.workflow_task_queue,
            [settings.cpu_task_queue, settings.gpu_task_queue, settings.io_task_queue],
        )

    stats = asyncio.run(go())
    if output is OutputFormat.json:
        print_json(stats)
        return
    target = settings.temporal_connection()
    table = Table(title=f"task queues on {target.address} ({target.namespace})")
    for column in (
        "queue",
        "tasks",
        "backlog",
        "backlog age",
        "add/s",
        "dispatch/s",
        "live pollers",
    ):
        table.add_column(column, justify="right" if column != "queue" else "left")
    for s in stats:
        table.add_row(
            s.queue,
            s.kind,
            str(s.backlog_count),
            f"{s.backlog_age_s:.1f} s",
            f"{s.add_rate:.2f}",
            f"{s.dispatch_rate:.2f}",
            str(s.live_pollers),
        )
    console.print(table)


@app.command("codec-server")
def codec_server(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 in a container).")
    ] = "127.0.0.1",
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            help="Origin of a Temporal UI allowed to call it from a browser, e.g. "
            "http://localhost:8233 (repeatable).",
        ),
    ] = None,
) -> None:
    """Decode payloads for the Temporal UI and CLI.

    Temporal's remote codec protocol, with PAYLOAD_ENCRYPTION_KEYS; requests must
    carry CODEC_SERVER_TOKEN when it is set."""
    from docpipe.encryption.codec import EncryptionCodec
    from docpipe.encryption.codec_server import CodecServerConfig, serve
    from docpipe.workers.common import configure_logging

    settings = _settings()
    keyring = settings.payload_keyring()
    if keyring is None:
        err_console.print(
            "[red]PAYLOAD_ENCRYPTION_KEYS (or PAYLOAD_ENCRYPTION_KEYS_FILE) is not set: "
            "there are no keys to decode with[/red]"
        )
        raise typer.Exit(2)
    configure_logging(settings.log_level)
    token = settings.codec_server_token
    config = CodecServerConfig(
        namespace=settings.temporal_connection().namespace,
        cors_origins=frozenset(origin.rstrip("/") for origin in cors_origin or ()),
        token=token.get_secret_value() if token is not None else None,
    )
    serve(EncryptionCodec(keyring), config, host, port)


# -- server-side ingestion (docpipe.client.ingestion) ---------------------------------------


@app.command()
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
    batch_size: BatchSize = None,
    timeout: Timeout = 120.0,
    deadline: Deadline = None,
    max_in_flight: Annotated[
        int, typer.Option(min=1, help="At most this many batches at once")
    ] = 20,
    strict: Strict = True,
    webhook_url: WebhookUrl = "",
    summarize: Summarize = False,
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

    settings = _settings(address, namespace)
    run_id = new_run_id()

    async def go() -> int:
        client = await connect_temporal(settings)
        staged = await stage_csv(settings, csv)
        size = batch_size or (auto_batch_size(staged.documents) if staged.documents else 10)
        options = pipeline_options(
            settings, timeout, deadline_s=deadline, webhook_url=webhook_url, summarize=summarize
        )
        await start_ingestion(
            client,
            settings,
            staged,
            run_id=run_id,
            options=options,
            batch_size=size,
            max_batches_in_flight=max_in_flight,
        )
        if not wait:
            _report_detached(run_id, staged.location, output)
            return 0
        return await _watch(client, run_id, strict, output)

    _follow_ingestion(go, run_id)


@app.command()
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

    settings = _settings(address, namespace)

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

    screen = err_console if output is OutputFormat.json else console
    with document_progress(screen) as progress:
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


def main() -> None:  # pragma: no cover - console script entry
    """``docpipe``: the CLI, ended without the Temporal client's crash at exit."""
    run_then_exit(_app_reporting_unreachable)


def _app_reporting_unreachable() -> None:
    """The app; a backend that is down is one line on stderr and exit status 3, a
    configuration error found late (when connecting) one line and status 2."""
    from docpipe.client.extras import MissingExtra, missing_extra
    from docpipe.client.reachability import EXIT_UNREACHABLE, ServiceUnreachable

    try:
        app(prog_name="docpipe")
    except ServiceUnreachable as err:
        err_console.print(f"[red]docpipe: {err}[/red]", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_UNREACHABLE) from None
    except (MissingExtra, ModuleNotFoundError) as err:
        # A client-only install ran a command that needs an extra: say which.
        missing = err if isinstance(err, MissingExtra) else missing_extra(err.name)
        if missing is None:
            raise
        err_console.print(
            f"docpipe: {missing}", style="red", markup=False, highlight=False, soft_wrap=True
        )
        raise SystemExit(2) from None
    except ConfigError as err:  # e.g. a Temporal profile named but not found
        err_console.print(f"[red]docpipe: {err}[/red]", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
