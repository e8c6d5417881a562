"""The read path's stores, opened once: what the CLI and the HTTP API share.

Text search and ``show`` need only PostgreSQL; Chroma is opened (and the query
model loaded) only when a vector or hybrid search first asks for it, so a
lookup stays fast and works while Chroma is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from docpipe.client.extras import absent, require
from docpipe.client.reachability import open_metadata, open_vectors
from docpipe.config import Settings
from docpipe.retrieval.filters import SearchMode, SearchRequest
from docpipe.retrieval.lookup import find_document
from docpipe.retrieval.query_embedding import QueryEmbedder
from docpipe.retrieval.searcher import Searcher, SearchHit
from docpipe.storage.metadata import MetadataStore

if TYPE_CHECKING:  # Chroma's client is the io extra: text search and show run without it
    from docpipe.storage.vectors import VectorStore

VECTOR_SEARCH_MODULES = ("numpy", "chromadb", "torch", "sentence_transformers")
"""What embedding the query and asking Chroma take (the io and gpu extras)."""


class ReadPath:
    def __init__(self, settings: Settings, metadata: MetadataStore, stack: AsyncExitStack) -> None:
        self.settings = settings
        self.metadata = metadata
        self.embedder = QueryEmbedder(settings)
        self._stack = stack
        self._vectors: VectorStore | None = None
        self._lock = asyncio.Lock()

    async def vectors(self) -> VectorStore:
        async with self._lock:
            if self._vectors is None:
                self._vectors = await self._stack.enter_async_context(open_vectors(self.settings))
        return self._vectors

    async def search(self, request: SearchRequest) -> list[SearchHit]:
        if request.mode is not SearchMode.TEXT:
            # Before any connection: a client-only install learns what to add, in a line.
            require(
                VECTOR_SEARCH_MODULES,
                f"{request.mode.value} search",
                "or --api URL of a docpipe serve, or --mode text",
            )
        vectors = await self.vectors() if request.mode is not SearchMode.TEXT else None
        searcher = Searcher(self.metadata, vectors, self.embedder)
        return await searcher.search(request)

    def can_search_vectors(self) -> bool:
        """Whether this install has what vector and hybrid search take."""
        return not absent(VECTOR_SEARCH_MODULES)

    async def show(self, reference: str) -> dict[str, Any] | None:
        return await find_document(self.metadata, reference)


@asynccontextmanager
async def open_read_path(settings: Settings) -> AsyncIterator[ReadPath]:
    async with AsyncExitStack() as stack:
        metadata = await stack.enter_async_context(open_metadata(settings))
        # Idempotent and quick; spares a database written by an older version a
        # "relation chunk_texts does not exist" until a worker next starts.
        await metadata.migrate()
        read_path = ReadPath(settings, metadata, stack)
        stack.callback(read_path.embedder.close)
        yield read_path
