"""What every fault test needs: documents to serve, batches to start and wait
for, a view of in-flight activities, and the exactly-once check of the stores.

The check reads what landed in each store rather than trusting the workflow's
result: one row per document in PostgreSQL, exactly the ids ``<doc>:0..n-1``
in Chroma, exactly the expected keys in S3. "Lost" is a document without its
row, vectors or objects; "duplicated" is anything extra (a second outcome,
a stray chunk id, a key the pipeline should not have written twice).
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from docpipe.client.starter import pipeline_options
from docpipe.config import Settings
from docpipe.csv_input import parse_documents_csv
from docpipe.models import (
    DocumentOutcome,
    DocumentRef,
    PipelineInput,
    PipelineOptions,
    PipelineResult,
    Status,
    StepTimeouts,
)
from docpipe.storage import keys
from docpipe.storage.metadata import open_metadata_store
from docpipe.storage.objects import open_object_store
from docpipe.storage.vectors import chunk_id, open_vector_store
from docpipe.workflows import DocumentPipelineWorkflow

HEARTBEAT_S = 3.0
"""The heartbeat timeout of every step in these tests (production: 60 s)."""
START_TO_CLOSE_S = 60.0
"""Far above the heartbeat timeout: a retry this late would mean no heartbeat."""
DEADLINE_S = 240.0

_WORDS = (
    "river harbour lantern engine ledger meadow signal archive compass orchard "
    "granite weaver copper violin canyon beacon glacier market pepper saddle "
    "timber falcon quarry thistle anchor prism cobalt tundra lagoon marble"
).split()


def fault_options(settings: Settings) -> PipelineOptions:
    """Short heartbeat timeouts so a dead worker is noticed in seconds."""
    options = pipeline_options(settings, DEADLINE_S)
    options.timeouts = StepTimeouts(
        io_start_to_close=START_TO_CLOSE_S,
        cpu_start_to_close=START_TO_CLOSE_S,
        gpu_start_to_close=START_TO_CLOSE_S,
        heartbeat=HEARTBEAT_S,
        metadata_grace=30,
    )
    return options


def document_text(seed: str, words: int = 320) -> bytes:
    """A small English document of its own (two chunks), different for every seed."""
    rng = random.Random(seed)
    sentences = []
    while sum(len(s.split()) for s in sentences) < words:
        picked = rng.sample(_WORDS, 6)
        sentences.append(
            f"The {picked[0]} near the {picked[1]} kept the {picked[2]} of the "
            f"{picked[3]} while the {picked[4]} watched the {picked[5]}."
        )
    return f"Report {seed}\n\n{' '.join(sentences)}\n".encode()


# ------------------------------------------------------------------ documents


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished mid-request (a killed worker) is expected here."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class DocServer:
    """Serves documents over HTTP; a poison path always fails, and every
    request is counted so a test can see how often a source was tried."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.poison: dict[str, str] = {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.hits[self.path] += 1
                mode = server.poison.get(self.path)
                if mode == "reset":
                    # Drop the connection without a response, every time.
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if mode == "503":
                    self.send_error(503, "always unavailable")
                    return
                body = server.documents.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._http = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_port}"

    def start(self) -> DocServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def add_documents(self, count: int, tag: str) -> list[str]:
        """``count`` new text documents; returns their URLs (sources)."""
        unique = f"{tag}-{uuid.uuid4().hex[:6]}"
        paths = [f"/{unique}/doc-{i:02d}.txt" for i in range(count)]
        for path in paths:
            self.documents[path] = document_text(path)
        return [self.base_url + path for path in paths]

    def add_poison(self, mode: str, tag: str) -> str:
        """A source that fails on every request: ``503`` or ``reset``."""
        path = f"/{tag}-{uuid.uuid4().hex[:6]}/poison-{mode}.txt"
        self.poison[path] = mode
        return self.base_url + path

    def hits_for(self, source: str) -> int:
        return self.hits[source.removeprefix(self.base_url)]


def refs_for(sources: list[str]) -> list[DocumentRef]:
    """DocumentRefs exactly as a CSV of these URLs yields them (ids = hash of source)."""
    csv = "url\n" + "\n".join(sources) + "\n"
    return parse_documents_csv(csv, base_dir=None, origin="faults")


# --------------------------------------------------------------------- runs


@dataclass
class Run:
    """A batch run started from the test: one workflow per batch."""

    run_id: str
    documents: list[DocumentRef]
    workflow_ids: list[str]
    started_at: float = field(default_factory=time.monotonic)


