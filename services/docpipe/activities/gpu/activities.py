"""GPU-queue activities: batched inference over a batch of documents."""

from __future__ import annotations

import asyncio

from temporalio import activity

from docpipe.activities.gpu.embedder import Embedder
from docpipe.activities.heartbeat import heartbeating
from docpipe.chunks import chunks_from_json
from docpipe.models import (
    DocumentFailure,
    EmbeddedDocument,
    EmbeddingJob,
    EmbedResult,
    Stage,
)
from docpipe.storage import keys
from docpipe.storage.arrays import to_npy
from docpipe.storage.objects import ObjectNotFound, ObjectStore
from docpipe.workflows import steps


class GpuActivities:
    def __init__(self, store: ObjectStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder

    @activity.defn(name=steps.GENERATE_EMBEDDINGS)
    async def generate_embeddings(self, jobs: list[EmbeddingJob]) -> EmbedResult:
        """Embed every chunk of the batch in one model call, then split per document."""
        result = EmbedResult()
        async with heartbeating():
            loaded = await asyncio.gather(
                *(self.store.get(job.chunks_key) for job in jobs), return_exceptions=True
            )
            texts: list[str] = []
            spans: list[tuple[EmbeddingJob, int, int]] = []
            for job, data in zip(jobs, loaded, strict=True):
                if isinstance(data, ObjectNotFound):
                    result.failed.append(
                        DocumentFailure(job.document_id, Stage.EMBED, f"chunks missing: {data}")
                    )
                    continue
                if isinstance(data, BaseException):
                    raise data  # the store is down: retry the batch
                chunk_texts = [c.text for c in chunks_from_json(data)]
                spans.append((job, len(texts), len(texts) + len(chunk_texts)))
                texts.extend(chunk_texts)

            vectors = await self.embedder.embed(texts)

            async def save(job: EmbeddingJob, start: int, end: int) -> EmbeddedDocument:
                key = keys.embeddings(job.document_id)
                await self.store.put(key, to_npy(vectors[start:end]), "application/x-npy")
                return EmbeddedDocument(
                    document_id=job.document_id,
                    embeddings_key=key,
                    chunks_key=job.chunks_key,
                    chunk_count=end - start,
                    dimensions=self.embedder.dimensions,
                    model=self.embedder.name,
                )

            result.succeeded = list(await asyncio.gather(*(save(*span) for span in spans)))
        return result
