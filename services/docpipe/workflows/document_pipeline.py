"""The per-batch document pipeline.

One workflow runs one batch of documents through every step, one activity
call per step for the whole batch: on a small Temporal server each activity
round trip costs real CPU, so batching is what makes the pipeline fast. Each
step returns per-document successes and failures; a failed document drops out
of later steps and is recorded with its stage and reason, the rest go on.

Steps, each on the queue of the resource it needs:
    download (io) -> prepare text (cpu) -> embeddings (gpu)
    -> vectors into Chroma (io) -> metadata rows into PostgreSQL (io)
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
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


class _BatchState:
    """What the workflow knows about each document so far (pure bookkeeping)."""

    def __init__(self, run_id: str, documents: list[DocumentRef], started_at: datetime) -> None:
        self.run_id = run_id
        self.started_at = started_at
        self.refs = {d.document_id: d for d in documents}
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

    def alive(self, pool: dict[str, Any] | None = None) -> list[str]:
        """Documents still in the running, in input order."""
        ids = self.refs if pool is None else pool
        return [i for i in self.refs if i in ids and i not in self.failures]

    def record(self, failed: list[DocumentFailure]) -> None:
        for failure in failed:
            self.fail(failure.document_id, failure.stage, failure.reason)
            self.note_type(failure.document_id, failure.content_type)

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

    @workflow.query
    def progress(self) -> dict[str, Any]:
        state = self._state
        return {
            "stage": self._stage,
            "documents": len(state.refs) if state else 0,
            "failed": len(state.failures) if state else 0,
        }

    async def _look_up(self, query: MetadataQuery, options: Any, what: str) -> MetadataAnswer:
        """query_metadata_database for an informational marking: a failed lookup is
        logged and answers nothing, it never fails a document."""
        self._stage = steps.QUERY_METADATA_DATABASE
        try:
            answer: MetadataAnswer = await workflow.execute_activity(
                steps.QUERY_METADATA_DATABASE,
                query,
                result_type=MetadataAnswer,
                task_queue=options.queues.io,
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=timedelta(seconds=options.timeouts.heartbeat),
                retry_policy=steps.IO_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("%s lookup failed, not marking: %s", what, err.cause or err)
            return MetadataAnswer()
        return answer

    async def _find_duplicates(self, state: _BatchState, options: Any) -> None:
        """Mark byte-identical content: against stored documents (query_metadata_database)
        and within this batch. Informational: duplicates are still processed and stored
        under their own ids, so nothing is lost; a failed lookup only skips the marking."""
        hashes = {i: d.content_sha256 for i, d in state.fetched.items()}
        if not hashes:
            return
        # The same call says where earlier runs stored these documents' vectors, so
        # the embedding step reuses unchanged chunks without looking for every document.
        query = MetadataQuery(hashes, stored_vectors=list(hashes))
        answer = await self._look_up(query, options, "duplicate")
        state.duplicate_of.update(answer.duplicate_of)
        state.previous_embeddings.update(answer.embeddings_key)
        first_in_batch: dict[str, str] = {}
        for doc_id in state.alive(state.fetched):
            sha = hashes[doc_id]
            if sha in first_in_batch and doc_id not in state.duplicate_of:
                state.duplicate_of[doc_id] = first_in_batch[sha]
            # Point at the earliest copy: a stored one if the first of the batch had one.
            first_in_batch.setdefault(sha, state.duplicate_of.get(doc_id, doc_id))

    async def _find_similar_images(self, state: _BatchState, options: Any) -> None:
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
        bits = options.image_near_duplicate_bits
        answer = await self._look_up(
            MetadataQuery(image_phash=dict(phashes), max_image_distance=bits),
            options,
            "similar-image",
        )
        for doc_id, similar in answer.similar_image.items():
            state.similar_image[doc_id] = (similar.document_id, similar.distance)
        for doc_id, found in phash.nearest_earlier(phashes, bits).items():
            state.similar_image.setdefault(doc_id, found)

    @workflow.run
    async def run(self, input: PipelineInput) -> PipelineResult:
        state = self._state = _BatchState(input.run_id, input.documents, workflow.info().start_time)
        options = input.options
        # Only an explicit deadline (--deadline) counts queue time against a document.
        deadline = (
            workflow.now() + timedelta(seconds=options.deadline_seconds)
            if options.deadline_seconds
            else None
        )

        async def call(
            name: str,
            arg: Any,
            result_type: type,
            queue: str,
            budget: timedelta,
            retry: Any,
            stage: Stage,
            doc_ids: list[str],
        ) -> Any | None:
            """Run one batch step; if it gives up, fail its documents and go on."""
            self._stage = name
            schedule_to_close = None
            if deadline is not None:
                remaining = (deadline - workflow.now()).total_seconds()
                if remaining <= 0:
                    state.fail_all(
                        doc_ids,
                        Stage.TIMEOUT,
                        f"the {options.deadline_seconds:g} s deadline passed before {name}",
                    )
                    return None
                schedule_to_close = timedelta(seconds=remaining)
            try:
                return await workflow.execute_activity(
                    name,
                    arg,
                    result_type=result_type,
                    task_queue=queue,
                    start_to_close_timeout=budget,
                    schedule_to_close_timeout=schedule_to_close,
                    heartbeat_timeout=timedelta(seconds=options.timeouts.heartbeat),
                    retry_policy=retry,
                )
            except ActivityError as err:
                timeout_stage, reason = _step_failure_reason(name, err)
                state.fail_all(doc_ids, timeout_stage or stage, reason)
                return None

        q, t = options.queues, options.timeouts
        mb = 1 / (1024 * 1024)

        async def prepare(jobs: list[TextJob], *, from_ocr: bool = False) -> list[OcrJob]:
            """prepare_text on the CPU queue; returns the documents that need OCR first.

            Text read from an image that turns out to be no text (empty, a stray
            symbol, noise) leaves an image without text: stored, not failed."""
            ids = [j.document_id for j in jobs]
            size = sum(
                state.fetched[i].size_bytes for i in ids if i in state.fetched and not from_ocr
            )
            prepared: PrepareResult | None = await call(
                steps.PREPARE_TEXT, jobs, PrepareResult, q.cpu,
                steps.attempt_budget(t.cpu_start_to_close, size * mb, t.per_megabyte),
                steps.CPU_RETRY, Stage.EXTRACT, ids,
            )  # fmt: skip
            if not prepared:
                return []
            for job in prepared.needs_ocr:
                state.note_type(job.document_id, job.content_type)
            for doc in prepared.succeeded:
                state.note_type(doc.document_id, doc.content_type)
            state.prepared.update({d.document_id: d for d in prepared.succeeded})
            for failure in prepared.failed:
                if from_ocr and failure.stage == Stage.VALIDATE:
                    state.textless.add(failure.document_id)
                else:
                    state.record([failure])
            return prepared.needs_ocr

        todo = state.alive()
        if todo:
            refs = [state.refs[i] for i in todo]
            fetched: FetchResult | None = await call(
                steps.DOWNLOAD_DOCUMENT, refs, FetchResult, q.io,
                steps.attempt_budget(t.io_start_to_close), steps.IO_RETRY, Stage.DOWNLOAD, todo,
            )  # fmt: skip
            if fetched:
                state.fetched = {d.document_id: d for d in fetched.succeeded}
                state.record(fetched.failed)
                await self._find_duplicates(state, options)

        todo = state.alive(state.fetched)
        if todo:
            fetched_docs = [state.fetched[i] for i in todo]
            ocr_jobs = await prepare(
                [
                    state.text_job(d.document_id, d.raw_key, d.content_type, d.filename)
                    for d in fetched_docs
                ]
            )
            if ocr_jobs:
                # Images and scanned PDFs: read on the GPU, then prepared like any text.
                ocr_ids = [j.document_id for j in ocr_jobs]
                pages = sum(len(j.page_keys) for j in ocr_jobs)
                read: OcrResult | None = await call(
                    steps.PERFORM_OCR, ocr_jobs, OcrResult, q.gpu,
                    steps.attempt_budget(t.gpu_start_to_close, pages, t.per_page),
                    steps.GPU_RETRY, Stage.OCR, ocr_ids,
                )  # fmt: skip
                if read:
                    state.ocr = {r.document_id: r for r in read.succeeded}
                    state.record(read.failed)
                    await self._find_similar_images(state, options)
                    state.textless.update(r.document_id for r in read.succeeded if r.chars == 0)
                    ocr_text_jobs = [
                        state.text_job(r.document_id, r.text_key, "text/plain")
                        for r in read.succeeded
                        if r.chars != 0
                    ]
                    if ocr_text_jobs:
                        await prepare(ocr_text_jobs, from_ocr=True)

        todo = state.alive(state.prepared)
        if todo:
            embed_jobs = [
                EmbeddingJob(
                    i,
                    state.prepared[i].chunks_key,
                    state.prepared[i].chunk_count,
                    state.previous_embeddings.get(i, ""),
                )
                for i in todo
            ]
            chunks = sum(j.chunk_count for j in embed_jobs)
            embedded: EmbedResult | None = await call(
                steps.GENERATE_EMBEDDINGS, embed_jobs, EmbedResult, q.gpu,
                steps.attempt_budget(t.gpu_start_to_close, chunks, t.per_chunk),
                steps.GPU_RETRY, Stage.EMBED, todo,
            )  # fmt: skip
            if embedded:
                state.embedded = {d.document_id: d for d in embedded.succeeded}
                state.record(embedded.failed)

        # Documents with text have their vectors; images without text store none (an
        # empty set also clears the chunks of an earlier version of the document).
        todo = state.alive(state.embedded) + state.alive(state.textless)
        if todo:
            vector_jobs = [state.vector_job(i) for i in todo]
            store_vectors = call(
                steps.STORE_VECTOR_EMBEDDINGS, vector_jobs, StoreVectorsResult, q.io,
                steps.attempt_budget(t.io_start_to_close), steps.IO_RETRY, Stage.STORE, todo,
            )  # fmt: skip
            with_text = state.alive(state.embedded)
            if options.summarize and with_text:
                # The summary ranks the vectors just computed: it runs beside the upsert.
                summary_jobs = [state.summary_job(i) for i in with_text]
                chunks = sum(state.embedded[i].chunk_count for i in with_text)
                summarize = call(
                    steps.RUN_LLM_INFERENCE, summary_jobs, SummaryResult, q.gpu,
                    steps.attempt_budget(t.gpu_start_to_close, chunks, t.per_chunk),
                    steps.GPU_RETRY, Stage.SUMMARIZE, with_text,
                )  # fmt: skip
                stored, summarized = await asyncio.gather(store_vectors, summarize)
                if summarized:
                    state.summaries = {s.document_id: s for s in summarized.succeeded}
                    state.record(summarized.failed)
            else:
                stored = await store_vectors
            if stored:
                state.vectors_stored = set(stored.stored)
                state.record(stored.failed)

        # Record every outcome, failures included. With a deadline this step gets a
        # grace period past it, so that a timed-out document still has its reason stored.
        self._stage = steps.STORE_METADATA
        outcomes = state.outcomes()
        await workflow.execute_activity(
            steps.STORE_METADATA,
            outcomes,
            task_queue=q.io,
            start_to_close_timeout=steps.attempt_budget(t.io_start_to_close),
            schedule_to_close_timeout=(
                timedelta(
                    seconds=max((deadline - workflow.now()).total_seconds(), 0) + t.metadata_grace
                )
                if deadline is not None
                else None
            ),
            heartbeat_timeout=timedelta(seconds=t.heartbeat),
            retry_policy=steps.IO_RETRY,
        )
        if options.webhook_url:
            # A notification, not a pipeline step: the documents are stored whatever the
            # receiver does, so a failed delivery is logged rather than failing them.
            self._stage = steps.CALL_EXTERNAL_API
            try:
                await workflow.execute_activity(
                    steps.CALL_EXTERNAL_API,
                    WebhookRequest(options.webhook_url, outcomes),
                    task_queue=q.io,
                    start_to_close_timeout=steps.attempt_budget(t.io_start_to_close),
                    heartbeat_timeout=timedelta(seconds=t.heartbeat),
                    retry_policy=steps.IO_RETRY,
                )
            except ActivityError as err:
                workflow.logger.warning("webhook delivery failed: %s", err.cause or err)
        self._stage = "done"
        return PipelineResult(run_id=input.run_id, outcomes=outcomes)
