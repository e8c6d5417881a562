"""The PostgreSQL metadata store: migrations, upserts and the status queries."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from docpipe.config import Settings
from docpipe.local.devstack import DevStack
from docpipe.models import DocumentOutcome, Stage, Status
from docpipe.storage.metadata import MetadataStore, migration_scripts

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def metadata(settings: Settings) -> AsyncIterator[MetadataStore]:
    async with MetadataStore.open(settings) as store:
        await store.migrate()
        yield store


def succeeded(run_id: str, document_id: str | None = None, **fields: object) -> DocumentOutcome:
    outcome = DocumentOutcome(
        document_id=document_id or uuid.uuid4().hex,
        source="https://example.org/doc.html",
        row_number=1,
        status=Status.SUCCEEDED,
        run_id=run_id,
        title="A document",
        tags=["news", "en"],
        content_type="text/html",
        size_bytes=1234,
        content_sha256="ab" * 32,
        language="en",
        char_count=900,
        word_count=150,
        token_count=200,
        chunk_count=2,
        compressed_bytes=400,
        raw_key="raw/x",
        text_key="text/x",
        chunks_key="chunks/x",
        compressed_key="gz/x",
        embeddings_key="emb/x",
        embedding_model="all-MiniLM-L6-v2",
        top_words={"pipeline": 7, "document": 5},
    )
    return dataclasses.replace(outcome, **fields)  # type: ignore[arg-type]


def failed(run_id: str, reason: str, document_id: str | None = None) -> DocumentOutcome:
    return DocumentOutcome(
        document_id=document_id or uuid.uuid4().hex,
        source="https://example.org/missing",
        row_number=2,
        status=Status.FAILED,
        run_id=run_id,
        failure_stage=Stage.DOWNLOAD,
        failure_reason=reason,
    )


def new_run() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- migrations


async def test_migrate_twice_applies_each_script_once(
    metadata: MetadataStore, settings: Settings
) -> None:
    assert await metadata.migrate() == []
    assert await metadata.migrate() == []
    async with await psycopg.AsyncConnection.connect(settings.metadata_db_conninfo) as conn:
        rows = await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()
    assert sorted(v for (v,) in rows) == [version for version, _ in migration_scripts()]


async def test_workers_migrating_at_once_apply_the_schema_once(settings: Settings) -> None:
    """Four workers starting together on an empty schema: one migrates, all succeed."""
    schema = f"migrate_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(
        settings.metadata_db_conninfo, autocommit=True
    ) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    conninfo = f"{settings.metadata_db_conninfo} options='-c search_path={schema}'"

    async def one_worker() -> list[str]:
        async with AsyncConnectionPool(conninfo, min_size=1, max_size=2, open=False) as pool:
            await pool.wait()
            return await MetadataStore(pool).migrate()

    results = await asyncio.gather(*(one_worker() for _ in range(4)))
    all_versions = [version for version, _ in migration_scripts()]
    assert sorted(results, key=len) == [[], [], [], all_versions]


# -------------------------------------------------------------------- upsert


async def test_an_outcome_is_stored_with_every_field(metadata: MetadataStore) -> None:
    outcome = succeeded(new_run())
    await metadata.upsert_outcomes([outcome])

    row = await metadata.get(outcome.document_id)
    assert row is not None
    for name, value in dataclasses.asdict(outcome).items():
        assert row[name] == value, name
    assert row["attempts"] == 1
    assert row["created_at"] == row["updated_at"]


async def test_upserting_again_keeps_one_row_and_counts_attempts(metadata: MetadataStore) -> None:
    run_id = new_run()
    outcome = succeeded(run_id)
    await metadata.upsert_outcomes([outcome])
    first = await metadata.get(outcome.document_id)
    await metadata.upsert_outcomes([dataclasses.replace(outcome, word_count=151)])

    row = await metadata.get(outcome.document_id)
    assert row is not None and first is not None
    assert row["attempts"] == 2
    assert row["word_count"] == 151
    assert row["created_at"] == first["created_at"]
    assert row["updated_at"] > first["updated_at"]
    assert await metadata.count_by_status(run_id) == {"succeeded": 1, "failed": 0}


async def test_a_batch_with_the_same_document_twice_keeps_the_last(metadata: MetadataStore) -> None:
    run_id = new_run()
    doc = uuid.uuid4().hex
    await metadata.upsert_outcomes([succeeded(run_id, doc), failed(run_id, "gone", doc)])
    row = await metadata.get(doc)
    assert row is not None
    assert (row["status"], row["failure_reason"], row["attempts"]) == ("failed", "gone", 1)


async def test_last_write_wins_even_a_failure_after_a_success(metadata: MetadataStore) -> None:
    run_id = new_run()
    doc = uuid.uuid4().hex
    await metadata.upsert_outcomes([succeeded(run_id, doc)])
    await metadata.upsert_outcomes([failed(run_id, "HTTP 404 Not Found", doc)])
    row = await metadata.get(doc)
    assert row is not None
    assert row["status"] == "failed"
    assert row["attempts"] == 2


async def test_an_empty_batch_is_a_no_op(metadata: MetadataStore) -> None:
    await metadata.upsert_outcomes([])


async def test_concurrent_batches_do_not_deadlock(metadata: MetadataStore) -> None:
    run_id = new_run()
    ids = [uuid.uuid4().hex for _ in range(20)]
    batches = [[succeeded(run_id, d) for d in order] for order in (ids, ids[::-1], ids, ids[::-1])]
    await asyncio.gather(*(metadata.upsert_outcomes(b) for b in batches))
    assert await metadata.count_by_status(run_id) == {"succeeded": 20, "failed": 0}
    row = await metadata.get(ids[0])
    assert row is not None and row["attempts"] == 4


# ------------------------------------------------------------------- queries


async def test_get_of_an_unknown_document_is_none(metadata: MetadataStore) -> None:
    assert await metadata.get("no-such-document") is None


async def test_count_by_status_per_run_and_overall(metadata: MetadataStore) -> None:
    run_id = new_run()
    await metadata.upsert_outcomes(
        [succeeded(run_id), succeeded(run_id), failed(run_id, "bad"), succeeded(new_run())]
    )
    assert await metadata.count_by_status(run_id) == {"succeeded": 2, "failed": 1}
    assert await metadata.count_by_status(new_run()) == {"succeeded": 0, "failed": 0}
    overall = await metadata.count_by_status()
    assert overall["succeeded"] >= 3 and overall["failed"] >= 1


async def test_failures_lists_failed_documents_newest_first(metadata: MetadataStore) -> None:
    run_id = new_run()
    first, second = failed(run_id, "HTTP 404 Not Found"), failed(run_id, "empty text")
    await metadata.upsert_outcomes([first, succeeded(run_id)])
    await metadata.upsert_outcomes([second])

    rows = await metadata.failures(run_id=run_id)
    assert [r["document_id"] for r in rows] == [second.document_id, first.document_id]
    assert rows[1] == {
        "document_id": first.document_id,
        "source": first.source,
        "row_number": first.row_number,
        "title": "",
        "tags": [],
        "run_id": run_id,
        "stage": "download",
        "reason": "HTTP 404 Not Found",
        "attempts": 1,
        "updated_at": rows[1]["updated_at"],
    }
    assert [r["document_id"] for r in await metadata.failures(limit=1, run_id=run_id)] == [
        second.document_id
    ]


async def test_failures_can_be_narrowed_to_one_stage(metadata: MetadataStore) -> None:
    run_id = new_run()
    at_download = failed(run_id, "HTTP 404 Not Found")
    at_extract = dataclasses.replace(failed(run_id, "not a PDF"), failure_stage=Stage.EXTRACT)
    await metadata.upsert_outcomes([at_download, at_extract])

    rows = await metadata.failures(run_id=run_id, stage=Stage.EXTRACT.value)
    assert [(r["document_id"], r["stage"]) for r in rows] == [(at_extract.document_id, "extract")]


async def test_ping_answers(metadata: MetadataStore) -> None:
    await metadata.ping()


async def test_a_unix_socket_directory_works_as_the_host(
    devstack: DevStack, settings: Settings
) -> None:
    assert devstack.postgres is not None
    over_socket = settings.model_copy(
        update={"metadata_db_host": str(devstack.postgres.socket_dir)}
    )
    async with MetadataStore.open(over_socket) as store:
        await store.ping()


# ------------------------------------------------------- near-duplicate images


def image(run_id: str, phash: str, **fields: object) -> DocumentOutcome:
    return succeeded(
        run_id, content_type="image/png", image_info={"phash": phash, "width": 640}, **fields
    )


def flipped(phash: str, *bits: int) -> str:
    value = int(phash, 16)
    for bit in bits:
        value ^= 1 << bit
    return f"{value:016x}"


async def test_the_closest_earlier_image_within_the_distance_is_a_near_duplicate(
    metadata: MetadataStore,
) -> None:
    run = new_run()
    original = f"{uuid.uuid4().int & (2**64 - 1):016x}"
    first = image(run, original, row_number=1)
    await metadata.upsert_outcomes([first])
    copy = image(run, flipped(original, 3, 17, 60), row_number=2)  # 3 bits apart, stored later
    edit = flipped(original, 0, 1, 2, 3, 4)
    await metadata.upsert_outcomes([copy, failed(run, "not an image")])
    found = await metadata.similar_images(
        {"new-scan": flipped(original, 3), "new-edit": edit, first.document_id: original},
        max_distance=6,
    )
    # The original is 1 bit from the new scan, the copy 2: the closest wins.
    assert found["new-scan"] == (first.document_id, 1)
    assert found["new-edit"] == (first.document_id, 5)
    # The original itself has no earlier copy; the later copy points at it.
    assert first.document_id not in found
    later = await metadata.similar_images({copy.document_id: copy.image_info["phash"]}, 6)  # type: ignore[index]
    assert later == {copy.document_id: (first.document_id, 3)}
    assert await metadata.similar_images({"far": flipped(original, *range(0, 64, 5))}, 6) == {}


async def test_a_documents_hash_index_follows_its_latest_row(metadata: MetadataStore) -> None:
    run = new_run()
    old_hash = f"{uuid.uuid4().int & (2**64 - 1):016x}"
    new_hash = f"{int(old_hash, 16) ^ (2**64 - 1):016x}"  # every bit different
    document = image(run, old_hash)
    await metadata.upsert_outcomes([document])
    await metadata.upsert_outcomes([dataclasses.replace(document, image_info={"phash": new_hash})])
    assert await metadata.similar_images({"probe": old_hash}, 6) == {}
    assert await metadata.similar_images({"probe": new_hash}, 6) == {
        "probe": (document.document_id, 0)
    }


async def test_a_distance_beyond_what_the_band_index_guarantees_is_refused(
    metadata: MetadataStore,
) -> None:
    with pytest.raises(ValueError, match="at most 7"):
        await metadata.similar_images({"probe": "0" * 16}, 8)
