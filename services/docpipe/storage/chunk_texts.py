"""The full-text index of chunks in PostgreSQL (table ``chunk_texts``, migration 008).

Chroma answers "which chunks mean something like this"; this answers "which
chunks contain these words" -- names, error codes, rare terms that a small
embedding model blurs. ``docpipe search`` fuses the two (hybrid retrieval).

Matching is OR over the query's words and ranked by ``ts_rank`` (normalised by
chunk length), not AND: a known-item query such as a title should find its
document even when one word of it is missing from the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from docpipe.metrics.io import timed
from docpipe.storage.metadata import MetadataStore
from docpipe.storage.text_search import text_search_config


@dataclass(frozen=True)
class ChunkTextRows:
    """One document's chunks as the index stores them."""

    document_id: str
    texts: Sequence[str]
    language: str | None = None


@dataclass(frozen=True)
class TextHit:
    document_id: str
    chunk_index: int
    text: str
    rank: float


# Any of the query's words may match (OR): its lexemes in the stemming dictionary
# (inflected forms) and, for the same words, in the simple one (exact words); a
# word the stemming dictionary drops is a stop word, so its plain form goes too
# (positions tell which: both dictionaries number the words alike). Lexemes are
# quoted by tsquery's rules (a quote doubled, a backslash escaped) and joined
# with |; a query of stop words only has none: NULL, nothing matches.
_QUERY = r"""
    WITH stemmed AS (
        SELECT lexeme, positions FROM unnest(to_tsvector(%(config)s::regconfig, %(query)s))
    ), plain AS (
        SELECT lexeme, positions FROM unnest(to_tsvector('simple'::regconfig, %(query)s))
    ), words AS (
        SELECT lexeme AS w FROM stemmed
        UNION
        SELECT lexeme FROM plain
        WHERE positions && ARRAY(SELECT unnest(positions) FROM stemmed)
    ), tsq AS (
        SELECT string_agg(
            '''' || replace(replace(w, '\', '\\'), '''', '''''') || '''', ' | '
        )::tsquery AS query
        FROM words
    )
    SELECT c.document_id, c.chunk_index, c.text, ts_rank(c.tsv, tsq.query, 1) AS rank
    FROM tsq
    JOIN chunk_texts c ON c.tsv @@ tsq.query
    JOIN documents d ON d.document_id = c.document_id AND d.status = 'succeeded'
    WHERE TRUE {conditions}
    ORDER BY rank DESC, c.document_id, c.chunk_index
    LIMIT %(limit)s
"""


class ChunkTexts:
    """Writes and full-text queries of ``chunk_texts``, on the metadata store's pool."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    @timed("postgres", "chunk_texts")
    async def replace(self, documents: Sequence[ChunkTextRows]) -> None:
        """Make each document's indexed chunks exactly ``texts`` (one transaction)."""
        if not documents:
            return
        rows = [
            (doc.document_id, index, text.replace("\x00", ""), text_search_config(doc.language))
            for doc in sorted(documents, key=lambda d: d.document_id)
            for index, text in enumerate(doc.texts)
        ]
        async with self.metadata.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                await cur.execute(
                    "DELETE FROM chunk_texts WHERE document_id = ANY(%s)",
                    ([d.document_id for d in documents],),
                )
                if rows:
                    await cur.executemany(
                        "INSERT INTO chunk_texts (document_id, chunk_index, text, ts_config)"
                        " VALUES (%s, %s, %s, %s::regconfig)",
                        rows,
                    )

    @timed("postgres", "text_search")
    async def search(
        self,
        query: str,
        *,
        limit: int,
        tag: str | None = None,
        content_type: str | None = None,
        language: str | None = None,
    ) -> list[TextHit]:
        """The chunks of succeeded documents that best match ``query``'s words, best first."""
        conditions = ""
        params: dict[str, Any] = {
            "query": query,
            "config": text_search_config(language) if language else "english",
            "limit": limit,
        }
        if tag is not None:
            conditions += " AND d.tags @> %(tags)s"
            params["tags"] = Jsonb([tag])
        if content_type is not None:
            conditions += " AND d.content_type = %(content_type)s"
            params["content_type"] = content_type
        if language is not None:
            conditions += " AND d.language = %(language)s"
            params["language"] = language
        async with self.metadata.connection() as conn:
            cursor = await conn.execute(_QUERY.format(conditions=conditions), params)  # type: ignore[arg-type]
            return [TextHit(*row) for row in await cursor.fetchall()]

    @timed("postgres", "chunk_texts")
    async def count_for(self, document_id: str) -> int:
        async with self.metadata.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM chunk_texts WHERE document_id = %s", (document_id,)
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0
