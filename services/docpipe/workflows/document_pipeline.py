"""The per-batch document pipeline.

Long because each phase's activity calls are spelled out argument by argument
(what replay of recorded histories checks); the recipe itself is ``run``.

One workflow runs one batch of documents through every step, one activity
call per step for the whole batch: on a small Temporal server each activity
round trip costs real CPU, so batching is what makes the pipeline fast. Each
step returns per-document successes and failures; a failed document drops out
of later steps and is recorded with its stage and reason, the rest go on.

Steps in order, each on the queue of the resource it needs:
    download_document (io)
    -> query_metadata_database (io): byte-identical copies already stored, and
       where earlier runs stored each document's vectors
    -> prepare_text (cpu): extract, clean, detect the language, validate, chunk,
       compress
    -> perform_ocr (gpu) for images and scanned PDFs, query_metadata_database (io)
       for near-duplicate images, then prepare_text (cpu) on the text read
    -> generate_embeddings (gpu): vectors and the document's zero-shot class
    -> store_vector_embeddings (io) into Chroma, beside run_llm_inference (gpu)
       for summaries when asked for
    -> store_metadata (io): one PostgreSQL row per document, failures included
    -> call_external_api (io): the webhook, when one is set
The lookups and the webhook only inform: when one fails it is logged, and no
document fails with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from docpipe import phash, steps
    from docpipe.models import (
        DocumentFailure,
        DocumentOutcome,
        DocumentRef,
        DocumentSummary,
        EmbeddedDocument,
        EmbeddingJob,
        EmbedResult,
        FetchedDocument,
        FetchResult,
        MetadataAnswer,
        MetadataQuery,
        OcrJob,
        OcrResult,
        OcrText,
        PipelineInput,
        PipelineOptions,
        PipelineResult,
        PreparedDocument,
        PrepareResult,
        Stage,
        Status,
        StoreVectorsResult,
        SummaryJob,
        SummaryResult,
        TextJob,
        VectorJob,
        WebhookRequest,
    )
    from docpipe.redact import redact_url


T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
R = TypeVar("R")

_MB_PER_BYTE = 1 / (1024 * 1024)


class _StepResult(Protocol[T_co]):
    """What every step returns: the documents it succeeded with, and the failed."""

    @property
    def succeeded(self) -> list[T_co]: ...

    @property
    def failed(self) -> list[DocumentFailure]: ...


class _HasId(Protocol):
    @property
    def document_id(self) -> str: ...


D = TypeVar("D", bound=_HasId)


def _by_id(documents: Iterable[D]) -> dict[str, D]:
    return {d.document_id: d for d in documents}


@dataclass(frozen=True)
class _Placement:
    """Where a step's activity runs and how: the task queue of the resource it needs,
    one attempt's start-to-close budget, and that resource's retry policy."""

    queue: str
    budget: timedelta
    retry: RetryPolicy


class _BatchState:
    """What the workflow knows about each document so far (pure bookkeeping)."""

    def __init__(self, run_id: str, documents: list[DocumentRef], started_at: datetime) -> None:
        self.run_id = run_id
        self.started_at = started_at
        self.refs = _by_id(documents)
        self.fetched: dict[str, FetchedDocument] = {}
        self.prepared: dict[str, PreparedDocument] = {}
        self.embedded: dict[str, EmbeddedDocument] = {}
        self.vectors_stored: set[str] = set()
        self.summaries: dict[str, DocumentSummary] = {}
        self.ocr: dict[str, OcrText] = {}
        self.duplicate_of: dict[str, str] = {}
        self.similar_image: dict[str, tuple[str, int]] = {}
        """Near-duplicate image: (the other document, hash bits that differ)."""
        self.previous_embeddings: dict[str, str] = {}
        """Where an earlier run stored each document's vectors (documents stored before)."""
        self.textless: set[str] = set()
        """Images (and scanned pages) with no text to read: stored with zero chunks."""
        self.sniffed: dict[str, str] = {}
        """What each document's bytes turned out to be (the CPU step sniffs them)."""
        self.failures: dict[str, DocumentFailure] = {}
        for ref in documents:
            if ref.invalid_reason:
                self.fail(ref.document_id, Stage.CSV, ref.invalid_reason)

    def text_job(
        self, document_id: str, key: str, content_type: str, filename: str = ""
    ) -> TextJob:
        ref = self.refs[document_id]
        return TextJob(document_id, key, content_type, ref.source, ref.language_hint, filename)

    def vector_job(self, document_id: str) -> VectorJob:
        """What store_vector_embeddings needs; an image without text has no vectors."""
        ref, prepared = self.refs[document_id], self.prepared.get(document_id)
        embedded = self.embedded.get(document_id)
        return VectorJob(
            document_id=document_id,
            embeddings_key=embedded.embeddings_key if embedded else "",
            chunks_key=embedded.chunks_key if embedded else "",
            chunk_count=embedded.chunk_count if embedded else 0,
            source=redact_url(ref.source),
            title=(prepared.title if prepared else "") or ref.title,
            language=prepared.language if prepared else "",
        )

    def summary_job(self, document_id: str) -> SummaryJob:
        embedded = self.embedded[document_id]
        return SummaryJob(
            document_id,
            self.prepared[document_id].text_key,
            embeddings_key=embedded.embeddings_key,
            chunks_key=embedded.chunks_key,
        )

    def fail(self, document_id: str, stage: Stage, reason: str) -> None:
        self.failures.setdefault(document_id, DocumentFailure(document_id, stage, reason))

    def fail_all(self, document_ids: list[str], stage: Stage, reason: str) -> None:
        for document_id in document_ids:
            self.fail(document_id, stage, reason)

    def alive(self, pool: Collection[str] | None = None) -> list[str]:
        """Documents still in the running, in input order."""
        ids = self.refs if pool is None else pool
        return [i for i in self.refs if i in ids and i not in self.failures]

    def record(self, failed: list[DocumentFailure]) -> None:
        for failure in failed:
            self.fail(failure.document_id, failure.stage, failure.reason)
            self.note_type(failure.document_id, failure.content_type)

    def take(self, result: _StepResult[T] | None) -> list[T]:
        """Record the documents a step failed; return the ones it succeeded with
        (none when the step gave up)."""
        if result is None:
            return []
        self.record(result.failed)
        return result.succeeded

    def note_type(self, document_id: str, content_type: str) -> None:
        """Keep the first sniffed type: an image's OCR text is prepared as text
        afterwards, but the document is still the image."""
        if content_type:
            self.sniffed.setdefault(document_id, content_type)

    def outcomes(self) -> list[DocumentOutcome]:
        return [self._outcome(ref) for ref in self.refs.values()]

    def _outcome(self, ref: DocumentRef) -> DocumentOutcome:
        doc_id = ref.document_id
        fetched = self.fetched.get(doc_id)
        prepared = self.prepared.get(doc_id)
        embedded = self.embedded.get(doc_id)
        failure = self.failures.get(doc_id)
        if failure is None and doc_id not in self.vectors_stored:
            # Defensive: a document that silently fell out of a step is a failure, never a skip.
            failure = DocumentFailure(doc_id, Stage.STORE, "document was not stored")
        outcome = DocumentOutcome(
            document_id=doc_id,
            # Shown and stored: without the credentials a source URL may carry (the
            # download itself used the full source, and the id hashes it).
            source=redact_url(ref.source),
            row_number=ref.row_number,
            status=Status.FAILED if failure else Status.SUCCEEDED,
            run_id=self.run_id,
            title=(prepared.title if prepared and prepared.title else ref.title),
            tags=list(ref.tags),
            failure_stage=failure.stage if failure else None,
            failure_reason=failure.reason if failure else None,
            started_at=self.started_at,
        )
        outcome.duplicate_of = self.duplicate_of.get(doc_id)
        if doc_id in self.similar_image:
            outcome.near_duplicate_of, outcome.near_duplicate_distance = self.similar_image[doc_id]
        if fetched:
            # What the bytes are, not what the source claimed (a .txt may be an executable).
            outcome.content_type = self.sniffed.get(doc_id) or fetched.content_type or None
            outcome.size_bytes = fetched.size_bytes
            outcome.content_sha256 = fetched.content_sha256
            outcome.raw_key = fetched.raw_key
        if failure is None:
            outcome.has_text = doc_id not in self.textless
            if not outcome.has_text:
                outcome.chunk_count = 0
        if prepared:
            outcome.language = prepared.language
            outcome.char_count = prepared.char_count
            outcome.word_count = prepared.word_count
            outcome.token_count = prepared.token_count
            outcome.chunk_count = prepared.chunk_count
            outcome.compressed_bytes = prepared.compressed_bytes
            outcome.text_key = prepared.text_key
            outcome.chunks_key = prepared.chunks_key
            outcome.compressed_key = prepared.compressed_key
            outcome.top_words = dict(prepared.top_words)
            outcome.quality_score = prepared.quality_score
        if doc_id in self.ocr:
            ocr = self.ocr[doc_id]
            outcome.ocr_pages = ocr.pages
            outcome.ocr_confidence = ocr.confidence
            outcome.image_info = ocr.image
        if embedded:
            outcome.embeddings_key = embedded.embeddings_key
            outcome.embedding_model = embedded.model
            outcome.label = embedded.label or None
            outcome.label_score = embedded.label_score if embedded.label else None
        if doc_id in self.summaries:
            outcome.summary = self.summaries[doc_id].summary
        return outcome


