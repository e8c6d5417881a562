"""Chunk vectors in ChromaDB: one entry per chunk, re-runs leave nothing stale."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest

from docpipe.config import Settings
from docpipe.storage.vectors import VectorStore

pytestmark = pytest.mark.integration

DIMENSIONS = 8


@pytest.fixture(scope="module")
async def vectors(settings: Settings) -> AsyncIterator[VectorStore]:
    # A collection of its own, so counts are not disturbed by other tests.
    own = settings.model_copy(update={"vector_collection": f"test_{uuid.uuid4().hex[:8]}"})
    async with VectorStore.open(own) as store:
        yield store


def embeddings(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, DIMENSIONS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def texts(n: int, version: str = "v1") -> list[str]:
    return [f"chunk {i} ({version})" for i in range(n)]


def new_document() -> str:
    return uuid.uuid4().hex


async def test_each_chunk_becomes_one_entry_with_its_metadata(vectors: VectorStore) -> None:
    doc = new_document()
    await vectors.upsert_document(
        doc, texts(3), embeddings(3), {"source": "https://example.org/a", "language": "en"}
    )

    assert await vectors.count_for(doc) == 3
    chunks = await vectors.chunks_for(doc)
    assert [c["id"] for c in chunks] == [f"{doc}:0", f"{doc}:1", f"{doc}:2"]
    assert [c["text"] for c in chunks] == texts(3)
    assert chunks[1]["metadata"] == {
        "document_id": doc,
        "chunk_index": 1,
        "source": "https://example.org/a",
        "language": "en",
    }


async def test_upserting_the_same_document_again_changes_nothing(vectors: VectorStore) -> None:
    doc = new_document()
    await vectors.upsert_document(doc, texts(4), embeddings(4), {})
    total = await vectors.count()
    await vectors.upsert_document(doc, texts(4), embeddings(4), {})
    assert await vectors.count() == total
    assert await vectors.count_for(doc) == 4


async def test_a_rerun_with_fewer_chunks_leaves_exactly_the_new_ones(vectors: VectorStore) -> None:
    doc, neighbour = new_document(), new_document()
    await vectors.upsert_document(neighbour, texts(2), embeddings(2), {})
    await vectors.upsert_document(doc, texts(5), embeddings(5), {})

    await vectors.upsert_document(doc, texts(2, "v2"), embeddings(2, seed=1), {"title": "v2"})

    chunks = await vectors.chunks_for(doc)
    assert [c["text"] for c in chunks] == texts(2, "v2")
    assert all(c["metadata"]["title"] == "v2" for c in chunks)
    assert await vectors.count_for(neighbour) == 2, "other documents are untouched"


async def test_zero_chunks_remove_the_document(vectors: VectorStore) -> None:
    doc = new_document()
    await vectors.upsert_document(doc, texts(3), embeddings(3), {})
    await vectors.upsert_document(doc, [], np.zeros((0, DIMENSIONS), np.float32), {})
    assert await vectors.count_for(doc) == 0


async def test_none_metadata_values_are_dropped(vectors: VectorStore) -> None:
    doc = new_document()
    await vectors.upsert_document(doc, texts(1), embeddings(1), {"title": None, "pages": 3})
    [chunk] = await vectors.chunks_for(doc)
    assert chunk["metadata"] == {"document_id": doc, "chunk_index": 0, "pages": 3}


async def test_chunk_and_embedding_counts_must_match(vectors: VectorStore) -> None:
    with pytest.raises(ValueError, match="3 chunks"):
        await vectors.upsert_document(new_document(), texts(3), embeddings(2), {})


async def test_count_covers_all_documents(vectors: VectorStore) -> None:
    before = await vectors.count()
    await vectors.upsert_document(new_document(), texts(2), embeddings(2), {})
    await vectors.upsert_document(new_document(), texts(3), embeddings(3), {})
    assert await vectors.count() == before + 5


async def test_heartbeat_answers(vectors: VectorStore) -> None:
    assert await vectors.heartbeat() > 0
