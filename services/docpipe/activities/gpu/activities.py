"""GPU-queue activities: batched inference over a batch of documents.

``generate_embeddings`` reads the batch's chunk bundle once, takes every
vector it can from the vectors stored by an earlier run of the same documents
(by chunk hash) or the in-process cache, and sends only new chunk texts to the
shared micro-batcher, which merges them with the requests of every other
activity running in this worker into large model calls. The batch's vectors
go back as one bundle: object-store requests, not the model, were most of
this worker's CPU per short document.
"""

from __future__ import annotations

import asyncio
import zipfile
from dataclasses import dataclass, field

import numpy as np
from temporalio import activity
from temporalio.exceptions import ApplicationError

from docpipe import steps
from docpipe.activities.gpu.batcher import MicroBatcher
from docpipe.activities.gpu.classify import DocumentClassifier, document_vector
from docpipe.activities.gpu.embedder import Embedder
from docpipe.activities.gpu.embedding_cache import VectorLru, chunk_hash, load_stored_vectors
from docpipe.activities.gpu.summaries import EmbeddedText, Summarizer
from docpipe.activities.heartbeat import heartbeating
from docpipe.chunks import Chunk, bundle_from_json, chunks_of
from docpipe.metrics.gpu import record_embedding_lookups
from docpipe.models import (
    DocumentFailure,
    DocumentSummary,
    EmbeddedDocument,
    EmbeddingJob,
    EmbedResult,
    Stage,
    SummaryJob,
    SummaryResult,
)
from docpipe.storage import keys
from docpipe.storage.arrays import VectorBundle, bundle_from_npz, bundle_to_npz
from docpipe.storage.objects import ObjectNotFound, ObjectStore, read_each_once

SUMMARY_ROW_CHARS = 1000
"""The summary kept in the metadata row; the whole one is in the object store."""


@dataclass
class _Doc:
    job: EmbeddingJob
    texts: list[str]
    hashes: list[str]
    stored: dict[str, np.ndarray]
    """Vectors an earlier run stored for this document, by chunk hash."""
    tokens: list[int] = field(default_factory=list)
    """Each chunk's token count (for the tokens-per-second metric)."""


