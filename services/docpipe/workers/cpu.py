"""CPU worker: text extraction and processing on the CPU queue.

Documents are processed in a process pool of WORKER_CPU_THREADS processes
(cores x 2 by default: text steps mix parsing with short waits). The pool uses
``spawn``: forking a process that already runs the Temporal core's threads is
unsafe. Each pool process loads the tokenizer and language model once, and runs
under a memory and a per-document CPU-time limit (CPU_EXTRACT_MEMORY_LIMIT_MB,
CPU_EXTRACT_CPU_LIMIT_S): a document past one fails alone and its process is
replaced (:mod:`docpipe.activities.cpu.pool`).
"""

from __future__ import annotations

import asyncio

from docpipe.activities.cpu.activities import CpuActivities
from docpipe.activities.cpu.limits import ProcessLimits
from docpipe.activities.cpu.pool import IsolatingProcessPool
from docpipe.activities.cpu.text_pipeline import TextOptions, warm_up
from docpipe.config import Settings
from docpipe.metrics.cpu import MeteredPool, watch_pool
from docpipe.storage.objects import open_object_store
from docpipe.workers.activity_worker import poll_activities
from docpipe.workers.common import connect, make_runtime, run_worker


def text_options(settings: Settings) -> TextOptions:
    return TextOptions(
        tokenizer_dir=str(settings.resolved_embedding_model_path),
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap_tokens=settings.chunk_overlap_tokens,
        min_chars=settings.min_text_chars,
        max_chars=settings.max_text_chars,
    )


def process_limits(settings: Settings) -> ProcessLimits:
    return ProcessLimits(
        memory_mb=settings.cpu_extract_memory_limit_mb,
        cpu_seconds=settings.cpu_extract_cpu_limit_s,
    )


async def start_pool_processes(pool: IsolatingProcessPool) -> None:
    """Wait until every pool process is spawned and warm before the worker polls: a
    spawned process re-imports the worker and loads the tokenizer and language model
    (seconds of CPU), and doing that under the first tasks made them slow and the
    worker look ready before it was."""
    await asyncio.to_thread(pool.wait_started)


async def serve(settings: Settings) -> None:
    options = text_options(settings)
    client = await connect(settings, make_runtime(settings))
    processes = IsolatingProcessPool(
        settings.worker_cpu_threads,
        limits=process_limits(settings),
        initializer=warm_up,
        initargs=(options.tokenizer_dir,),
    )
    pool = MeteredPool(processes, size=settings.worker_cpu_threads)
    watch_pool(pool)
    try:
        await start_pool_processes(processes)
        async with open_object_store(settings) as store:
            activities = CpuActivities(store, pool, options)
            # The pool and the store serve every Worker of the process.
            # Each activity is a batch whose documents fan out over the pool; a few
            # batches at once keep every pool process busy.
            slots = max(2, settings.worker_cpu_threads)
            await poll_activities(settings, client, "cpu", [activities.prepare_text], slots)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def main() -> None:
    run_worker("cpu", serve)


if __name__ == "__main__":
    main()
