"""generate_embeddings through the GPU worker's real path (model, batcher, cache,
object store), on the CPU here: the same code places replicas on GPUs when present."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from temporalio.testing import ActivityEnvironment

from docpipe.activities.gpu.activities import GpuActivities
from docpipe.activities.gpu.embedding_cache import VectorLru
from docpipe.chunks import Chunk, chunks_to_json
from docpipe.config import load_settings
from docpipe.models import EmbeddingJob, Stage, SummaryJob
from docpipe.storage import keys
from docpipe.storage.arrays import bundle_from_npz
from docpipe.storage.objects import LocalObjectStore
from docpipe.workers.gpu import make_batcher

pytestmark = pytest.mark.integration


def chunks(*texts: str) -> bytes:
    return chunks_to_json([Chunk(i, t, len(t.split()), 0, len(t)) for i, t in enumerate(texts)])


async def make_activities(tmp_path, embedder) -> tuple[GpuActivities, LocalObjectStore]:
    store = LocalObjectStore(tmp_path / "objects")
    batcher = make_batcher(load_settings(), embedder)
    return GpuActivities(store, embedder, batcher, VectorLru(1000)), store


async def put_doc(store, doc_id: str, *texts: str) -> EmbeddingJob:
    await store.put(keys.chunks(doc_id), chunks(*texts))
    return EmbeddingJob(doc_id, keys.chunks(doc_id), len(texts))


async def test_vectors_are_normalized_per_chunk_and_stored_as_one_bundle_per_batch(
    tmp_path, embedder
):
    activities, store = await make_activities(tmp_path, embedder)
    job = await put_doc(store, "d1", "Tide tables for the harbour.", "Fresh bread before sunrise.")
    other = await put_doc(store, "d2", "Night buses run every hour.")
    result = await ActivityEnvironment().run(activities.generate_embeddings, [job, other])
    doc, second = result.succeeded
    assert (doc.chunk_count, doc.dimensions) == (2, 384)
    assert doc.embeddings_key == second.embeddings_key == keys.vector_bundle(["d1", "d2"])
    bundle = bundle_from_npz(await store.get(doc.embeddings_key))
    assert bundle.model == embedder.name and len(bundle.vectors["d2"]) == 1
    matrix = bundle.vectors["d1"]
    assert matrix.shape == (2, 384) and matrix.dtype == np.float32
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)
    direct = embedder.encode(["Tide tables for the harbour."])[0]
    assert float(matrix[0] @ direct) > 0.999, "same vector as a bare model call"


async def test_concurrent_activities_share_model_calls(tmp_path, embedder):
    activities, store = await make_activities(tmp_path, embedder)
    jobs = [
        await put_doc(store, f"d{i}", f"Report number {i} about the harbour.") for i in range(12)
    ]
    env = ActivityEnvironment()
    results = await asyncio.gather(*(env.run(activities.generate_embeddings, [j]) for j in jobs))
    assert all(len(r.succeeded) == 1 for r in results)
    assert activities.batcher.stats.batches < 12, "requests were merged"


async def test_unchanged_chunks_are_never_embedded_again(tmp_path, embedder):
    activities, store = await make_activities(tmp_path, embedder)
    job = await put_doc(store, "d1", "First paragraph.", "Second paragraph.", "Third paragraph.")
    env = ActivityEnvironment()
    [first] = (await env.run(activities.generate_embeddings, [job])).succeeded
    assert activities.embedded_chunks == 3
    # The workflow tells a re-run where the document's vectors were stored.
    job.previous_embeddings_key = first.embeddings_key

    activities.lru = VectorLru(0)  # a fresh worker process: only the stored vectors remain
    await env.run(activities.generate_embeddings, [job])
    assert activities.embedded_chunks == 3, "the re-run used the stored vectors"

    edited = await put_doc(
        store, "d1", "First paragraph.", "A rewritten second paragraph.", "Third paragraph."
    )
    edited.previous_embeddings_key = first.embeddings_key
    await env.run(activities.generate_embeddings, [edited])
    assert activities.embedded_chunks == 4, "only the changed chunk went to the model"


async def test_a_re_run_in_another_batch_reuses_the_vectors_of_the_first(tmp_path, embedder):
    activities, store = await make_activities(tmp_path, embedder)
    a = await put_doc(store, "a", "Alpha paragraph.", "Beta paragraph.")
    b = await put_doc(store, "b", "Gamma paragraph.")
    env = ActivityEnvironment()
    first = (await env.run(activities.generate_embeddings, [a, b])).succeeded
    activities.lru = VectorLru(0)
    a.previous_embeddings_key = first[0].embeddings_key
    [again] = (await env.run(activities.generate_embeddings, [a])).succeeded
    assert activities.embedded_chunks == 3, "nothing embedded twice"
    assert again.embeddings_key == keys.vector_bundle(["a"]) != first[0].embeddings_key


async def test_an_unreadable_stored_bundle_is_never_trusted(tmp_path, embedder):
    activities, store = await make_activities(tmp_path, embedder)
    job = await put_doc(store, "d1", "Alpha.", "Beta.")
    env = ActivityEnvironment()
    [first] = (await env.run(activities.generate_embeddings, [job])).succeeded
    stored = await store.get(first.embeddings_key)
    await store.put(first.embeddings_key, stored[: len(stored) // 2])  # torn or corrupt
    job.previous_embeddings_key = first.embeddings_key
    activities.lru = VectorLru(0)
    await env.run(activities.generate_embeddings, [job])
    assert activities.embedded_chunks == 4, "embedded afresh"


async def test_missing_chunks_fail_only_that_document(tmp_path, embedder):
    activities, store = await make_activities(tmp_path, embedder)
    good = await put_doc(store, "good", "Some text.")
    missing = EmbeddingJob("gone", keys.chunks("gone"), 1)
    result = await ActivityEnvironment().run(activities.generate_embeddings, [good, missing])
    assert [d.document_id for d in result.succeeded] == ["good"]
    assert [(f.document_id, f.stage) for f in result.failed] == [("gone", Stage.EMBED)]


async def test_a_summary_reuses_the_vectors_generate_embeddings_stored(tmp_path, embedder):
    from docpipe.activities.gpu.extractive import ExtractiveSummarizer

    activities, store = await make_activities(tmp_path, embedder)
    texts = [
        f"The ferry timetable changes in week {i}. Ferries leave the harbour every hour."
        for i in range(12)
    ]
    job = await put_doc(store, "d1", *texts)
    env = ActivityEnvironment()
    [doc] = (await env.run(activities.generate_embeddings, [job])).succeeded
    sent: list[str] = []

    async def embed(items: list[str]) -> list:
        sent.extend(items)
        return await activities.batcher.submit(items)

    activities.summarizer = ExtractiveSummarizer(embed, max_sentences=2)
    await store.put(keys.text("d1"), " ".join(texts).encode())
    summary_job = SummaryJob("d1", keys.text("d1"), doc.embeddings_key, doc.chunks_key)
    result = await env.run(activities.run_llm_inference, [summary_job])
    [summary] = result.succeeded
    assert "ferr" in summary.summary.lower()
    assert sent == [], "no chunk (nor anything else) went to the model a second time"
    assert await store.get(summary.summary_key)