class GpuActivities:
    def __init__(
        self,
        store: ObjectStore,
        embedder: Embedder,
        batcher: MicroBatcher[str, np.ndarray],
        lru: VectorLru | None = None,
        classifier: DocumentClassifier | None = None,
        summarizer: Summarizer | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.batcher = batcher
        self.lru = lru if lru is not None else VectorLru()
        self.classifier = classifier
        self.summarizer = summarizer
        self.cache_hits = 0
        self.embedded_chunks = 0

    @activity.defn(name=steps.GENERATE_EMBEDDINGS)
    async def generate_embeddings(self, jobs: list[EmbeddingJob]) -> EmbedResult:
        result = EmbedResult()
        async with heartbeating():
            bundles = await read_each_once(
                self.store, (j.chunks_key for j in jobs), bundle_from_json
            )
            previous = await self._previous_vectors(jobs)
            docs: list[_Doc] = []
            for job in jobs:
                bundle = bundles.get(job.chunks_key)
                chunks = chunks_of(bundle, job.document_id) if isinstance(bundle, dict) else None
                if chunks is None:
                    result.failed.append(
                        DocumentFailure(
                            job.document_id, Stage.EMBED, f"chunks missing: {job.chunks_key}"
                        )
                    )
                    continue
                docs.append(self._doc(job, chunks, previous.get(job.document_id, {})))
            vectors = await self._vectors_for(docs)
            result.succeeded = await self._save(docs, vectors, jobs)
        return result

    @staticmethod
    def _doc(job: EmbeddingJob, chunks: list[Chunk], stored: dict[str, np.ndarray]) -> _Doc:
        texts = [c.text for c in chunks]
        return _Doc(
            job, texts, [chunk_hash(t) for t in texts], stored, [c.token_count for c in chunks]
        )

    async def _previous_vectors(self, jobs: list[EmbeddingJob]) -> dict[str, dict[str, np.ndarray]]:
        """What earlier runs stored for these documents (only those stored before are
        looked up, each bundle read once), by document and chunk hash."""
        model = self.embedder.name
        found: dict[str, dict[str, np.ndarray]] = {}
        legacy = [j for j in jobs if j.previous_embeddings_key.endswith(".npy")]
        for job, stored in zip(
            legacy,
            await asyncio.gather(
                *(load_stored_vectors(self.store, j.document_id, model) for j in legacy)
            ),
            strict=True,
        ):
            found[job.document_id] = stored
        bundled = [j for j in jobs if j.previous_embeddings_key.endswith(".npz")]
        bundles = await read_each_once(
            self.store, (j.previous_embeddings_key for j in bundled), _parse_vector_bundle
        )
        for job in bundled:
            bundle = bundles.get(job.previous_embeddings_key)
            if isinstance(bundle, VectorBundle) and bundle.model == model:
                found[job.document_id] = bundle.by_hash(job.document_id)
        return found

    async def _vectors_for(self, docs: list[_Doc]) -> dict[str, np.ndarray]:
        """Vector per chunk hash: from the stored document, the LRU, else the model."""
        model = self.embedder.name
        found: dict[str, np.ndarray] = {}
        missing: dict[str, str] = {}
        missing_tokens = 0
        for doc in docs:
            for i, (digest, text) in enumerate(zip(doc.hashes, doc.texts, strict=True)):
                if digest in found or digest in missing:
                    continue
                vector = doc.stored.get(digest)
                if vector is None:
                    vector = self.lru.get(model, digest)
                if vector is None:
                    missing[digest] = text
                    missing_tokens += doc.tokens[i] if i < len(doc.tokens) else 0
                else:
                    found[digest] = vector
        self.cache_hits += len(found)
        record_embedding_lookups(model, len(found), len(missing), missing_tokens)
        if missing:
            fresh = await self.batcher.submit(list(missing.values()))
            self.embedded_chunks += len(fresh)
            for digest, vector in zip(missing, fresh, strict=True):
                found[digest] = vector
                self.lru.put(model, digest, vector)
        return found

    async def _save(
        self, docs: list[_Doc], vectors: dict[str, np.ndarray], jobs: list[EmbeddingJob]
    ) -> list[EmbeddedDocument]:
        """The batch's vectors as one bundle, then each document's classification."""
        if not docs:
            return []
        dimensions = self.embedder.dimensions
        bundle = VectorBundle(self.embedder.name, dimensions)
        for doc in docs:
            bundle.vectors[doc.job.document_id] = (
                np.stack([vectors[h] for h in doc.hashes])
                if doc.hashes
                else np.zeros((0, dimensions), dtype=np.float32)
            )
            bundle.hashes[doc.job.document_id] = doc.hashes
        key = keys.vector_bundle(j.document_id for j in jobs)
        unchanged = all(
            d.job.previous_embeddings_key == key and list(d.stored) == d.hashes for d in docs
        )
        if not unchanged:  # a re-run of the same batch with the same chunks writes nothing
            await self.store.put(key, bundle_to_npz(bundle), "application/octet-stream")
        embedded = [
            EmbeddedDocument(
                document_id=doc.job.document_id,
                embeddings_key=key,
                chunks_key=doc.job.chunks_key,
                chunk_count=len(doc.hashes),
                dimensions=dimensions,
                model=self.embedder.name,
            )
            for doc in docs
        ]
        if self.classifier is not None:
            await asyncio.gather(
                *(
                    self._classify(doc, bundle.vectors[doc.job.document_id], out)
                    for doc, out in zip(docs, embedded, strict=True)
                )
            )
        return embedded

    async def _classify(self, doc: _Doc, matrix: np.ndarray, embedded: EmbeddedDocument) -> None:
        """classify_document: the document's vector against the label descriptions."""
        if self.classifier is None or not len(matrix):
            return
        lead = " ".join(doc.texts[:2])  # a model classifier reads the opening chunks
        result = await self.classifier.classify_document(lead, document_vector(matrix))
        embedded.label, embedded.label_score = result.label, result.score

    @activity.defn(name=steps.RUN_LLM_INFERENCE)
    async def run_llm_inference(self, jobs: list[SummaryJob]) -> SummaryResult:
        """A summary per document from the configured engine, stored beside its text.

        Documents come with the chunk vectors generate_embeddings stored: the
        summary ranks with them, so nothing embedded before is embedded again."""
        if self.summarizer is None:
            raise ApplicationError("this GPU worker has no summarizer", non_retryable=True)
        result = SummaryResult()
        async with heartbeating():
            loaded = await self._summary_inputs(jobs)
            embedded = [
                (j, d) for j, d in zip(jobs, loaded, strict=True) if isinstance(d, EmbeddedText)
            ]
            plain = [(j, d) for j, d in zip(jobs, loaded, strict=True) if isinstance(d, str)]
            result.failed = [d for d in loaded if isinstance(d, DocumentFailure)]
            summaries = await asyncio.gather(
                self.summarizer.summarize_embedded([d for _, d in embedded]),
                self.summarizer.summarize([d for _, d in plain]),
            )
            done = zip(
                [j for j, _ in embedded] + [j for j, _ in plain],
                [*summaries[0], *summaries[1]],
                strict=True,
            )
            for job, summary in done:
                key = keys.summary(job.document_id)
                await self.store.put(key, summary.encode("utf-8"), "text/plain; charset=utf-8")
                result.succeeded.append(
                    DocumentSummary(
                        job.document_id, key, summary[:SUMMARY_ROW_CHARS], self.summarizer.name
                    )
                )
        return result

    async def _summary_inputs(
        self, jobs: list[SummaryJob]
    ) -> list[EmbeddedText | str | DocumentFailure]:
        """Each document's chunks and vectors when the job names them (each bundle read
        once), else its text."""
        chunk_bundles = await read_each_once(
            self.store, (j.chunks_key for j in jobs if j.embeddings_key), bundle_from_json
        )
        vector_bundles = await read_each_once(
            self.store, (j.embeddings_key for j in jobs if j.chunks_key), _parse_vector_bundle
        )

        async def one(job: SummaryJob) -> EmbeddedText | str | DocumentFailure:
            chunk_bundle = chunk_bundles.get(job.chunks_key)
            vector_bundle = vector_bundles.get(job.embeddings_key)
            if isinstance(chunk_bundle, dict) and isinstance(vector_bundle, VectorBundle):
                chunks = chunks_of(chunk_bundle, job.document_id)
                matrix = vector_bundle.vectors.get(job.document_id)
                if chunks is not None and matrix is not None and len(chunks) == len(matrix):
                    return EmbeddedText([c.text for c in chunks], matrix)
            try:
                return (await self.store.get(job.text_key)).decode("utf-8")
            except ObjectNotFound as err:
                return DocumentFailure(job.document_id, Stage.SUMMARIZE, f"text missing: {err}")

        return list(await asyncio.gather(*(one(j) for j in jobs)))


def _parse_vector_bundle(data: bytes) -> VectorBundle | None:
    """A bundle, or None when the object is not a readable one (then the document is
    embedded afresh rather than trusted)."""
    try:
        return bundle_from_npz(data)
    except (ValueError, KeyError, OSError, zipfile.BadZipFile):
        return None
