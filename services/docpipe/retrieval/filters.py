"""What a search may be narrowed to, checked before any backend is asked."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

MAX_K = 100
"""The most results one search returns (CLI and HTTP API): bounded work per query."""
MAX_QUERY_CHARS = 1000

_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")
_MIME_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


class SearchMode(enum.StrEnum):
    VECTOR = "vector"
    TEXT = "text"
    HYBRID = "hybrid"


class BadSearch(ValueError):
    """The request itself is wrong (an empty query, k out of range, a bad filter)."""


@dataclass(frozen=True)
class SearchFilters:
    """Conditions on the document a chunk belongs to; None: any."""

    tag: str | None = None
    language: str | None = None
    content_type: str | None = None

    @property
    def narrows_documents(self) -> bool:
        """Whether the set of documents must come from PostgreSQL (tags and types are there)."""
        return self.tag is not None or self.content_type is not None


@dataclass(frozen=True)
class SearchRequest:
    query: str
    k: int = 10
    mode: SearchMode = SearchMode.HYBRID
    filters: SearchFilters = SearchFilters()


def search_request(
    query: str,
    *,
    k: int = 10,
    mode: str | SearchMode = SearchMode.HYBRID,
    tag: str | None = None,
    language: str | None = None,
    content_type: str | None = None,
) -> SearchRequest:
    """A validated request; :class:`BadSearch` says what is wrong in one line."""
    text = " ".join(query.split())
    if not text:
        raise BadSearch("the query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise BadSearch(f"the query is longer than {MAX_QUERY_CHARS} characters")
    if not 1 <= k <= MAX_K:
        raise BadSearch(f"k must be between 1 and {MAX_K}, got {k}")
    try:
        search_mode = SearchMode(mode)
    except ValueError:
        choices = ", ".join(m.value for m in SearchMode)
        raise BadSearch(f"mode must be one of {choices}, got {mode!r}") from None
    tag = tag.strip() if tag else None
    if language is not None:
        language = language.strip().lower()
        if not _LANGUAGE_RE.match(language):
            raise BadSearch(f"language must be an ISO 639 code such as 'en', got {language!r}")
    if content_type is not None:
        content_type = content_type.strip().lower()
        if not _MIME_RE.match(content_type):
            raise BadSearch(f"type must be a MIME type such as 'text/html', got {content_type!r}")
    return SearchRequest(
        text, k, search_mode, SearchFilters(tag or None, language or None, content_type or None)
    )
