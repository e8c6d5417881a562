"""``docpipe serve``: the read path over HTTP, for applications that retrieve from
what docpipe ingested (a RAG service, a search box).

``GET /search``, ``GET /documents/{id}`` (or ``?source=``), ``GET /healthz``;
the OpenAPI schema is at ``/openapi.json`` and browsable at ``/docs``. Every
query is bounded: ``k`` at most :data:`~docpipe.retrieval.filters.MAX_K`, the
query at most a thousand characters, and each request at most
``request_timeout_s`` (504 past it), so one caller cannot hold the stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from docpipe.config import Settings
from docpipe.retrieval.filters import MAX_K, MAX_QUERY_CHARS, BadSearch, SearchMode, search_request
from docpipe.retrieval.render import jsonable
from docpipe.retrieval.service import ReadPath, open_read_path

T = TypeVar("T")


class SearchResult(BaseModel):
    document_id: str
    chunk_index: int
    text: str
    score: float
    title: str
    source: str
    content_type: str
    language: str | None
    tags: list[str]
    vector_rank: int | None
    text_rank: int | None


class SearchResponse(BaseModel):
    query: str
    mode: SearchMode
    results: list[SearchResult]


class Health(BaseModel):
    status: str
    postgres: str


def create_app(settings: Settings, *, request_timeout_s: float = 10.0) -> FastAPI:
    """The API over one :class:`ReadPath`, opened at startup and closed at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_read_path(settings) as read_path:
            if read_path.can_search_vectors():
                # Loaded before the first request is served (healthz answers only
                # after start-up), so no query pays seconds of model loading.
                await read_path.embedder.warm()
            app.state.read_path = read_path
            yield

    app = FastAPI(
        title="docpipe",
        summary="Search and look up the documents docpipe ingested.",
        lifespan=lifespan,
    )

    def read_path(request: Request) -> ReadPath:
        return request.app.state.read_path  # type: ignore[no-any-return]

    async def bounded(work: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(request_timeout_s):
                return await work
        except TimeoutError:
            raise HTTPException(
                504, f"the request took longer than {request_timeout_s:g} s"
            ) from None

    @app.exception_handler(BadSearch)
    async def bad_search(_: Request, err: BadSearch) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=422)

    @app.get("/search", response_model=SearchResponse)
    async def search(
        request: Request,
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="the query")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="how many chunks")] = 10,
        mode: SearchMode = SearchMode.HYBRID,
        tag: Annotated[str | None, Query(max_length=200)] = None,
        language: Annotated[str | None, Query(max_length=3, description="ISO 639-1")] = None,
        type: Annotated[str | None, Query(max_length=200, description="a MIME type")] = None,
    ) -> Any:
        """The chunks that best answer ``q``, with their document's title and source."""
        wanted = search_request(q, k=k, mode=mode, tag=tag, language=language, content_type=type)
        hits = await bounded(read_path(request).search(wanted))
        return {"query": wanted.query, "mode": wanted.mode, "results": jsonable(hits)}

    @app.get("/documents/{document_id}")
    async def document(request: Request, document_id: Annotated[str, Path(max_length=200)]) -> Any:
        """Everything docpipe recorded about one document."""
        found = await bounded(read_path(request).show(document_id))
        if found is None:
            raise HTTPException(404, f"no document {document_id!r}")
        return jsonable(found)

    @app.get("/documents")
    async def document_by_source(
        request: Request, source: Annotated[str, Query(min_length=1, max_length=8192)]
    ) -> Any:
        """The document ingested from ``source`` (a URL or path as the CSV named it)."""
        found = await bounded(read_path(request).show(source))
        if found is None:
            raise HTTPException(404, f"no document from {source!r}")
        return jsonable(found)

    @app.get("/healthz", response_model=Health)
    async def healthz(request: Request) -> Any:
        """Ready when PostgreSQL answers (Chroma is checked by the first vector search)."""
        try:
            async with asyncio.timeout(min(request_timeout_s, 5.0)):
                await read_path(request).metadata.ping()
        except Exception as err:  # any failure means "not ready", said plainly
            return JSONResponse(
                {"status": "unavailable", "postgres": f"{type(err).__name__}: {err}"},
                status_code=503,
            )
        return {"status": "ok", "postgres": "ok"}

    return app
