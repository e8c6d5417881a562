"""The PostgreSQL metadata store: one row per document, and the queries on it.

A process opens ONE :class:`MetadataStore` (one ``AsyncConnectionPool``) and
shares it between its concurrent activities; connections are borrowed per
call and returned at once, so ~200 activities share a pool of ``max`` (20 by
default) without holding a connection while they wait on anything else.

Writes are upserts keyed by ``document_id`` (the hash of the document's
content/source), so a retried activity or a re-run CSV updates the row rather
than adding one. **Last write wins**: a later failed attempt overwrites an
earlier success of the same document. That keeps the row an honest record of
the latest attempt and the SQL trivial; ``attempts`` shows the row was
written more than once.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from docpipe.config import Settings
from docpipe.metrics.io import timed, unwatch_postgres_pool, watch_postgres_pool
from docpipe.models import DocumentOutcome, Status
from docpipe.phash import MAX_EXACT_DISTANCE
from docpipe.phash import bands as phash_bands

log = logging.getLogger(__name__)

# Any fixed 64-bit number; every docpipe process uses the same one so that
# concurrent migrate() calls queue behind each other instead of racing.
_MIGRATION_LOCK_ID = 0x646F6370697065  # "docpipe"

_JSON_FIELDS = {"tags", "top_words", "image_info"}
_COLUMNS = [f.name for f in dataclasses.fields(DocumentOutcome)]

_UPSERT = sql.SQL(
    "INSERT INTO documents ({columns}) VALUES ({values}) "
    "ON CONFLICT (document_id) DO UPDATE SET {updates}, "
    "attempts = documents.attempts + 1, updated_at = now()"
).format(
    columns=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
    values=sql.SQL(", ").join(sql.Placeholder(c) for c in _COLUMNS),
    updates=sql.SQL(", ").join(
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
        for c in _COLUMNS
        if c != "document_id"
    ),
)


def migration_scripts() -> list[tuple[str, str]]:
    """``(version, sql)`` of every ``docpipe/sql/*.sql``, in file-name order."""
    folder = resources.files("docpipe").joinpath("sql")
    scripts = [
        (entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(scripts)


def _image_phash(outcome: DocumentOutcome) -> str:
    """The outcome's image hash if it is a well-formed 64-bit one, else ""."""
    phash = (outcome.image_info or {}).get("phash")
    if isinstance(phash, str) and len(phash) == 16:
        try:
            int(phash, 16)
        except ValueError:
            return ""
        return phash.lower()
    return ""


def _row_params(outcome: DocumentOutcome) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in _COLUMNS:
        value = getattr(outcome, name)
        if name in _JSON_FIELDS:
            value = None if value is None else Jsonb(value)
        elif isinstance(value, enum.Enum):
            # psycopg would dump an Enum by member *name*; the table holds values.
            value = value.value
        params[name] = value
    return params


class MetadataStore:
    """Document rows in PostgreSQL behind a shared async connection pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, *, open_timeout_s: float = 30.0
    ) -> AsyncIterator[MetadataStore]:
        """Open the process's pool (failing fast if the server is unreachable)."""
        pool = AsyncConnectionPool(
            settings.metadata_db_conninfo,
            min_size=settings.metadata_db_pool_min,
            max_size=max(settings.metadata_db_pool_max, settings.metadata_db_pool_min, 1),
            kwargs={"autocommit": True},
            # Verify a connection on checkout: a restarted server otherwise
            # surfaces as one failed activity per stale pooled connection.
            check=AsyncConnectionPool.check_connection,
            name="docpipe-metadata",
            open=False,
        )
        await pool.open(wait=True, timeout=open_timeout_s)
        watch_postgres_pool(pool)
        try:
            yield cls(pool)
        finally:
            unwatch_postgres_pool(pool)
            await pool.close()

    # ------------------------------------------------------------------ schema

    @timed("postgres", "migrate")
    async def migrate(self) -> list[str]:
        """Apply the SQL scripts not applied yet; return their versions.

        Everything runs in one transaction that first takes a transaction-level
        advisory lock, so many workers starting at once apply each script
        exactly once (the others wait, then find nothing to do), and a failing
        script leaves no half-applied schema behind.
        """
        applied: list[str] = []
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {version for (version,) in await cur.fetchall()}
            for version, script in migration_scripts():
                if version in done:
                    continue
                log.info("applying schema migration %s", version)
                await _run_script(conn, script)
                await conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES (%s)", (version,)
                )
                applied.append(version)
        return applied

    # ------------------------------------------------------------------ writes

    @timed("postgres", "upsert")
    async def upsert_outcomes(self, outcomes: Iterable[DocumentOutcome]) -> None:
        """Insert or update one row per outcome, in one transaction.

        ``executemany`` runs in pipeline mode: the whole batch is one round
        trip. Duplicates within the batch collapse to the last one (Postgres
        refuses to update a row twice in one statement), and rows are written
        in ``document_id`` order so concurrent batches lock rows in the same
        order and cannot deadlock.
        """
        latest = {o.document_id: o for o in outcomes}
        if not latest:
            return
        params = [_row_params(latest[key]) for key in sorted(latest)]
        hashed = {key: _image_phash(latest[key]) for key in sorted(latest)}
        band_rows = [
            (key, band, value)
            for key, phash in hashed.items()
            if phash
            for band, value in enumerate(phash_bands(phash))
        ]
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                await cur.executemany(_UPSERT, params)
                # The image index follows the row: a document's bands are its current hash's.
                await cur.execute(
                    "DELETE FROM image_hash_bands WHERE document_id = ANY(%s)", (list(hashed),)
                )
                if band_rows:
                    await cur.executemany(
                        "INSERT INTO image_hash_bands (document_id, band, value)"
                        " VALUES (%s, %s, %s)",
                        band_rows,
                    )

    # ----------------------------------------------------------------- queries

    async def _one(self, query: str, params: Any) -> dict[str, Any] | None:
        """The first row of ``query`` as a dict, or None."""
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            return await cur.fetchone()

    async def _dicts(self, query: str, params: Any) -> list[dict[str, Any]]:
        """Every row of ``query``, as dicts."""
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            return await cur.fetchall()

    async def _tuples(self, query: str, params: Any) -> list[tuple[Any, ...]]:
        """Every row of ``query``, as tuples."""
        async with self._pool.connection() as conn:
            return await (await conn.execute(query, params)).fetchall()

    async def _lookup(self, query: str, keys: Iterable[str]) -> dict[str, str]:
        """``{first column: second column}`` of ``query`` run over the distinct
        ``keys`` (its one parameter, an array); no query without keys."""
        distinct = list(set(keys))
        if not distinct:
            return {}
        return {key: value for key, value in await self._tuples(query, (distinct,))}

    @timed("postgres", "get")
    async def get(self, document_id: str) -> dict[str, Any] | None:
        """The document's row as a dict, or None if it was never written."""
        return await self._one("SELECT * FROM documents WHERE document_id = %s", (document_id,))

    @timed("postgres", "count")
    async def count_by_status(self, run_id: str | None = None) -> dict[str, int]:
        """``{"succeeded": n, "failed": m}`` over all rows, or one run's rows."""
        query = "SELECT status, count(*) FROM documents"
        params: tuple[Any, ...] = ()
        if run_id is not None:
            query += " WHERE run_id = %s"
            params = (run_id,)
        query += " GROUP BY status"
        counts = {status.value: 0 for status in Status}
        for status, count in await self._tuples(query, params):
            counts[status] = count
        return counts

    @timed("postgres", "failures")
    async def failures(
        self, limit: int = 100, run_id: str | None = None, stage: str | None = None
    ) -> list[dict[str, Any]]:
        """The dead-letter list: failed documents, newest first, with what a
        re-drive needs (source, row, title, tags) and why each failed."""
        where, params = _conditions({"run_id = %s": run_id, "failure_stage = %s": stage})
        query = (
            "SELECT document_id, source, row_number, title, tags, run_id,"
            " failure_stage AS stage, failure_reason AS reason, attempts, updated_at"
            " FROM documents WHERE status = 'failed'"
            f"{where} ORDER BY updated_at DESC, document_id LIMIT %s"
        )
        return await self._dicts(query, [*params, limit])

    @timed("postgres", "find_duplicates")
    async def first_with_content(self, sha256s: list[str]) -> dict[str, str]:
        """For each content hash, the earliest succeeded document that has it."""
        return await self._lookup(
            "SELECT DISTINCT ON (content_sha256) content_sha256, document_id FROM documents"
            " WHERE status = 'succeeded' AND content_sha256 = ANY(%s)"
            " ORDER BY content_sha256, created_at, document_id",
            sha256s,
        )

    @timed("postgres", "stored_vectors")
    async def embeddings_keys(self, document_ids: list[str]) -> dict[str, str]:
        """Where the vectors of these documents are, for those stored before."""
        return await self._lookup(
            "SELECT document_id, embeddings_key FROM documents"
            " WHERE document_id = ANY(%s) AND embeddings_key IS NOT NULL",
            document_ids,
        )

    @timed("postgres", "bundle_references")
    async def bundle_references(self) -> set[str]:
        """Every batch-bundle key (``batches/...``) a document row points at, as chunks
        or as vectors: what ``docpipe gc`` must keep."""
        rows = await self._tuples(
            "SELECT chunks_key FROM documents WHERE chunks_key LIKE %(bundles)s"
            " UNION SELECT embeddings_key FROM documents WHERE embeddings_key LIKE %(bundles)s",
            {"bundles": "batches/%"},
        )
        return {key for (key,) in rows}

    @timed("postgres", "similar_images")
    async def similar_images(
        self, phashes: dict[str, str], max_distance: int
    ) -> dict[str, tuple[str, int]]:
        """For each document's image hash, the closest image stored before that
        document within ``max_distance`` bits (earliest on ties): ``{id: (other id,
        distance)}``. A document stored first is nobody's near duplicate, so the
        original stays the original when a batch runs again.

        Candidates come from the band index (every hash within 7 bits shares a
        band, see :mod:`docpipe.phash`), then the exact distance decides.
        """
        if max_distance > MAX_EXACT_DISTANCE:
            raise ValueError(f"max_distance must be at most {MAX_EXACT_DISTANCE}")
        ids, band_numbers, values, hashes = [], [], [], []
        for document_id, phash in phashes.items():
            for band, value in enumerate(phash_bands(phash)):
                ids.append(document_id)
                band_numbers.append(band)
                values.append(value)
                hashes.append(phash)
        if not ids:
            return {}
        query = """
            WITH probe AS (
                SELECT * FROM unnest(%s::text[], %s::smallint[], %s::smallint[], %s::text[])
                    AS p (document_id, band, value, phash)
            ), candidate AS (
                SELECT DISTINCT probe.document_id, probe.phash, b.document_id AS other_id
                FROM probe
                JOIN image_hash_bands b ON b.band = probe.band AND b.value = probe.value
                WHERE b.document_id <> probe.document_id
            )
            SELECT DISTINCT ON (c.document_id) c.document_id, c.other_id, s.distance
            FROM candidate c
            JOIN documents d ON d.document_id = c.other_id AND d.status = 'succeeded'
            -- Only copies older than the document itself: the original stays the original
            -- when a batch is run again.
            LEFT JOIN documents mine ON mine.document_id = c.document_id
            CROSS JOIN LATERAL (
                SELECT bit_count(
                    ('x' || c.phash)::bit(64) # ('x' || (d.image_info ->> 'phash'))::bit(64)
                ) AS distance
            ) s
            WHERE s.distance <= %s
              AND (mine.created_at IS NULL OR (d.created_at, d.row_number, d.document_id)
                   < (mine.created_at, mine.row_number, mine.document_id))
            ORDER BY c.document_id, s.distance, d.created_at, d.row_number, c.other_id
        """
        rows = await self._tuples(query, (ids, band_numbers, values, hashes, max_distance))
        return {document_id: (other_id, int(distance)) for document_id, other_id, distance in rows}

    @timed("postgres", "get")
    async def by_source(self, source: str) -> dict[str, Any] | None:
        """The newest row whose source is exactly ``source`` (a CSV may name it twice)."""
        return await self._one(
            "SELECT * FROM documents WHERE source = %s ORDER BY updated_at DESC LIMIT 1",
            (source,),
        )

    @timed("postgres", "get")
    async def rows(self, document_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The rows of these documents (those that exist), by id."""
        ids = list(set(document_ids))
        if not ids:
            return {}
        rows = await self._dicts("SELECT * FROM documents WHERE document_id = ANY(%s)", (ids,))
        return {row["document_id"]: row for row in rows}

    @timed("postgres", "filter")
    async def succeeded_ids(
        self,
        *,
        tag: str | None = None,
        content_type: str | None = None,
        language: str | None = None,
        limit: int,
    ) -> list[str]:
        """Ids of succeeded documents matching every given condition, at most ``limit``."""
        where, params = _conditions(
            {
                "tags @> %s": None if tag is None else Jsonb([tag]),
                "content_type = %s": content_type,
                "language = %s": language,
            }
        )
        query = (
            "SELECT document_id FROM documents WHERE status = 'succeeded'"
            f"{where} ORDER BY document_id LIMIT %s"
        )
        return [row[0] for row in await self._tuples(query, [*params, limit])]

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """Borrow a pooled connection (for the queries of :mod:`docpipe.storage.chunk_texts`)."""
        return self._pool.connection()

    @timed("postgres", "ping")
    async def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        async with self._pool.connection() as conn:
            await conn.execute("SELECT 1")


def _conditions(conditions: dict[str, Any]) -> tuple[str, list[Any]]:
    """`` AND <condition>`` for each condition (SQL with one ``%s``) whose value is
    not None, and those values in the same order."""
    given = {condition: value for condition, value in conditions.items() if value is not None}
    return "".join(f" AND {condition}" for condition in given), list(given.values())


async def _run_script(conn: AsyncConnection[Any], script: str) -> None:
    # Without parameters psycopg sends the text as one simple query, so a
    # script may hold many statements.
    await conn.execute(sql.SQL(script))  # type: ignore[arg-type]


@asynccontextmanager
async def open_metadata_store(settings: Settings) -> AsyncIterator[MetadataStore]:
    """Shorthand for :meth:`MetadataStore.open`."""
    async with MetadataStore.open(settings) as store:
        yield store
