"""`docpipe search`, `show` and `serve`: the read path, from the stores or a running API.

What was ingested is read back without Temporal: ``search`` and ``show`` ask
the stores directly (or a ``docpipe serve`` named by ``--api``), ``serve``
offers the same read path over HTTP.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from docpipe.client.cli.root import Output, OutputFormat, cli_settings, console, err_console
from docpipe.config import Settings

if TYPE_CHECKING:
    from docpipe.retrieval.filters import SearchRequest
    from docpipe.retrieval.searcher import SearchHit


Api = Annotated[
    str | None,
    typer.Option(
        "--api",
        envvar="DOCPIPE_API_URL",
        help="Ask a running `docpipe serve` at this URL instead of the stores",
        show_default=False,
    ),
]


class SearchModeChoice(StrEnum):
    vector = "vector"
    text = "text"
    hybrid = "hybrid"


def search(
    query: Annotated[str, typer.Argument(help="What to look for, in words")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many chunks")] = 10,
    mode: Annotated[
        SearchModeChoice,
        typer.Option(help="vector: meaning (Chroma); text: words (PostgreSQL); hybrid: both"),
    ] = SearchModeChoice.hybrid,
    tag: Annotated[str | None, typer.Option(help="Only documents with this tag")] = None,
    language: Annotated[str | None, typer.Option(help="Only this language (ISO 639-1)")] = None,
    type_: Annotated[
        str | None, typer.Option("--type", help="Only this MIME type, e.g. text/html")
    ] = None,
    api: Api = None,
    output: Output = OutputFormat.table,
) -> None:
    """Search what was ingested.

    Returns the chunks that best answer QUERY with their document's title and
    source: by meaning (vector), by words (text) or both fused (hybrid)."""
    from docpipe.retrieval.filters import BadSearch, search_request
    from docpipe.retrieval.render import hits_table, json_text

    try:
        request = search_request(
            query, k=k, mode=mode.value, tag=tag, language=language, content_type=type_
        )
    except BadSearch as err:
        err_console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    try:
        if api:
            from docpipe.retrieval.remote import DocpipeApi

            hits = asyncio.run(DocpipeApi(api).search(request))
        else:
            hits = asyncio.run(_search_stores(cli_settings(), request))
    except BadSearch as err:  # the API server's 422
        err_console.print(f"[red]{err}[/red]", highlight=False)
        raise typer.Exit(2) from None
    if output is OutputFormat.json:
        print(json_text({"query": request.query, "mode": request.mode.value, "results": hits}))
    else:
        console.print(hits_table(request.query, request.mode.value, hits))


async def _search_stores(settings: Settings, request: SearchRequest) -> list[SearchHit]:
    from docpipe.retrieval.service import open_read_path

    async with open_read_path(settings) as read_path:
        return await read_path.search(request)


async def _show_from_stores(settings: Settings, reference: str) -> dict | None:
    from docpipe.retrieval.service import open_read_path

    async with open_read_path(settings) as read_path:
        return await read_path.show(reference)


def show(
    document: Annotated[str, typer.Argument(help="A document id, or its source (URL or path)")],
    api: Api = None,
    output: Output = OutputFormat.table,
) -> None:
    """Show one document's record.

    Status, type, language, classification, quality, duplicates, image
    information, summary, chunks, object keys, attempts and timings."""
    from docpipe.retrieval.lookup import sections
    from docpipe.retrieval.render import json_text, record_view

    if api:
        from docpipe.retrieval.remote import DocpipeApi

        found = asyncio.run(DocpipeApi(api).show(document))
    else:
        found = asyncio.run(_show_from_stores(cli_settings(), document))
    if found is None:
        err_console.print(
            f"[red]no document {document!r}: not an id or source docpipe stored[/red]"
        )
        raise typer.Exit(1)
    if output is OutputFormat.json:
        print(json_text(found))
    else:
        console.print(record_view(sections(found)))


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a container)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    request_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds one request may take (then 504)")
    ] = 10.0,
) -> None:
    """Serve search and lookup over HTTP.

    GET /search, /documents/{id}, /documents?source=, /healthz; the OpenAPI
    schema is at /openapi.json and browsable at /docs."""
    import uvicorn

    from docpipe.retrieval.api import create_app

    settings = cli_settings()
    app_ = create_app(settings, request_timeout_s=request_timeout)
    uvicorn.run(app_, host=host, port=port, log_level=settings.log_level.lower())
