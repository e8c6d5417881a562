"""GPU worker: batched model inference on the GPU queue.

Models are loaded once, before polling starts, one replica per visible GPU (up
to GPU_COUNT); with no GPU the same code runs on the CPU. Slots are
MAX_CONCURRENT_GPU_ACTIVITIES_PER_GPU per device, so a node with more GPUs
takes proportionally more work.
"""

from __future__ import annotations

import logging

import numpy as np
from temporalio.worker import Worker

from docpipe.activities.gpu.activities import GpuActivities
from docpipe.activities.gpu.batcher import MicroBatcher
from docpipe.activities.gpu.devices import slots_for, visible_devices
from docpipe.activities.gpu.embedder import Embedder
from docpipe.activities.gpu.embedding_cache import VectorLru
from docpipe.config import Settings
from docpipe.metrics.activity import ActivityMetricsInterceptor
from docpipe.storage.objects import open_object_store
from docpipe.workers.common import (
    GRACEFUL_SHUTDOWN,
    connect,
    make_runtime,
    run_until_stopped,
    run_worker,
)

log = logging.getLogger("docpipe.worker.gpu")


def load_embedder(settings: Settings) -> Embedder:
    devices = visible_devices(settings.gpu_count)
    log.info("loading %s on %s", settings.embedding_model_name, ", ".join(devices))
    return Embedder(
        settings.resolved_embedding_model_path,
        devices,
        batch_size=settings.embedding_batch_size,
        name=settings.embedding_model_name,
    )


def make_batcher(settings: Settings, embedder: Embedder) -> MicroBatcher[str, np.ndarray]:
    async def run(texts: list[str]) -> list[np.ndarray]:
        return list(await embedder.embed(texts))

    return MicroBatcher(
        run,
        max_batch_items=settings.embedding_max_batch_items,
        max_wait_s=settings.embedding_max_wait_ms / 1000,
        # One model call in flight per replica: each GPU works on its own batch.
        max_concurrent_batches=len(embedder.replicas),
    )


async def serve(settings: Settings) -> None:
    embedder = load_embedder(settings)
    client = await connect(settings, make_runtime(settings))
    try:
        async with open_object_store(settings) as store:
            activities = GpuActivities(
                store,
                embedder,
                make_batcher(settings, embedder),
                VectorLru(settings.embedding_cache_entries),
            )
            worker = Worker(
                client,
                task_queue=settings.gpu_task_queue,
                activities=[activities.generate_embeddings],
                max_concurrent_activities=slots_for(
                    [r.device for r in embedder.replicas],
                    settings.max_concurrent_gpu_activities_per_gpu,
                ),
                interceptors=[ActivityMetricsInterceptor("gpu")],
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            )
            await run_until_stopped(worker)
    finally:
        embedder.close()


def main() -> None:
    run_worker("gpu", serve)


if __name__ == "__main__":
    main()
