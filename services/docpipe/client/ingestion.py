"""The client side of server-side ingestion: `docpipe ingest` and `docpipe watch`.

``docpipe start`` drives a run from the terminal: its batches are admitted by
the CLI, so the run lasts as long as the terminal does. ``docpipe ingest``
hands the whole CSV to ``IngestCsvWorkflow`` instead: the IO worker pages
through the file, the workflow fans out batches and continues as new, and the
terminal may close. ``docpipe watch`` reattaches to it later by its run id,
which is also the workflow id and the ``run_id`` of its documents in
PostgreSQL (``docpipe failures --run-id``).

A CSV on the client's disk is **uploaded to the workers' own bucket** and the
workflow is given its ``s3://`` location. The IO worker that reads it runs
elsewhere (a pod, another machine) and cannot see the client's disk; and even
on one machine, local paths are refused unless LOCAL_SOURCE_ROOT allows them,
which is about the documents, not the list of them. The object store is the
one place both sides already share, ``parse_csv`` reads the workers' own
bucket directly (no DOWNLOAD_S3_BUCKETS or network rules to widen), and the
object is named by the file's content, so ingesting the same file again
reuses it. The rows keep meaning what they meant on the client: plain paths
stay relative to the CSV's folder there (``IngestInput.base_dir``), exactly as
``docpipe start`` resolves them. ``s3://`` and ``http(s)://`` locations are
passed through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from urllib.request import url2pathname

from docpipe.client.reachability import CONNECT_TIMEOUT_S, ServiceUnreachable
from docpipe.config import Settings
from docpipe.csv_input import CsvFormatError, parse_documents_csv
from docpipe.models import IngestInput, IngestSummary, PipelineOptions

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

INGEST_WORKFLOW = "IngestCsvWorkflow"
PROGRESS_QUERY = "summary"
"""IngestCsvWorkflow's query: the running totals (an :class:`IngestSummary`)."""
POLL_S = 1.0
"""How often ``watch`` asks for progress: a query is one cheap workflow task."""
QUERY_TIMEOUT_S = 5.0
REMOTE_SCHEMES = ("s3", "http", "https")


class IngestionError(Exception):
    """Ingestion cannot go on; the message is one line, ``exit_code`` says why."""

    exit_code = 1


class BadCsv(IngestionError):
    """The local CSV is unreadable or unusable: fix the input."""

    exit_code = 2


class UnknownIngestion(IngestionError):
    """No ingestion has this run id."""

    exit_code = 2


class IngestionEnded(IngestionError):
    """The workflow ended without a summary (terminated, cancelled, failed)."""


@dataclass(frozen=True)
class StagedCsv:
    """A CSV where the IO worker can read it."""

    location: str
    """What ``parse_csv`` reads: ``s3://<workers' bucket>/ingest/...`` for a local file."""
    base_dir: str | None = None
    """The local file's folder: its rows' plain paths stay relative to it."""
    documents: int | None = None
    """Rows counted while checking a local file; None for a remote one (not read here)."""


def is_remote(csv: str) -> bool:
    return urlsplit(csv).scheme.lower() in REMOTE_SCHEMES


def local_path(csv: str) -> Path:
    """A path, or a ``file://`` URL, as a path."""
    parts = urlsplit(csv)
    if parts.scheme.lower() == "file":
        return Path(url2pathname(parts.path))
    return Path(csv).expanduser()


async def stage_csv(settings: Settings, csv: str) -> StagedCsv:
    """Where the IO worker will read ``csv`` from, uploading a local file first.

    A local file is checked here first (readable, a header with a url column,
    under CSV_MAX_BYTES), so a mistake is one line now rather than a failed
    ingestion later.
    """
    if is_remote(csv):
        return StagedCsv(location=csv)
    path = local_path(csv).resolve()
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as err:
        raise BadCsv(f"cannot read {path}: {err.strerror or err}") from None
    if len(data) > settings.csv_max_bytes:
        raise BadCsv(
            f"{path} is {len(data):,} bytes; the IO worker reads CSVs up to "
            f"CSV_MAX_BYTES={settings.csv_max_bytes:,}"
        )
    try:
        rows = parse_documents_csv(
            data.decode("utf-8-sig", errors="replace"), base_dir=path.parent, origin=str(path)
        )
    except CsvFormatError as err:
        raise BadCsv(f"{path}: {err}") from None
    key = await upload(settings, data, path.name)
    return StagedCsv(
        location=f"s3://{settings.s3_bucket}/{key}",
        base_dir=str(path.parent),
        documents=len(rows),
    )


