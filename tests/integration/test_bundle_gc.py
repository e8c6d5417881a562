"""`docpipe gc` on the real servers: moto's S3 and PostgreSQL.

Each test gets a bucket of its own (the collector looks at every bundle of its
bucket, and other tests keep theirs in the shared one); the documents table is
the shared one, so the rows a test writes have ids of their own.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from cli_runs import docpipe_cli

from docpipe.config import Settings
from docpipe.local.devstack import DevStack
from docpipe.models import DocumentOutcome, Status
from docpipe.storage import keys
from docpipe.storage.bundle_gc import collect_garbage
from docpipe.storage.metadata import MetadataStore
from docpipe.storage.objects import S3ObjectStore, open_object_store

pytestmark = pytest.mark.integration

DAY = 86_400.0


@pytest.fixture(scope="module")
async def metadata(settings: Settings) -> AsyncIterator[MetadataStore]:
    async with MetadataStore.open(settings) as store:
        await store.migrate()
        yield store


@pytest.fixture
def bucket_settings(devstack: DevStack) -> Settings:
    return devstack.settings(s3_bucket=f"gc-{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def store(bucket_settings: Settings) -> AsyncIterator[S3ObjectStore]:
    async with open_object_store(bucket_settings) as store:
        assert isinstance(store, S3ObjectStore)
        await store.ensure_bucket()
        yield store


async def write_bundle(store: S3ObjectStore, document_ids: list[str]) -> tuple[str, str]:
    """A batch's chunk and vector bundles; their keys."""
    chunks, vectors = keys.chunk_bundle(document_ids), keys.vector_bundle(document_ids)
    await store.put(chunks, b'{"chunks": []}')
    await store.put(vectors, b"vectors" * 100)
    return chunks, vectors


async def point_row_at(metadata: MetadataStore, document_id: str, chunks: str, vectors: str):
    await metadata.upsert_outcomes(
        [
            DocumentOutcome(
                document_id=document_id,
                source=f"https://example.org/{document_id}",
                row_number=1,
                status=Status.SUCCEEDED,
                run_id=f"gc-{document_id}",
                chunks_key=chunks,
                embeddings_key=vectors,
            )
        ]
    )


def new_id() -> str:
    return uuid.uuid4().hex


async def test_the_rows_bundle_references_are_their_batch_keys(metadata: MetadataStore) -> None:
    document = new_id()
    chunks, vectors = keys.chunk_bundle([document]), keys.vector_bundle([document])
    await point_row_at(metadata, document, chunks, vectors)
    elsewhere = new_id()
    await point_row_at(metadata, elsewhere, keys.chunks(elsewhere), keys.embeddings(elsewhere))
    references = await metadata.bundle_references()
    assert {chunks, vectors} <= references
    assert all(key.startswith("batches/") for key in references)


async def test_s3_lists_modification_times_and_sizes_and_deletes_in_batches(
    store: S3ObjectStore,
) -> None:
    before = time.time()
    written = [f"batches/b/{n:04d}" for n in range(1001)]  # two DeleteObjects requests
    for key in written[:3]:
        await store.put(key, b"12345")
    listed = await store.list_objects("batches/")
    assert [o.key for o in listed] == written[:3]
    assert all(o.size == 5 and before - 5 <= o.last_modified <= time.time() + 5 for o in listed)
    await store.delete_many(written)  # missing keys are not an error
    assert await store.list_keys() == []


async def test_gc_deletes_exactly_the_bundle_no_row_points_to(
    store: S3ObjectStore, metadata: MetadataStore
) -> None:
    moved, stayed = new_id(), new_id()
    old_chunks, old_vectors = await write_bundle(store, [moved, stayed])  # the first batch
    new_chunks, new_vectors = await write_bundle(store, [moved])  # `moved` ran again alone
    await point_row_at(metadata, moved, new_chunks, new_vectors)
    await store.put(keys.raw(moved), b"raw bytes")  # a per-document object: never a candidate
    orphan_chunks, orphan_vectors = await write_bundle(store, [new_id()])  # a row-less batch

    # Everything was written just now: the default minimum age keeps it all.
    young = await collect_garbage(store, metadata, min_age_s=DAY)
    assert young.plan.delete == [] and len(young.plan.young) == 2

    aged = time.time() + 2 * DAY
    dry = await collect_garbage(store, metadata, min_age_s=DAY, dry_run=True, now=aged)
    assert {b.prefix for b in dry.plan.delete} == {
        old_chunks.rpartition("/")[0] + "/",
        orphan_chunks.rpartition("/")[0] + "/",
    }
    assert len(await store.list_keys()) == 7

    await point_row_at(metadata, stayed, old_chunks, old_vectors)  # the first batch is in use
    done = await collect_garbage(store, metadata, min_age_s=DAY, now=aged)
    assert done.deleted_objects == 2 and done.deleted_bytes > 700
    assert await store.list_keys() == sorted(
        [old_chunks, old_vectors, new_chunks, new_vectors, keys.raw(moved)]
    )
    assert not {orphan_chunks, orphan_vectors} & set(await store.list_keys())


async def test_the_cli_lists_then_deletes(
    devstack: DevStack, bucket_settings: Settings, store: S3ObjectStore, metadata: MetadataStore
) -> None:
    kept_id = new_id()
    kept = await write_bundle(store, [kept_id])
    await point_row_at(metadata, kept_id, *kept)
    orphan = await write_bundle(store, [new_id()])
    env = {**devstack.env, "S3_BUCKET": bucket_settings.s3_bucket}

    dry = docpipe_cli(env, "gc", "--older-than", "0", "--dry-run", "-o", "json")
    assert dry.returncode == 0, dry.stderr
    body = json.loads(dry.stdout)
    assert body["dry_run"] is True and body["older_than_s"] == 0
    assert [entry["keys"] for entry in body["deleted"]] == [sorted(orphan)]
    assert body["deleted_objects"] == 2 and body["deleted_bytes"] > 0
    assert [entry["keys"] for entry in body["kept_referenced"]] == [sorted(kept)]
    assert body["kept_young"] == []
    assert len(await store.list_keys()) == 4

    default_age = docpipe_cli(env, "gc")  # all of it is younger than 24 h
    assert default_age.returncode == 0, default_age.stderr
    assert "deleted nothing" in default_age.stdout and "1 younger" in default_age.stdout
    assert len(await store.list_keys()) == 4

    done = docpipe_cli(env, "gc", "--older-than", "0")
    assert done.returncode == 0, done.stderr
    assert "deleted 1 bundles, 2 objects" in done.stdout
    assert await store.list_keys() == sorted(kept)
