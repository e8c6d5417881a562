"""What a run looks like at the terminal: one progress bar for every way of running.

``docpipe start`` and ``docpipe run`` count batches as they finish on the
client; ``docpipe ingest --wait`` and ``docpipe watch`` read the server-side
ingestion's totals. Both draw the same bar from here, so a person sees the
same thing however the documents were sent, and the same summary table at
the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from docpipe.models import IngestSummary

if TYPE_CHECKING:
    from docpipe.client.starter import RunSummary


class RateColumn(ProgressColumn):
    """Documents/s and chunks/s so far (the pipeline's pace, not one batch's)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if elapsed <= 0 or not task.completed:
            return Text("", style="progress.data.speed")
        chunks = task.fields.get("chunks", 0)
        return Text(
            f"{task.completed / elapsed:.1f} docs/s {chunks / elapsed:.0f} chunks/s",
            style="progress.data.speed",
        )


def document_progress(console: Console) -> Progress:
    """The documents bar: done of total, failed, pace, elapsed and eta.

    Its task takes the fields ``failed`` and ``chunks``.
    """
    return Progress(
        TextColumn("[bold]documents"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class IngestBar:
    """The documents bar fed by an ingestion's totals (each a full snapshot).

    The clock starts when the ingestion started, not when we attached, so the
    elapsed time and the pace are the ingestion's own after a reattach.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def update(self, summary: IngestSummary) -> None:
        done = summary.succeeded + summary.failed
        total = summary.total  # None until the first page is read: rich pulses the bar
        if self.task is None:
            self.task = self.progress.add_task(
                "documents", total=total, failed=summary.failed, chunks=summary.chunks
            )
            if summary.started_at is not None:
                task = next(t for t in self.progress.tasks if t.id == self.task)
                running_s = max(0.0, time.time() - summary.started_at)
                task.start_time = self.progress.get_time() - running_s
        if summary.finished_at is not None and summary.started_at is not None:
            task = next(t for t in self.progress.tasks if t.id == self.task)
            task.stop_time = task.start_time + (summary.finished_at - summary.started_at)  # type: ignore[operator]
        self.progress.update(
            self.task, total=total, completed=done, failed=summary.failed, chunks=summary.chunks
        )


def elapsed_s(summary: IngestSummary) -> float:
    """Seconds the ingestion took (so far, while it runs), by the workflow's clock."""
    if summary.started_at is None:
        return 0.0
    end = summary.finished_at if summary.finished_at is not None else time.time()
    return max(0.0, end - summary.started_at)


@dataclass(frozen=True)
class _Figures:
    """The figures every way of running ends with: one row each in the summary
    table, the same keys (in this order) in its ``-o json``."""

    documents: int
    succeeded: int
    without_text: int
    failed: int
    chunks: int
    elapsed_s: float
    documents_per_second: float

    @classmethod
    def of_ingestion(cls, summary: IngestSummary) -> _Figures:
        """An ingestion's figures; its pace as reported (3 decimals), in the table too."""
        seconds = elapsed_s(summary)
        done = summary.succeeded + summary.failed
        return cls(
            summary.documents,
            summary.succeeded,
            summary.without_text,
            summary.failed,
            summary.chunks,
            round(seconds, 3),
            round(done / seconds, 3) if seconds > 0 else 0.0,
        )

    @classmethod
    def of_run(cls, summary: RunSummary) -> _Figures:
        return cls(
            summary.documents,
            summary.succeeded_count,
            summary.without_text,
            summary.failed_count,
            summary.chunks,
            summary.elapsed_s,
            summary.documents_per_second,
        )

    def as_json(self) -> dict[str, object]:
        """The figures by name; the pace to 3 decimals."""
        figures: dict[str, object] = asdict(self)
        figures["elapsed_s"] = round(self.elapsed_s, 3)
        figures["documents_per_second"] = round(self.documents_per_second, 3)
        return figures

    def table(self, title: str) -> Table:
        table = Table(title=title, show_header=False)
        table.add_row("documents", str(self.documents))
        table.add_row("[green]succeeded[/green]", str(self.succeeded))
        if self.without_text:
            table.add_row("  of which without text", str(self.without_text))
        table.add_row("[red]failed[/red]", str(self.failed))
        table.add_row("chunks embedded", str(self.chunks))
        table.add_row("elapsed", f"{self.elapsed_s:.1f} s")
        table.add_row("documents/s", f"{self.documents_per_second:.2f}")
        return table


def _failures_table(columns: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> Table:
    failures = Table(title="failed documents", show_lines=False)
    for column in columns:
        failures.add_column(column, overflow="fold")
    for row in rows:
        failures.add_row(*row)
    return failures


def ingest_summary_json(run_id: str, summary: IngestSummary) -> dict[str, object]:
    """``-o json`` of an ingestion: the same figures as :func:`print_ingest_summary`."""
    return {
        "run_id": run_id,
        **_Figures.of_ingestion(summary).as_json(),
        "error": summary.error,
        "failures": [
            {"document_id": f.document_id, "stage": str(f.stage), "reason": f.reason}
            for f in summary.failures
        ],
    }


def print_ingest_summary(console: Console, run_id: str, summary: IngestSummary) -> None:
    """The table ``docpipe start`` prints, for an ingestion; its failures by document
    id (the first ones: ``docpipe failures --run-id`` lists them all)."""
    console.print(_Figures.of_ingestion(summary).table(f"docpipe ingestion {run_id}"))
    if summary.error:
        console.print(f"[red]the CSV could not be used: {summary.error}[/red]", highlight=False)
    if summary.failures:
        console.print(
            _failures_table(
                ("document", "stage", "reason"),
                ((f.document_id, str(f.stage), f.reason) for f in summary.failures),
            )
        )
        if summary.failed > len(summary.failures):
            console.print(
                f"the first {len(summary.failures)} of {summary.failed}: "
                f"docpipe failures --run-id {run_id} lists them all",
                highlight=False,
            )


def run_summary_json(summary: RunSummary) -> dict[str, object]:
    """A client-driven run's summary as ``-o json`` prints it: the same figures as
    :func:`print_run_summary`."""
    return {
        "run_id": summary.run_id,
        **_Figures.of_run(summary).as_json(),
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


def print_run_summary(console: Console, summary: RunSummary) -> None:
    """The table ``docpipe start``, ``run`` and ``redrive`` print, and the failed
    documents by CSV row."""
    table = _Figures.of_run(summary).table(f"docpipe run {summary.run_id}")
    if summary.elapsed_s > 0:
        table.add_row("chunks/s", f"{summary.chunks / summary.elapsed_s:.1f}")
    console.print(table)
    if summary.failed:
        console.print(
            _failures_table(
                ("row", "source", "stage", "reason"),
                (
                    (
                        str(o.row_number),
                        o.source or "-",
                        str(o.failure_stage or "-"),
                        o.failure_reason or "-",
                    )
                    for o in summary.failed
                ),
            )
        )
