"""Chunk vectors in ChromaDB, one entry per chunk, keyed by document and index.

A process opens ONE :class:`VectorStore` (one ``chromadb.AsyncHttpClient``,
whose HTTP connection pool is shared by all concurrent activities). We always
pass our own embeddings: the collection is created with
``embedding_function=None`` because Chroma's default embedder would try to
download a model at run time.

Writes are idempotent: ids are ``"<document_id>:<chunk_index>"``, so a re-run
overwrites the same entries, and chunks beyond the new count are deleted, so
a re-run that produces fewer chunks leaves nothing stale behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from docpipe.config import ConfigError, Settings
from docpipe.metrics.io import count_bytes, timed

MetadataValue = str | int | float | bool

# The IO worker runs up to ~200 concurrent activities against one client.
_HTTP_MAX_CONNECTIONS = 200


def chunk_id(document_id: str, index: int) -> str:
    return f"{document_id}:{index}"


class VectorDbCredentialsRefused(ConfigError):
    """The Chroma server refused our credentials (VECTOR_DB_TOKEN missing or wrong).

    A configuration error, not an outage: retrying cannot help. The message names
    VECTOR_DB_URL and the header, never the token."""


def auth_headers(settings: Settings) -> dict[str, str]:
    """The header that carries VECTOR_DB_TOKEN, as Chroma's TokenAuthClientProvider
    would send it; none without a token.

    Passed as the client's ``headers``: chromadb's AsyncHttpClient (1.5) never asks
    the ``chroma_client_auth_provider`` setting for headers (only the sync client
    does), so those settings would send nothing."""
    if settings.vector_db_token is None:
        return {}
    token = settings.vector_db_token.get_secret_value()
    header = settings.vector_db_auth_header
    return {header: f"Bearer {token}" if header == "Authorization" else token}


def _one_http_pool_per_client() -> None:
    """Give every chromadb async client its own httpx clients (once per process).

    chromadb 1.5's AsyncFastAPI keeps them in a class attribute keyed by event loop,
    so every async client of a loop sends the headers of the first one created
    (chroma-core/chroma#6869): a token would go to another server, or none would be
    sent at all. This is the upstream fix (an instance attribute), applied here until
    a chromadb release has it."""
    from chromadb.api.async_fastapi import AsyncFastAPI

    if getattr(AsyncFastAPI, "_docpipe_own_pool", False):
        return
    shared_init = AsyncFastAPI.__init__

    def __init__(self: Any, system: Any) -> None:
        shared_init(self, system)
        self._clients = {}  # and _cleanup() closes only these

    AsyncFastAPI.__init__ = __init__  # type: ignore[method-assign]
    AsyncFastAPI._docpipe_own_pool = True  # type: ignore[attr-defined]


def _refused(settings: Settings, err: Exception) -> VectorDbCredentialsRefused:
    sent = (
        f"the VECTOR_DB_TOKEN sent in {settings.vector_db_auth_header}"
        if settings.vector_db_token is not None
        else "no credentials: VECTOR_DB_TOKEN is not set"
    )
    return VectorDbCredentialsRefused(
        f"the Chroma server at VECTOR_DB_URL={settings.vector_db_url} refused the "
        f"credentials ({sent}; the server said: {str(err).strip() or type(err).__name__})"
    )


@dataclass
class DocumentVectors:
    """One document's chunks, their vectors and the metadata copied onto each."""

    document_id: str
    texts: list[str]
    vectors: np.ndarray
    metadata: Mapping[str, MetadataValue | None] = field(default_factory=dict)


@dataclass(frozen=True)
class VectorHit:
    document_id: str
    chunk_index: int
    text: str
    similarity: float
    """Cosine similarity (1 - the collection's cosine distance)."""


class VectorStore:
    """One collection of chunk vectors on a Chroma server."""

    def __init__(self, client: Any, collection: Any) -> None:
        self._client = client
        self._collection = collection
        self._max_batch: int | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[VectorStore]:
        """Connect to VECTOR_DB_URL and get (or create) the collection.

        Raises :class:`VectorDbCredentialsRefused` if the server refuses the
        credentials (VECTOR_DB_TOKEN)."""
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from chromadb.errors import AuthorizationError, ChromaAuthError

        url = urlsplit(settings.vector_db_url)
        if url.scheme not in {"http", "https"} or not url.hostname:
            raise ValueError(
                f"VECTOR_DB_URL must be http(s)://host[:port], got {settings.vector_db_url!r}"
            )
        ssl = url.scheme == "https"
        _one_http_pool_per_client()
        try:
            # The client asks the server who we are as it is created: a server with
            # token authentication refuses missing or wrong credentials there.
            client = await chromadb.AsyncHttpClient(
                host=url.hostname,
                port=url.port or (443 if ssl else 80),
                ssl=ssl,
                headers=auth_headers(settings),
                settings=ChromaSettings(
                    anonymized_telemetry=False,
                    chroma_http_max_connections=_HTTP_MAX_CONNECTIONS,
                ),
            )
            collection = await client.get_or_create_collection(
                settings.vector_collection,
                embedding_function=None,
                metadata={"hnsw:space": "cosine"},
            )
        except (ChromaAuthError, AuthorizationError) as err:  # HTTP 403 and 401
            raise _refused(settings, err) from None
        try:
            yield cls(client, collection)
        finally:
            # Its own connections (see _one_http_pool_per_client), so closing them
            # cannot cut off another client's.
            await client._server._cleanup()

    @property
    def collection_name(self) -> str:
        return str(self._collection.name)

    async def upsert_document(
        self,
        document_id: str,
        chunk_texts: list[str],
        embeddings: np.ndarray,
        metadata: Mapping[str, MetadataValue | None] | None = None,
    ) -> None:
        """Make the document's entries exactly these chunks.

        ``metadata`` (source, title, language...) is copied onto every chunk,
        next to ``document_id`` and ``chunk_index``; None values are dropped
        because Chroma stores only scalars.
        """
        await self.upsert_documents(
            [DocumentVectors(document_id, chunk_texts, embeddings, metadata or {})]
        )

    @timed("chroma", "upsert")
    async def upsert_documents(self, documents: list[DocumentVectors]) -> None:
        """Make each document's entries exactly its chunks, for a whole batch in a few
        calls: one upsert per ``max_batch`` chunks and one delete of what is left over
        from longer earlier versions (a document with no chunks loses them all)."""
        if not documents:
            return
        ids: list[str] = []
        vectors: list[np.ndarray] = []
        texts: list[str] = []
        metadatas: list[dict[str, MetadataValue]] = []
        for doc in documents:
            matrix = np.asarray(doc.vectors, dtype=np.float32)
            count = len(doc.texts)
            if matrix.ndim != 2 or matrix.shape[0] != count:
                raise ValueError(
                    f"{doc.document_id}: {count} chunks but embeddings of shape "
                    f"{matrix.shape}; expected ({count}, d)"
                )
            shared = {k: v for k, v in doc.metadata.items() if v is not None}
            ids.extend(chunk_id(doc.document_id, i) for i in range(count))
            texts.extend(doc.texts)
            metadatas.extend(
                {**shared, "document_id": doc.document_id, "chunk_index": i} for i in range(count)
            )
            if count:
                vectors.append(matrix)
        matrix = np.concatenate(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
        count_bytes("chroma", "out", matrix.nbytes + sum(len(t.encode()) for t in texts))
        step = await self.max_batch()
        for start in range(0, len(ids), step):
            await self._collection.upsert(
                ids=ids[start : start + step],
                embeddings=matrix[start : start + step],
                documents=texts[start : start + step],
                metadatas=metadatas[start : start + step],
            )
        # Upsert first, then trim: a crash in between leaves extra chunks (fixed by
        # the retry), never a document with no chunks at all.
        stale = [
            {"$and": [{"document_id": d.document_id}, {"chunk_index": {"$gte": len(d.texts)}}]}
            for d in documents
        ]
        await self._collection.delete(where=stale[0] if len(stale) == 1 else {"$or": stale})

    async def max_batch(self) -> int:
        """The most records the server takes in one call (asked once)."""
        if self._max_batch is None:
            try:
                self._max_batch = int(await self._client.get_max_batch_size())
            except Exception:  # an older server: a size every server accepts
                self._max_batch = 1000
        return max(self._max_batch, 1)

    @timed("chroma", "delete")
    async def delete_document(self, document_id: str) -> None:
        await self._collection.delete(where={"document_id": document_id})

    @timed("chroma", "count")
    async def count(self) -> int:
        """Chunks in the collection, over all documents."""
        return int(await self._collection.count())

    @timed("chroma", "count")
    async def count_for(self, document_id: str) -> int:
        """Chunks stored for one document."""
        found = await self._collection.get(where={"document_id": document_id}, include=[])
        return len(found["ids"])

    @timed("chroma", "get")
    async def chunks_for(self, document_id: str) -> list[dict[str, Any]]:
        """The document's chunks in order: ``{"id", "text", "metadata"}`` each."""
        found = await self._collection.get(
            where={"document_id": document_id}, include=["documents", "metadatas"]
        )
        chunks = [
            {"id": id_, "text": text, "metadata": dict(meta or {})}
            for id_, text, meta in zip(
                found["ids"], found["documents"] or [], found["metadatas"] or [], strict=True
            )
        ]
        return sorted(chunks, key=lambda c: int(c["metadata"].get("chunk_index", 0)))

    @timed("chroma", "query")
    async def nearest(
        self, vector: np.ndarray, n: int, where: Mapping[str, Any] | None = None
    ) -> list[VectorHit]:
        """The ``n`` chunks closest to ``vector`` (cosine), best first."""
        found = await self._collection.query(
            query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1),
            n_results=n,
            where=dict(where) if where else None,
            include=["documents", "metadatas", "distances"],
        )
        ids = found["ids"][0] if found["ids"] else []
        texts = (found.get("documents") or [[]])[0] or []
        metas = (found.get("metadatas") or [[]])[0] or []
        distances = (found.get("distances") or [[]])[0] or []
        return [
            VectorHit(
                document_id=str((meta or {}).get("document_id") or id_.rpartition(":")[0]),
                chunk_index=int((meta or {}).get("chunk_index", id_.rpartition(":")[2] or 0)),
                text=text or "",
                similarity=1.0 - float(distance),
            )
            for id_, text, meta, distance in zip(ids, texts, metas, distances, strict=True)
        ]

    @timed("chroma", "heartbeat")
    async def heartbeat(self) -> int:
        """The server's clock in ns; raises if it does not answer."""
        return int(await self._client.heartbeat())


@asynccontextmanager
async def open_vector_store(settings: Settings) -> AsyncIterator[VectorStore]:
    """Shorthand for :meth:`VectorStore.open`."""
    async with VectorStore.open(settings) as store:
        yield store
