"""CPU-queue activities: text extraction and processing in a process pool.

The activity itself is async and runs in the worker's event loop: it reads the
raw bytes from the object store and writes the artifacts back (IO, cheap),
while the text work for each document runs in a process pool (CPU, sized
WORKER_CPU_THREADS, each process under a memory and CPU-time limit: see
:mod:`.pool`). This keeps the GIL out of the way, lets heartbeats
flow while documents are being processed, and needs no cross-process heartbeat
plumbing that sync multiprocess activities would.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from temporalio import activity

from docpipe import steps
from docpipe.activities.cpu.extract import NeedsOcr, sniff_content_type
from docpipe.activities.cpu.pdf import render_pages
from docpipe.activities.cpu.text_pipeline import PreparedText, TextOptions, prepare_text
from docpipe.activities.heartbeat import heartbeating
from docpipe.chunks import Chunk, bundle_to_json
from docpipe.errors import DocumentError
from docpipe.metrics.cpu import INPUT_BYTES
from docpipe.models import (
    DocumentFailure,
    OcrJob,
    PreparedDocument,
    PrepareResult,
    Stage,
    TextJob,
)
from docpipe.storage import keys
from docpipe.storage.objects import ObjectNotFound, ObjectStore


class CpuActivities:
    def __init__(self, store: ObjectStore, pool: Executor, options: TextOptions) -> None:
        self.store = store
        self.pool = pool
        self.options = options

    @activity.defn(name=steps.PREPARE_TEXT)
    async def prepare_text(self, jobs: list[TextJob]) -> PrepareResult:
        """extract_text_from_document -> preprocess_text -> validate_document_structure
        -> tokenize_text -> compress_document + word frequencies, per document."""
        result = PrepareResult()
        chunks: dict[str, list[Chunk]] = {}
        async with heartbeating():
            outcomes = await asyncio.gather(*(self._prepare_one(job) for job in jobs))
            for outcome in outcomes:
                if isinstance(outcome, DocumentFailure):
                    result.failed.append(outcome)
                elif isinstance(outcome, OcrJob):
                    result.needs_ocr.append(outcome)
                else:
                    document, chunks[document.document_id] = outcome
                    result.succeeded.append(document)
            if chunks:
                # The batch's chunks in one object: the GPU and IO steps read it once.
                key = keys.chunk_bundle(j.document_id for j in jobs)  # a retry: same key
                await self.store.put(key, bundle_to_json(chunks), "application/json")
                for document in result.succeeded:
                    document.chunks_key = key
        return result

    async def _prepare_one(
        self, job: TextJob
    ) -> tuple[PreparedDocument, list[Chunk]] | DocumentFailure | OcrJob:
        try:
            raw = await self.store.get(job.raw_key)
        except ObjectNotFound:
            return DocumentFailure(
                job.document_id, Stage.EXTRACT, f"raw object {job.raw_key} is missing"
            )
        INPUT_BYTES.inc(len(raw))
        loop = asyncio.get_running_loop()
        try:
            prepared: PreparedText = await loop.run_in_executor(
                self.pool,
                prepare_text,
                raw,
                job.content_type,
                self.options,
                job.language_hint,
                # The file name is a hint for the sniffer (.md, .html).
                job.filename or job.source,
            )
        except DocumentError as err:
            # A document that killed its pool process never said what it was: sniff here.
            content_type = getattr(err, "content_type", "") or sniff_content_type(
                raw, declared=job.content_type, filename=job.filename or job.source
            )
            return DocumentFailure(job.document_id, err.stage, err.reason, content_type)
        except NeedsOcr as need:
            return await self._ocr_job(job, raw, need)

        doc_id = job.document_id
        text_key, compressed_key = keys.text(doc_id), keys.compressed(doc_id)
        await asyncio.gather(
            self.store.put(text_key, prepared.text.encode("utf-8"), "text/plain; charset=utf-8"),
            self.store.put(compressed_key, prepared.compressed, "application/gzip"),
        )
        document = PreparedDocument(
            document_id=doc_id,
            text_key=text_key,
            chunks_key="",  # the batch's chunk bundle, once written
            compressed_key=compressed_key,
            title=prepared.title,
            language=prepared.language,
            language_confidence=prepared.language_confidence,
            char_count=prepared.char_count,
            word_count=prepared.word_count,
            token_count=prepared.token_count,
            chunk_count=len(prepared.chunks),
            compressed_bytes=len(prepared.compressed),
            top_words=prepared.top_words,
            quality_score=prepared.quality,
            content_type=prepared.content_type,
        )
        return document, prepared.chunks

    async def _ocr_job(self, job: TextJob, raw: bytes, need: NeedsOcr) -> OcrJob | DocumentFailure:
        """Images go to OCR as they are; scanned PDF pages are rendered to PNGs first
        (here, on the CPU, so the GPU worker only ever sees images)."""
        if need.content_type != "application/pdf":
            return OcrJob(job.document_id, [job.raw_key], need.content_type, is_image=True)
        loop = asyncio.get_running_loop()
        try:
            pngs = await loop.run_in_executor(self.pool, render_pages, raw, need.pages)
        except DocumentError as err:
            return DocumentFailure(job.document_id, err.stage, err.reason)
        page_keys = [keys.page_image(job.document_id, page) for page in need.pages]
        await asyncio.gather(
            *(self.store.put(k, png, "image/png") for k, png in zip(page_keys, pngs, strict=True))
        )
        return OcrJob(job.document_id, page_keys, need.content_type, is_image=False)
