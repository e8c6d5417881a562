"""Searching through a running ``docpipe serve`` instead of the stores.

A laptop with the CLI alone (``pip install docpipe``: no torch, no Chroma client)
can still search by meaning: the API server embeds the query with the documents'
model next to the stores, and the CLI prints what it answers. ``--api URL`` (or
DOCPIPE_API_URL) picks this path for ``search`` and ``show``; the output is the
same as with local stores.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from docpipe.client.reachability import ServiceUnreachable
from docpipe.retrieval.filters import BadSearch, SearchRequest
from docpipe.retrieval.lookup import candidate_ids
from docpipe.retrieval.searcher import SearchHit

REQUEST_TIMEOUT_S = 30.0


class DocpipeApi:
    def __init__(self, url: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(5.0, timeout_s))

    async def _get(self, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as session,
                session.get(self.url + path, params=params) as response,
            ):
                body = await response.json(content_type=None)
                return response.status, body
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            reason = str(err) or type(err).__name__
            raise ServiceUnreachable(
                f"cannot reach the docpipe API at {self.url}: {reason}"
            ) from None

    async def search(self, request: SearchRequest) -> list[SearchHit]:
        params: dict[str, Any] = {"q": request.query, "k": request.k, "mode": request.mode.value}
        filters = request.filters
        for name, value in (
            ("tag", filters.tag),
            ("language", filters.language),
            ("type", filters.content_type),
        ):
            if value is not None:
                params[name] = value
        status, body = await self._get("/search", params)
        if status == 422:
            raise BadSearch(_detail(body))
        if status != 200:
            raise ServiceUnreachable(
                f"the docpipe API at {self.url} answered {status}: {_detail(body)}"
            )
        return [SearchHit(**hit) for hit in body["results"]]

    async def show(self, reference: str) -> dict[str, Any] | None:
        # The ids are worked out here: a relative path means this machine's folder.
        for document_id in candidate_ids(reference):
            status, body = await self._get(f"/documents/{document_id}", {})
            if status == 200:
                return body  # type: ignore[no-any-return]
        status, body = await self._get("/documents", {"source": reference.strip()})
        if status == 404:
            return None
        if status != 200:
            raise ServiceUnreachable(
                f"the docpipe API at {self.url} answered {status}: {_detail(body)}"
            )
        return body  # type: ignore[no-any-return]


def _detail(body: Any) -> str:
    """FastAPI's error detail, a string or a list of field errors, as one line."""
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg', '')}"
            for item in detail
            if isinstance(item, dict)
        )
    return str(detail)
