"""Search what docpipe stored: vector (Chroma), text (PostgreSQL) or both fused.

One :class:`Searcher` serves the CLI and the HTTP API. Each retriever returns
more candidates than asked (``CANDIDATES_PER_RESULT`` x k), the hybrid mode
fuses their chunk rankings with reciprocal rank fusion, and every result is
joined with its document's row so that only succeeded documents that pass the
filters come back, with their title and source.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from docpipe.retrieval.filters import SearchMode, SearchRequest
from docpipe.retrieval.fusion import reciprocal_rank_fusion
from docpipe.storage.chunk_texts import ChunkTexts
from docpipe.storage.metadata import MetadataStore

if TYPE_CHECKING:  # numpy and Chroma only for vector search: text search runs without them
    import numpy as np

    from docpipe.storage.vectors import VectorStore

CANDIDATES_PER_RESULT = 4
"""Each retriever's candidates per result asked: room for fusion and for filtering."""
MIN_CANDIDATES = 40
MAX_FILTERED_DOCUMENTS = 5000
"""Up to this many documents pass a tag/type filter, vector search is confined to
them in Chroma; beyond it, candidates are over-fetched and filtered afterwards."""

QueryEmbedder = Callable[[str], Awaitable["np.ndarray"]]
"""``query -> vector``, with the model the documents were embedded with."""

ChunkKey = tuple[str, int]


@dataclass
class SearchHit:
    """One chunk found, with what a reader needs to judge and open it."""

    document_id: str
    chunk_index: int
    text: str
    score: float
    """Cosine similarity (vector), ts_rank (text) or the fused RRF score (hybrid)."""
    title: str = ""
    source: str = ""
    content_type: str = ""
    language: str | None = None
    tags: list[str] = field(default_factory=list)
    vector_rank: int | None = None
    text_rank: int | None = None


@dataclass
class _Candidate:
    text: str
    score: float


class Searcher:
    def __init__(
        self,
        metadata: MetadataStore,
        vectors: VectorStore | None,
        embed_query: QueryEmbedder | None,
    ) -> None:
        self.metadata = metadata
        self.vectors = vectors
        self.embed_query = embed_query
        self.chunk_texts = ChunkTexts(metadata)

    async def search(self, request: SearchRequest) -> list[SearchHit]:
        pool = max(request.k * CANDIDATES_PER_RESULT, MIN_CANDIDATES)
        wants_vector = request.mode in (SearchMode.VECTOR, SearchMode.HYBRID)
        wants_text = request.mode in (SearchMode.TEXT, SearchMode.HYBRID)
        vector_task = self._vector(request, pool) if wants_vector else _nothing()
        text_task = self._text(request, pool) if wants_text else _nothing()
        by_vector, by_text = await asyncio.gather(vector_task, text_task)

        candidates: dict[ChunkKey, _Candidate] = {}
        for key, candidate in [*by_text.items(), *by_vector.items()]:
            candidates.setdefault(key, candidate)
        if request.mode is SearchMode.HYBRID:
            ranked = reciprocal_rank_fusion([list(by_vector), list(by_text)])
        else:
            source = by_vector if request.mode is SearchMode.VECTOR else by_text
            ranked = [(key, candidate.score) for key, candidate in source.items()]

        rows = await self.metadata.rows({key[0] for key, _ in ranked})
        vector_ranks = {key: rank for rank, key in enumerate(by_vector, start=1)}
        text_ranks = {key: rank for rank, key in enumerate(by_text, start=1)}
        hits: list[SearchHit] = []
        for key, score in ranked:
            row = rows.get(key[0])
            if row is None or not _passes(row, request):
                continue
            hits.append(
                SearchHit(
                    document_id=key[0],
                    chunk_index=key[1],
                    text=candidates[key].text,
                    score=round(float(score), 6),
                    title=row.get("title") or "",
                    source=row.get("source") or "",
                    content_type=row.get("content_type") or "",
                    language=row.get("language"),
                    tags=list(row.get("tags") or []),
                    vector_rank=vector_ranks.get(key),
                    text_rank=text_ranks.get(key),
                )
            )
            if len(hits) == request.k:
                break
        return hits

    async def _vector(self, request: SearchRequest, pool: int) -> dict[ChunkKey, _Candidate]:
        if self.vectors is None or self.embed_query is None:
            raise RuntimeError("vector search needs the vector store and a query embedder")
        filters = request.filters
        where: dict[str, Any] = {}
        if filters.language is not None:
            where["language"] = filters.language
        if filters.narrows_documents:
            allowed = await self.metadata.succeeded_ids(
                tag=filters.tag,
                content_type=filters.content_type,
                language=filters.language,
                limit=MAX_FILTERED_DOCUMENTS + 1,
            )
            if not allowed:
                return {}
            if len(allowed) <= MAX_FILTERED_DOCUMENTS:
                where = {"document_id": {"$in": allowed}}
            else:
                pool *= 4  # not selective: over-fetch, the row check filters
        vector = await self.embed_query(request.query)
        hits = await self.vectors.nearest(vector, pool, where or None)
        return {(h.document_id, h.chunk_index): _Candidate(h.text, h.similarity) for h in hits}

    async def _text(self, request: SearchRequest, pool: int) -> dict[ChunkKey, _Candidate]:
        filters = request.filters
        hits = await self.chunk_texts.search(
            request.query,
            limit=pool,
            tag=filters.tag,
            content_type=filters.content_type,
            language=filters.language,
        )
        return {(h.document_id, h.chunk_index): _Candidate(h.text, h.rank) for h in hits}


async def _nothing() -> dict[ChunkKey, _Candidate]:
    return {}


def _passes(row: dict[str, Any], request: SearchRequest) -> bool:
    """The document is searchable (succeeded) and matches every filter."""
    filters = request.filters
    return (
        row.get("status") == "succeeded"
        and (filters.tag is None or filters.tag in (row.get("tags") or []))
        and (filters.language is None or row.get("language") == filters.language)
        and (filters.content_type is None or row.get("content_type") == filters.content_type)
    )