def _step_failure_reason(step: str, err: ActivityError) -> tuple[Stage | None, str]:
    """Turn an activity that gave up (retries spent, or timed out) into a reason."""
    cause = err.cause
    if isinstance(cause, TimeoutError):
        return Stage.TIMEOUT, f"{step} did not finish in time ({cause.type.name.lower()})"
    message = str(cause) if cause is not None else str(err)
    return None, f"{step} failed after retries: {message}"


@workflow.defn(name="DocumentPipelineWorkflow")
class DocumentPipelineWorkflow:
    def __init__(self) -> None:
        self._stage = "starting"
        self._state: _BatchState | None = None
        self._options = PipelineOptions()  # the input's, once run starts
        self._deadline: datetime | None = None

    @workflow.query
    def progress(self) -> dict[str, Any]:
        state = self._state
        return {
            "stage": self._stage,
            "documents": len(state.refs) if state else 0,
            "failed": len(state.failures) if state else 0,
        }

    @workflow.run
    async def run(self, input: PipelineInput) -> PipelineResult:
        state = self._state = _BatchState(input.run_id, input.documents, workflow.info().start_time)
        options = self._options = input.options
        if options.deadline_seconds:
            # Only an explicit deadline (--deadline) counts queue time against a document.
            self._deadline = workflow.now() + timedelta(seconds=options.deadline_seconds)

        await self._download(state)
        await self._prepare_text(state)
        await self._embed(state)
        await self._store_vectors_and_summaries(state)
        outcomes = state.outcomes()
        await self._record_metadata(outcomes)
        if options.webhook_url:
            await self._notify_webhook(options.webhook_url, outcomes)
        self._stage = "done"
        return PipelineResult(run_id=input.run_id, outcomes=outcomes)

    # ------------------------------------------------------------------ phases

    async def _download(self, state: _BatchState) -> None:
        """download_document, then mark byte-identical content."""
        todo = state.alive()
        if not todo:
            return
        refs = [state.refs[i] for i in todo]
        fetched = await self._step(
            state, steps.DOWNLOAD_DOCUMENT, refs, FetchResult, self._on_io(), Stage.DOWNLOAD
        )
        state.fetched = _by_id(fetched)
        await self._find_duplicates(state)

    async def _prepare_text(self, state: _BatchState) -> None:
        """prepare_text for everything downloaded. Images and scanned PDFs are read
        on the GPU first (perform_ocr), then prepared like any text."""
        todo = state.alive(state.fetched)
        if not todo:
            return
        fetched = [state.fetched[i] for i in todo]
        ocr_jobs = await self._prepare(
            state,
            [state.text_job(d.document_id, d.raw_key, d.content_type, d.filename) for d in fetched],
        )
        if not ocr_jobs:
            return
        pages = sum(len(j.page_keys) for j in ocr_jobs)
        on_gpu = self._on_gpu(pages, self._options.timeouts.per_page)
        read = await self._step(state, steps.PERFORM_OCR, ocr_jobs, OcrResult, on_gpu, Stage.OCR)
        state.ocr = _by_id(read)
        await self._find_similar_images(state)
        state.textless.update(r.document_id for r in read if r.chars == 0)
        ocr_text_jobs = [
            state.text_job(r.document_id, r.text_key, "text/plain") for r in read if r.chars != 0
        ]
        if ocr_text_jobs:
            await self._prepare(state, ocr_text_jobs, from_ocr=True)

    async def _prepare(
        self, state: _BatchState, jobs: list[TextJob], *, from_ocr: bool = False
    ) -> list[OcrJob]:
        """prepare_text on the CPU queue; returns the documents that need OCR first.

        Its failures are not all failures: text read from an image that turns out
        to be no text (empty, a stray symbol, noise) leaves an image without text,
        stored, not failed."""
        ids = [j.document_id for j in jobs]
        size = sum(state.fetched[i].size_bytes for i in ids if i in state.fetched and not from_ocr)
        on_cpu = self._on_cpu(size * _MB_PER_BYTE)
        prepared = await self._call(
            state, steps.PREPARE_TEXT, jobs, PrepareResult, on_cpu, Stage.EXTRACT
        )
        if prepared is None:
            return []
        for job in prepared.needs_ocr:
            state.note_type(job.document_id, job.content_type)
        for doc in prepared.succeeded:
            state.note_type(doc.document_id, doc.content_type)
        state.prepared.update(_by_id(prepared.succeeded))
        for failure in prepared.failed:
            if from_ocr and failure.stage == Stage.VALIDATE:
                state.textless.add(failure.document_id)
            else:
                state.record([failure])
        return prepared.needs_ocr

    async def _embed(self, state: _BatchState) -> None:
        """generate_embeddings (and the zero-shot class) for every document with text."""
        todo = state.alive(state.prepared)
        if not todo:
            return
        jobs = [
            EmbeddingJob(
                i,
                state.prepared[i].chunks_key,
                state.prepared[i].chunk_count,
                state.previous_embeddings.get(i, ""),
            )
            for i in todo
        ]
        chunks = sum(j.chunk_count for j in jobs)
        on_gpu = self._on_gpu(chunks, self._options.timeouts.per_chunk)
        embedded = await self._step(
            state, steps.GENERATE_EMBEDDINGS, jobs, EmbedResult, on_gpu, Stage.EMBED
        )
        state.embedded = _by_id(embedded)

    async def _store_vectors_and_summaries(self, state: _BatchState) -> None:
        """store_vector_embeddings, and run_llm_inference beside it when summaries
        are asked for: the summary ranks the vectors just computed."""
        # Documents with text have their vectors; images without text store none (an
        # empty set also clears the chunks of an earlier version of the document).
        todo = state.alive(state.embedded) + state.alive(state.textless)
        if not todo:
            return
        vector_jobs = [state.vector_job(i) for i in todo]
        store = self._call(
            state,
            steps.STORE_VECTOR_EMBEDDINGS,
            vector_jobs,
            StoreVectorsResult,
            self._on_io(),
            Stage.STORE,
        )
        with_text = state.alive(state.embedded)
        if self._options.summarize and with_text:
            summary_jobs = [state.summary_job(i) for i in with_text]
            chunks = sum(state.embedded[i].chunk_count for i in with_text)
            on_gpu = self._on_gpu(chunks, self._options.timeouts.per_chunk)
            summarize = self._call(
                state, steps.RUN_LLM_INFERENCE, summary_jobs, SummaryResult, on_gpu, Stage.SUMMARIZE
            )
            stored, summarized = await asyncio.gather(store, summarize)
            # Taken in this order whichever finished first: a document that failed
            # both keeps the summary's reason.
            state.summaries = _by_id(state.take(summarized))
        else:
            stored = await store
        state.vectors_stored = set(state.take(stored))

    async def _record_metadata(self, outcomes: list[DocumentOutcome]) -> None:
        """store_metadata for every outcome, failures included. With a deadline this
        step gets a grace period past it, so that a timed-out document still has its
        reason stored."""
        self._stage = steps.STORE_METADATA
        t = self._options.timeouts
        remaining = self._time_left()
        await workflow.execute_activity(
            steps.STORE_METADATA,
            outcomes,
            task_queue=self._options.queues.io,
            start_to_close_timeout=steps.attempt_budget(t.io_start_to_close),
            schedule_to_close_timeout=(
                None
                if remaining is None
                else timedelta(seconds=max(remaining, 0) + t.metadata_grace)
            ),
            heartbeat_timeout=timedelta(seconds=t.heartbeat),
            retry_policy=steps.IO_RETRY,
        )

    async def _notify_webhook(self, url: str, outcomes: list[DocumentOutcome]) -> None:
        """call_external_api: a notification, not a pipeline step. The documents are
        stored whatever the receiver does, so a failed delivery is logged rather than
        failing them."""
        self._stage = steps.CALL_EXTERNAL_API
        t = self._options.timeouts
        try:
            await workflow.execute_activity(
                steps.CALL_EXTERNAL_API,
                WebhookRequest(url, outcomes),
                task_queue=self._options.queues.io,
                start_to_close_timeout=steps.attempt_budget(t.io_start_to_close),
                heartbeat_timeout=timedelta(seconds=t.heartbeat),
                retry_policy=steps.IO_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("webhook delivery failed: %s", err.cause or err)

    # ------------------------------------------------------------------ one step

    def _on_io(self) -> _Placement:
        q, t = self._options.queues, self._options.timeouts
        return _Placement(q.io, steps.attempt_budget(t.io_start_to_close), steps.IO_RETRY)

    def _on_cpu(self, megabytes: float) -> _Placement:
        q, t = self._options.queues, self._options.timeouts
        budget = steps.attempt_budget(t.cpu_start_to_close, megabytes, t.per_megabyte)
        return _Placement(q.cpu, budget, steps.CPU_RETRY)

    def _on_gpu(self, work: float, per_unit_s: float) -> _Placement:
        q, t = self._options.queues, self._options.timeouts
        budget = steps.attempt_budget(t.gpu_start_to_close, work, per_unit_s)
        return _Placement(q.gpu, budget, steps.GPU_RETRY)

    async def _step(
        self,
        state: _BatchState,
        activity: str,
        jobs: Sequence[_HasId],
        result_type: type[_StepResult[T]],
        where: _Placement,
        stage: Stage,
    ) -> list[T]:
        """Run one batch step (see _call), record the documents it failed and return
        the ones it succeeded with: none when it gave up."""
        return state.take(await self._call(state, activity, jobs, result_type, where, stage))

    async def _call(
        self,
        state: _BatchState,
        activity: str,
        jobs: Sequence[_HasId],
        result_type: type[R],
        where: _Placement,
        stage: Stage,
    ) -> R | None:
        """Run one batch step for the jobs' documents; if it gives up (retries spent,
        out of time, or the deadline passed before it), fail them all at ``stage``
        (or 'timeout') and go on: None."""
        self._stage = activity
        documents = [j.document_id for j in jobs]
        schedule_to_close = None
        remaining = self._time_left()
        if remaining is not None:
            if remaining <= 0:
                state.fail_all(
                    documents,
                    Stage.TIMEOUT,
                    f"the {self._options.deadline_seconds:g} s deadline passed before {activity}",
                )
                return None
            schedule_to_close = timedelta(seconds=remaining)
        try:
            return await workflow.execute_activity(
                activity,
                jobs,
                result_type=result_type,
                task_queue=where.queue,
                start_to_close_timeout=where.budget,
                schedule_to_close_timeout=schedule_to_close,
                heartbeat_timeout=timedelta(seconds=self._options.timeouts.heartbeat),
                retry_policy=where.retry,
            )
        except ActivityError as err:
            timeout_stage, reason = _step_failure_reason(activity, err)
            state.fail_all(documents, timeout_stage or stage, reason)
            return None

    def _time_left(self) -> float | None:
        """Seconds to the explicit deadline (negative once it passed); None without one."""
        if self._deadline is None:
            return None
        return (self._deadline - workflow.now()).total_seconds()

    # ------------------------------------------------------------------ informational lookups

    async def _look_up(self, query: MetadataQuery, what: str) -> MetadataAnswer:
        """query_metadata_database for an informational marking: a failed lookup is
        logged and answers nothing, it never fails a document."""
        self._stage = steps.QUERY_METADATA_DATABASE
        try:
            answer: MetadataAnswer = await workflow.execute_activity(
                steps.QUERY_METADATA_DATABASE,
                query,
                result_type=MetadataAnswer,
                task_queue=self._options.queues.io,
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=timedelta(seconds=self._options.timeouts.heartbeat),
                retry_policy=steps.IO_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("%s lookup failed, not marking: %s", what, err.cause or err)
            return MetadataAnswer()
        return answer

    async def _find_duplicates(self, state: _BatchState) -> None:
        """Mark byte-identical content: against stored documents (query_metadata_database)
        and within this batch. Informational: duplicates are still processed and stored
        under their own ids, so nothing is lost; a failed lookup only skips the marking."""
        hashes = {i: d.content_sha256 for i, d in state.fetched.items()}
        if not hashes:
            return
        # The same call says where earlier runs stored these documents' vectors, so
        # the embedding step reuses unchanged chunks without looking for every document.
        query = MetadataQuery(hashes, stored_vectors=list(hashes))
        answer = await self._look_up(query, "duplicate")
        state.duplicate_of.update(answer.duplicate_of)
        state.previous_embeddings.update(answer.embeddings_key)
        first_in_batch: dict[str, str] = {}
        for doc_id in state.alive(state.fetched):
            sha = hashes[doc_id]
            if sha in first_in_batch and doc_id not in state.duplicate_of:
                state.duplicate_of[doc_id] = first_in_batch[sha]
            # Point at the earliest copy: a stored one if the first of the batch had one.
            first_in_batch.setdefault(sha, state.duplicate_of.get(doc_id, doc_id))

    async def _find_similar_images(self, state: _BatchState) -> None:
        """Mark near-duplicate images (resized, recompressed, lightly edited copies):
        the closest stored image (query_metadata_database), else the closest earlier
        one in this batch. Informational, like exact duplicates: nothing is dropped,
        and a failed lookup only skips the marking."""
        phashes = [
            (doc_id, str(state.ocr[doc_id].image["phash"]))
            for doc_id in state.alive(state.ocr)
            if (state.ocr[doc_id].image or {}).get("phash")
        ]
        if not phashes:
            return
        bits = self._options.image_near_duplicate_bits
        answer = await self._look_up(
            MetadataQuery(image_phash=dict(phashes), max_image_distance=bits), "similar-image"
        )
        for doc_id, similar in answer.similar_image.items():
            state.similar_image[doc_id] = (similar.document_id, similar.distance)
        for doc_id, found in phash.nearest_earlier(phashes, bits).items():
            state.similar_image.setdefault(doc_id, found)
