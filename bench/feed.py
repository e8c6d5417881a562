"""GPU-worker feed rate: how many chunks/s the worker's own path can hand a model.

The GPU worker runs as a real process against the embedded stack (Temporal dev
server, the local object store), with ``EMBEDDING_NULL_MODEL=1``: a model that
returns zero vectors at no cost. Everything else is the production path:
Temporal activity round trips, chunk reads, the embedding cache, the
micro-batcher, vector writes, classification. The chunks/s it reaches is the
ceiling this worker puts on a real GPU (one modern GPU embeds ~10^4 short
texts/s with MiniLM; the goal is >= 5,000 chunks/s per feeding process).

Baseline, in the same run: a bare batched ``SentenceTransformer.encode`` of the
same chunk texts on this machine's CPU (the real model, no pipeline).

    ratio = feed chunks/s (null model, whole worker path) / bare encode chunks/s

Usage: python bench/feed.py [--documents 2000] [--chunks-per-document 4]
       [--batch-size 10] [--concurrency 32] [--workers 1]
The last line printed is ``ratio=<float>``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from bench_args import bench_parser
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from docpipe import steps
    from docpipe.models import EmbeddingJob, EmbedResult

WORDS = (
    "harbour ledger meadow signal archive compass orchard granite weaver copper violin "
    "canyon beacon glacier market pepper saddle timber falcon quarry thistle anchor prism "
    "cobalt tundra lagoon marble river lantern engine budget council museum library"
).split()


@workflow.defn(name="FeedBenchWorkflow")
class FeedBenchWorkflow:
    """One generate_embeddings call for a batch of documents, as the pipeline makes it."""

    @workflow.run
    async def run(self, args: tuple[str, list[EmbeddingJob]]) -> int:
        queue, jobs = args
        result: EmbedResult = await workflow.execute_activity(
            steps.GENERATE_EMBEDDINGS,
            jobs,
            result_type=EmbedResult,
            task_queue=queue,
            start_to_close_timeout=timedelta(seconds=600),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=steps.GPU_RETRY,
        )
        if result.failed:
            raise RuntimeError(f"{len(result.failed)} documents failed: {result.failed[0]}")
        return sum(d.chunk_count for d in result.succeeded)


def chunk_texts(documents: int, per_document: int, seed: int = 11) -> list[list[str]]:
    """~100-token chunks, different for every document (no cache hits)."""
    rng = random.Random(seed)
    return [
        [f"{d}-{c} " + " ".join(rng.choices(WORDS, k=70)) + "." for c in range(per_document)]
        for d in range(documents)
    ]


async def write_chunks(settings, texts: list[list[str]]) -> list[EmbeddingJob]:
    from docpipe.chunks import Chunk, chunks_to_json
    from docpipe.storage import keys
    from docpipe.storage.objects import open_object_store

    run = uuid.uuid4().hex[:8]
    jobs = []
    async with open_object_store(settings) as store:
        await store.ensure_bucket()
        for d, doc in enumerate(texts):
            doc_id = f"feed-{run}-{d:06d}"
            chunks = [Chunk(i, t, 100, 0, len(t)) for i, t in enumerate(doc)]
            await store.put(keys.chunks(doc_id), chunks_to_json(chunks), "application/json")
            jobs.append(EmbeddingJob(doc_id, keys.chunks(doc_id), len(chunks)))
    return jobs


async def feed(
    client: Client, settings, jobs: list[EmbeddingJob], batch_size: int, concurrency: int
) -> tuple[int, float]:
    """Run every batch through the GPU worker, ``concurrency`` workflows at a time."""
    batches = [jobs[i : i + batch_size] for i in range(0, len(jobs), batch_size)]
    gate = asyncio.Semaphore(concurrency)
    queue = settings.gpu_task_queue

    async def one(index: int, batch: list[EmbeddingJob]) -> int:
        async with gate:
            return await client.execute_workflow(
                FeedBenchWorkflow.run,
                (queue, batch),
                id=f"feed-{uuid.uuid4().hex[:8]}-{index}",
                task_queue=settings.workflow_task_queue,
            )

    started = time.perf_counter()
    chunks = sum(await asyncio.gather(*(one(i, b) for i, b in enumerate(batches))))
    return chunks, time.perf_counter() - started


def start_profiler(path: str | None, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy (pip install py-spy) sampling the worker; raw = collapsed stacks, greppable."""
    if not path:
        return None
    fmt = "flamegraph" if path.endswith(".svg") else "raw"
    command = [
        str(Path(sys.executable).with_name("py-spy")),
        "record",
        "--pid",
        str(pid),
        "-o",
        path,
        "-f",
        fmt,
        "-r",
        "200",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)