async def start_run(
    client: Client,
    settings: Settings,
    documents: list[DocumentRef],
    *,
    tag: str,
    batch_size: int = 4,
) -> Run:
    """Start every batch at once (``asyncio.gather``: the server takes them in parallel)."""
    run_id = f"{tag}-{uuid.uuid4().hex[:8]}"
    options = fault_options(settings)
    batches = [documents[i : i + batch_size] for i in range(0, len(documents), batch_size)]
    ids = [f"{run_id}-batch-{i:02d}" for i in range(len(batches))]
    await asyncio.gather(
        *(
            client.start_workflow(
                DocumentPipelineWorkflow.run,
                PipelineInput(run_id=run_id, documents=batch, options=options),
                id=workflow_id,
                task_queue=settings.workflow_task_queue,
                execution_timeout=timedelta(seconds=DEADLINE_S + 120),
            )
            for workflow_id, batch in zip(ids, batches, strict=True)
        )
    )
    return Run(run_id, documents, ids)


async def wait_results(client: Client, run: Run, timeout_s: float = 200.0) -> list[DocumentOutcome]:
    """Every batch's outcomes. Re-attaches by workflow id whenever the server
    is unreachable (a restart), as a starter that lost its connection would."""
    deadline = time.monotonic() + timeout_s

    async def one(workflow_id: str) -> PipelineResult:
        while True:
            handle = client.get_workflow_handle_for(DocumentPipelineWorkflow.run, workflow_id)
            try:
                return await handle.result()
            except RPCError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in run.workflow_ids)), timeout_s)
    return [outcome for result in results for outcome in result.outcomes]


async def pending_activities(
    client: Client, workflow_ids: list[str]
) -> list[tuple[str, PendingActivityInfo]]:
    """(workflow id, pending activity) for every activity scheduled or running now."""

    async def one(workflow_id: str) -> list[tuple[str, PendingActivityInfo]]:
        description = await client.get_workflow_handle(workflow_id).describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            return []
        return [(workflow_id, p) for p in description.raw_description.pending_activities]

    found = await asyncio.gather(*(one(i) for i in workflow_ids))
    return [item for items in found for item in items]


async def wait_until_running(
    client: Client, run: Run, activity: str, timeout_s: float = 90.0
) -> tuple[str, PendingActivityInfo]:
    """The first ``activity`` of the run that a worker has started (is executing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for workflow_id, pending in await pending_activities(client, run.workflow_ids):
            if (
                pending.activity_type.name == activity
                and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            ):
                return workflow_id, pending
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no {activity} was started within {timeout_s:g} s")


async def wait_until_retried(
    client: Client, workflow_id: str, activity_id: str, timeout_s: float = 90.0
) -> PendingActivityInfo:
    """Wait until the server gave up on the first attempt (attempt >= 2)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for _, pending in await pending_activities(client, [workflow_id]):
            if pending.activity_id == activity_id and pending.attempt >= 2:
                return pending
        await asyncio.sleep(0.05)
    raise TimeoutError(
        f"activity {activity_id} of {workflow_id} was not retried in {timeout_s:g} s"
    )


@dataclass(frozen=True)
class ActivityRecord:
    """One activity of a finished workflow, from its history."""

    activity_type: str
    attempt: int
    completed_at: float | None
    """Unix time of its completion; None if it never completed."""


async def activity_history(client: Client, workflow_id: str) -> dict[str, ActivityRecord]:
    """activity id -> what happened to it (the attempt that finished, and when)."""
    scheduled: dict[int, tuple[str, str]] = {}
    attempts: dict[int, int] = {}
    completed: dict[int, float] = {}
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_id, attrs.activity_type.name)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            attempts[attrs.scheduled_event_id] = attrs.attempt
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            completed[attrs.scheduled_event_id] = event.event_time.ToDatetime(
                tzinfo=UTC
            ).timestamp()
    return {
        activity_id: ActivityRecord(kind, attempts.get(event_id, 0), completed.get(event_id))
        for event_id, (activity_id, kind) in scheduled.items()
    }


async def first_workflow_task_by(client: Client, run: Run, pid: int) -> float | None:
    """Unix time of the first workflow task that the worker process ``pid``
    completed for this run (a replacement workflow worker taking over)."""
    times = []
    for workflow_id in run.workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                identity = event.workflow_task_completed_event_attributes.identity
                if identity.startswith(f"{pid}@"):
                    times.append(event.event_time.ToDatetime(tzinfo=UTC).timestamp())
                    break
    return min(times, default=None)


# ------------------------------------------------------------------ checking