async def upload(settings: Settings, data: bytes, filename: str) -> str:
    """Put a CSV in the workers' bucket (created if missing); its key."""
    from docpipe.client.extras import require
    from docpipe.storage import keys
    from docpipe.storage.objects import open_object_store

    if not settings.s3_endpoint.startswith("file://"):
        require(("aioboto3",), "uploading a local CSV", "or give an s3:// or http(s):// CSV")
    key = keys.ingest_csv(data, filename)
    where = f"the object store at {settings.s3_endpoint} (bucket {settings.s3_bucket})"
    try:
        async with open_object_store(settings) as store:
            # The first call bounds how long an unreachable store may take to say so.
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await store.ensure_bucket()
            await store.put(key, data, content_type="text/csv")
    except TimeoutError:
        raise ServiceUnreachable(
            f"cannot reach {where}: no answer within {CONNECT_TIMEOUT_S:g} s"
        ) from None
    except Exception as err:
        if type(err).__module__.startswith("botocore") and "Connect" in type(err).__name__:
            raise ServiceUnreachable(f"cannot reach {where}: {err}") from None
        raise
    return key


async def start_ingestion(
    client: Client,
    settings: Settings,
    staged: StagedCsv,
    *,
    run_id: str,
    options: PipelineOptions,
    batch_size: int = 10,
    max_batches_in_flight: int = 20,
) -> str:
    """Start ``IngestCsvWorkflow`` under the workflow id ``run_id``; returns it.

    Started by name, so the CLI need not import workflow code.
    """
    await client.start_workflow(
        INGEST_WORKFLOW,
        IngestInput(
            location=staged.location,
            run_id=run_id,
            batch_size=batch_size,
            max_batches_in_flight=max_batches_in_flight,
            options=options,
            base_dir=staged.base_dir,
        ),
        id=run_id,
        task_queue=settings.workflow_task_queue,
    )
    return run_id


async def follow(
    client: Client,
    run_id: str,
    on_progress: Callable[[IngestSummary], None],
    poll_s: float = POLL_S,
) -> IngestSummary:
    """Report the ingestion's progress until it ends; its final summary.

    A finished ingestion is answered from its stored result at once (no worker
    needed). While it runs, progress comes from its query every ``poll_s``; a
    query that goes unanswered (no workflow worker polling right now) is
    skipped, not fatal: the result still arrives when the workflow ends. The
    handle follows continue-as-new, so every run of a long ingestion counts.
    """
    from temporalio.client import WorkflowFailureError

    handle = client.get_workflow_handle(run_id, result_type=IngestSummary)
    await _check_is_ingestion(handle, run_id)
    result = asyncio.ensure_future(handle.result())
    try:
        while not result.done():
            snapshot = await _progress(handle)
            if snapshot is not None and not result.done():
                on_progress(snapshot)
            await asyncio.wait({result}, timeout=poll_s)
        summary = result.result()
    except WorkflowFailureError as err:
        cause = err.cause or err
        raise IngestionEnded(f"ingestion {run_id} ended without a summary: {cause}") from None
    finally:
        if not result.done():
            result.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await result
    on_progress(summary)
    return summary


async def _check_is_ingestion(handle: WorkflowHandle, run_id: str) -> None:
    from temporalio.service import RPCError, RPCStatusCode

    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise UnknownIngestion(
                f"no ingestion {run_id!r} (`docpipe ingest` prints the id to watch)"
            ) from None
        raise
    if description.workflow_type != INGEST_WORKFLOW:
        raise UnknownIngestion(
            f"{run_id!r} is a {description.workflow_type}, not an ingestion started by "
            "`docpipe ingest`"
        )


async def _progress(handle: WorkflowHandle) -> IngestSummary | None:
    from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
    from temporalio.service import RPCError

    try:
        return await handle.query(
            PROGRESS_QUERY,
            result_type=IngestSummary,
            rpc_timeout=timedelta(seconds=QUERY_TIMEOUT_S),
        )
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
        return None


def exit_code(summary: IngestSummary, *, strict: bool = True) -> int:
    """0 all well; 1 the CSV was unusable, or (``strict``) some document failed."""
    if summary.error is not None:
        return 1
    return 1 if strict and summary.failed else 0