def worker_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of the worker processes and their threads."""
    import psutil

    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def bare_encode(settings, texts: list[str]) -> float:
    from docpipe.activities.gpu.embedder import Embedder

    embedder = Embedder(
        settings.resolved_embedding_model_path, ["cpu"], batch_size=settings.embedding_batch_size
    )
    embedder.encode(texts[:64])  # warm up
    started = time.perf_counter()
    embedder.encode(texts)
    return len(texts) / (time.perf_counter() - started)


async def run(args: argparse.Namespace, stack, workers) -> float:
    from docpipe.local.workers import wait_for_pollers
    from docpipe.workers.common import connect

    settings = stack.settings()
    client = await connect(settings)
    await wait_for_pollers(client, {settings.gpu_task_queue: False}, workers, timeout_s=300)
    texts = chunk_texts(args.documents, args.chunks_per_document)
    jobs = await write_chunks(settings, texts)
    warm = await write_chunks(settings, chunk_texts(args.batch_size * 4, 1, seed=3))
    async with Worker(
        client, task_queue=settings.workflow_task_queue, workflows=[FeedBenchWorkflow]
    ):
        await feed(client, settings, warm, args.batch_size, args.concurrency)
        gpu_pids = [w.pid for w in workers.replicas("gpu")]
        profiler = start_profiler(args.profile, gpu_pids[0])
        cpu_before = worker_cpu_s(gpu_pids)
        try:
            chunks, elapsed = await feed(client, settings, jobs, args.batch_size, args.concurrency)
        finally:
            stop_profiler(profiler)
        cpu_s = worker_cpu_s(gpu_pids) - cpu_before
    rate = chunks / elapsed
    print(
        f"feed: {chunks} chunks of ~100 tokens in {len(jobs)} documents, batches of "
        f"{args.batch_size}, {args.concurrency} batches in flight, {args.workers} GPU worker(s): "
        f"{elapsed:.1f} s = {rate:,.0f} chunks/s ({len(jobs) / elapsed:,.0f} documents/s)"
    )
    print(
        f"GPU worker CPU: {cpu_s:.1f} s = {1000 * cpu_s / chunks:.3f} ms per chunk, "
        f"{1000 * cpu_s / len(jobs):.2f} ms per document -> one feeding process with a core "
        f"of its own: {chunks / cpu_s:,.0f} chunks/s (the Temporal server and this "
        "client share the same 2 cores here)"
    )
    sample = [t for doc in texts for t in doc][: args.bare_sample]
    bare = bare_encode(settings, sample)
    print(
        f"bare encode (real MiniLM on this CPU, {len(sample)} of the same chunks): {bare:.1f} chunks/s"
    )
    print(f"goal: >= 5,000 chunks/s -> {rate / 5000:.2f}x of the goal")
    return rate / bare


def main() -> None:
    parser = bench_parser(
        __doc__, documents=2000, chunks_per_document=4, batch_size=10, concurrency=32
    )
    parser.add_argument("--workers", type=int, default=1, help="GPU worker processes")
    parser.add_argument("--bare-sample", type=int, default=512)
    parser.add_argument("--object-store", choices=["local", "s3"], default="local")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="py-spy record the GPU worker during the run (.svg: flame graph, else raw stacks)",
    )
    args = parser.parse_args()

    from docpipe.local.devstack import DevStack
    from docpipe.local.workers import LocalWorkers

    with tempfile.TemporaryDirectory(prefix="docpipe-feed-") as tmp:
        root = Path(tmp)
        with DevStack(root / "stack", object_store=args.object_store) as stack:
            with LocalWorkers(root / "logs", stack.env) as workers:
                workers.start(
                    ("gpu",),
                    extra_env={"EMBEDDING_NULL_MODEL": "1"},
                    replicas={"gpu": args.workers},
                )
                ratio = asyncio.run(run(args, stack, workers))
    print(f"ratio={ratio:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
