"""`docpipe status`, `failures` and `redrive`: what waits in the queues, what failed,
and running the failed documents again."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from docpipe.client.cli.root import (
    Address,
    BatchOptions,
    Namespace,
    Output,
    OutputFormat,
    StalledAfter,
    batch_options,
    cli_settings,
    console,
    print_json,
    screen_for,
)
from docpipe.client.cli.running import report_summary, run_with_progress
from docpipe.client.queue_health import DEFAULT_GRACE_S
from docpipe.config import Settings

if TYPE_CHECKING:
    from docpipe.client.redrive import RedrivePlan


def status(
    address: Address = None, namespace: Namespace = None, output: Output = OutputFormat.table
) -> None:
    """Show the task queues' backlog and pollers.

    Backlog, backlog age, add and dispatch rates and live pollers of every queue."""
    from docpipe.client.reachability import connect_temporal
    from docpipe.queue_stats import describe_queues

    settings = cli_settings(address, namespace)

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


def failures(
    run_id: RunFilter = None,
    stage: StageFilter = None,
    limit: Limit = 100,
    output: Output = OutputFormat.table,
) -> None:
    """List failed documents and why.

    The dead letter, from PostgreSQL: each failed document with the stage it
    failed at and the reason."""
    settings = cli_settings()
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


@batch_options(timeout=120.0, webhook=False, summarize=False)
def redrive(
    run_id: RunFilter = None,
    stage: StageFilter = None,
    limit: Limit = 10_000,
    *,
    batch: BatchOptions,
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

    settings = cli_settings(address, namespace)
    plan = plan_redrive(asyncio.run(_failed_rows(settings, run_id, stage, limit)))
    screen = screen_for(output)
    if dry_run:
        _print_redrive_plan(plan, output)
        return
    for r in plan.not_redrivable:
        screen.print(
            f"[yellow]not re-driven[/yellow] row {r['row_number']}: {r['reason']} (fix the CSV row)"
        )
    if not plan.documents:
        screen.print("nothing to re-drive")
        raise typer.Exit(1 if batch.strict and plan.not_redrivable else 0)
    summary = asyncio.run(
        run_with_progress(
            settings, plan.documents, batch, stalled_after=stalled_after, screen=screen
        )
    )
    report_summary(summary, output)
    if batch.strict and (summary.failed or plan.not_redrivable):
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