@dataclass
class StoreCheck:
    """What the stores hold for a run's documents, against what they should hold."""

    expected: int
    completed: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The documents expected to fail: their rows (stage, reason)."""

    def problems(self) -> str:
        return f"lost: {self.lost}\nduplicated: {self.duplicated}"


def _expected_keys(document_id: str) -> set[str]:
    """The document's own objects; its chunks and vectors are in its batch's bundles."""
    return {keys.raw(document_id), keys.text(document_id), keys.compressed(document_id)}


async def check_stores(
    settings: Settings,
    run: Run,
    outcomes: list[DocumentOutcome],
    *,
    expect_failed: frozenset[str] = frozenset(),
) -> StoreCheck:
    """Exactly once: each document has one outcome, one row, its chunk ids and
    its objects, nothing more; documents in ``expect_failed`` (ids) have a
    failed row instead and nothing in Chroma."""
    check = StoreCheck(expected=len(run.documents) - len(expect_failed))
    per_document = Counter(o.document_id for o in outcomes)
    by_id = {o.document_id: o for o in outcomes}
    check.duplicated += [f"{d}: {n} outcomes" for d, n in per_document.items() if n > 1]

    async with open_metadata_store(settings) as metadata:
        counts = await metadata.count_by_status(run.run_id)
        rows = {d.document_id: await metadata.get(d.document_id) for d in run.documents}
    if sum(counts.values()) > len(run.documents):
        check.duplicated.append(f"{sum(counts.values())} rows for {len(run.documents)} documents")
    async with open_object_store(settings) as store:
        all_keys = await store.list_keys()
    async with open_vector_store(settings) as vectors:
        chunk_ids = {d.document_id: await vectors.chunks_for(d.document_id) for d in run.documents}

    for document in run.documents:
        doc_id = document.document_id
        row = rows[doc_id]
        outcome = by_id.get(doc_id)
        stored_keys = {k for k in all_keys if doc_id in k}
        ids = [c["id"] for c in chunk_ids[doc_id]]
        if doc_id in expect_failed:
            if row is None or row["status"] != Status.FAILED or row["run_id"] != run.run_id:
                check.lost.append(f"{doc_id}: no failed row for a document that must fail")
            else:
                check.failed[doc_id] = row
            if ids:
                check.duplicated.append(f"{doc_id}: a failed document has vectors {ids}")
            continue
        if outcome is None or outcome.status != Status.SUCCEEDED:
            reason = outcome.failure_reason if outcome else "no outcome"
            check.lost.append(f"{doc_id}: {reason}")
            continue
        if row is None or row["status"] != Status.SUCCEEDED or row["run_id"] != run.run_id:
            check.lost.append(f"{doc_id}: row {row and row['status']}")
            continue
        wanted_ids = [chunk_id(doc_id, i) for i in range(row["chunk_count"])]
        if sorted(ids) != sorted(wanted_ids):
            (check.lost if len(ids) < len(wanted_ids) else check.duplicated).append(
                f"{doc_id}: chunk ids {sorted(ids)} != {wanted_ids}"
            )
            continue
        bundles = {row["chunks_key"], row["embeddings_key"]}
        if not bundles <= set(all_keys):
            check.lost.append(f"{doc_id}: bundles missing {sorted(bundles - set(all_keys))}")
            continue
        wanted_keys = _expected_keys(doc_id)
        if stored_keys != wanted_keys:
            missing, extra = wanted_keys - stored_keys, stored_keys - wanted_keys
            if missing:
                check.lost.append(f"{doc_id}: objects missing {sorted(missing)}")
            if extra:
                check.duplicated.append(f"{doc_id}: extra objects {sorted(extra)}")
            continue
        check.completed += 1
    return check


# ------------------------------------------------------------------ figures


@dataclass
class FaultFigure:
    """One injected fault and what it cost: a line of docs/reliability.md."""

    fault: str
    expected: int
    completed: int
    lost: int
    duplicated: int
    detected_s: float | None = None
    """Fault -> the server gave up on the interrupted attempt (heartbeat timeout)."""
    recovered_s: float | None = None
    """A kill: kill -> the interrupted step completed on another worker.
    An outage: server back -> the last of the steps that needed it completed."""
    note: str = ""


FIGURES: list[FaultFigure] = []


def record(figure: FaultFigure) -> FaultFigure:
    FIGURES.append(figure)
    return figure


def figures_table() -> list[str]:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [
        "| fault | expected | completed | lost | duplicated | detected s | recovered s | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in FIGURES:
        lines.append(
            f"| {f.fault} | {f.expected} | {f.completed} | {f.lost} | {f.duplicated} "
            f"| {seconds(f.detected_s)} | {seconds(f.recovered_s)} | {f.note} |"
        )
    return lines
