"""GPU-queue activities: batched inference over a batch of documents.

``generate_embeddings`` reads each document's chunks, takes every vector it
can from the embedding cache, and sends only new chunk texts to the shared
micro-batcher, which merges them with the requests of every other activity
running in this worker into large model calls.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
from temporalio import activity
from temporalio.exceptions import ApplicationError

from docpipe.activities.gpu.batcher import MicroBatcher
from docpipe.activities.gpu.classify import DocumentClassifier, document_vector
from docpipe.activities.gpu.embedder import Embedder
from docpipe.activities.gpu.embedding_cache import (
    VectorLru,
    chunk_hash,
    encode_meta,
    load_stored_vectors,
    meta_key,
)
from docpipe.activities.gpu.llm import Summarizer
from docpipe.activities.gpu.summarize import EmbeddedText
from docpipe.activities.heartbeat import heartbeating
from docpipe.chunks import chunks_from_json
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
from docpipe.storage.arrays import from_npy, to_npy
from docpipe.storage.objects import ObjectNotFound, ObjectStore
from docpipe.workflows import steps

SUMMARY_ROW_CHARS = 1000
"""The summary kept in the metadata row; the whole one is in the object store."""


@dataclass
class _Doc:
    job: EmbeddingJob
    texts: list[str]
    hashes: list[str]
    stored: dict[str, np.ndarray]
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
            loaded = await asyncio.gather(*(self._load(job) for job in jobs))
            docs: list[_Doc] = []
            for item in loaded:
                if isinstance(item, DocumentFailure):
                    result.failed.append(item)
                else:
                    docs.append(item)
            vectors = await self._vectors_for(docs)
            result.succeeded = list(await asyncio.gather(*(self._save(d, vectors) for d in docs)))
        return result

    async def _load(self, job: EmbeddingJob) -> _Doc | DocumentFailure:
        try:
            data = await self.store.get(job.chunks_key)
        except ObjectNotFound as err:
            return DocumentFailure(job.document_id, Stage.EMBED, f"chunks missing: {err}")
        chunks = chunks_from_json(data)
        texts = [c.text for c in chunks]
        stored = await load_stored_vectors(self.store, job.document_id, self.embedder.name)
        return _Doc(
            job, texts, [chunk_hash(t) for t in texts], stored, [c.token_count for c in chunks]
        )

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

    async def _save(self, doc: _Doc, vectors: dict[str, np.ndarray]) -> EmbeddedDocument:
        doc_id = doc.job.document_id
        key = keys.embeddings(doc_id)
        unchanged = bool(doc.stored) and list(doc.stored) == doc.hashes
        matrix = (
            np.stack([vectors[h] for h in doc.hashes])
            if doc.hashes
            else np.zeros((0, self.embedder.dimensions), dtype=np.float32)
        )
        if not unchanged:
            # Vectors first, then the sidecar that vouches for them.
            npy = to_npy(matrix)
            await self.store.put(key, npy, "application/x-npy")
            meta = encode_meta(self.embedder.name, doc.hashes, npy)
            await self.store.put(meta_key(doc_id), meta, "application/json")
        embedded = EmbeddedDocument(
            document_id=doc_id,
            embeddings_key=key,
            chunks_key=doc.job.chunks_key,
            chunk_count=len(doc.hashes),
            dimensions=self.embedder.dimensions,
            model=self.embedder.name,
        )
        if self.classifier is not None and len(matrix):
            # classify_document: the document's vector against the label descriptions.
            lead = " ".join(doc.texts[:2])  # a model classifier reads the opening chunks
            result = await self.classifier.classify_document(lead, document_vector(matrix))
            embedded.label, embedded.label_score = result.label, result.score
        return embedded

    @activity.defn(name=steps.RUN_LLM_INFERENCE)
    async def run_llm_inference(self, jobs: list[SummaryJob]) -> SummaryResult:
        """A summary per document from the configured engine, stored beside its text.

        Documents come with the chunk vectors generate_embeddings stored: the
        summary ranks with them, so nothing embedded before is embedded again."""
        if self.summarizer is None:
            raise ApplicationError("this GPU worker has no summarizer", non_retryable=True)
        result = SummaryResult()
        async with heartbeating():
            loaded = await asyncio.gather(*(self._summary_input(j) for j in jobs))
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

    async def _summary_input(self, job: SummaryJob) -> EmbeddedText | str | DocumentFailure:
        """The chunks and their vectors when the job names them, else the text."""
        try:
            if job.embeddings_key and job.chunks_key:
                npy, chunks = await asyncio.gather(
                    self.store.get(job.embeddings_key), self.store.get(job.chunks_key)
                )
                texts = [c.text for c in chunks_from_json(chunks)]
                vectors = from_npy(npy)
                if len(texts) == len(vectors):
                    return EmbeddedText(texts, vectors)
            return (await self.store.get(job.text_key)).decode("utf-8")
        except ObjectNotFound as err:
            return DocumentFailure(job.document_id, Stage.SUMMARIZE, f"text missing: {err}")
