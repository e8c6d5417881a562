"""GPU worker: batched model inference on the GPU queue.

Models are loaded once, before polling starts, one replica per visible GPU (up
to GPU_COUNT); with no GPU the same code runs on the CPU. Slots are
MAX_CONCURRENT_GPU_ACTIVITIES_PER_GPU per device, so a node with more GPUs
takes proportionally more work.
"""

from __future__ import annotations

import logging

import httpx
import numpy as np

from docpipe.activities.gpu.activities import GpuActivities
from docpipe.activities.gpu.batcher import MicroBatcher
from docpipe.activities.gpu.classify import DEFAULT_TAXONOMY, DocumentClassifier, ZeroShotClassifier
from docpipe.activities.gpu.devices import slots_for, visible_devices
from docpipe.activities.gpu.embedder import Embedder, NullEmbedder
from docpipe.activities.gpu.embedding_cache import VectorLru
from docpipe.activities.gpu.extractive import ExtractiveSummarizer
from docpipe.activities.gpu.llm import EndpointSummarizer, TransformersSummarizer
from docpipe.activities.gpu.model_classifiers import ImageModelClassifier, TextModelClassifier
from docpipe.activities.gpu.ocr import OcrEngine
from docpipe.activities.gpu.ocr_activities import OcrActivities
from docpipe.activities.gpu.summaries import Summarizer
from docpipe.activities.io.outbound import OutboundClient
from docpipe.config import Settings
from docpipe.metrics.gpu import batch_observer, register_nvml_collector
from docpipe.storage.objects import open_object_store
from docpipe.workers.activity_worker import poll_activities
from docpipe.workers.common import connect, make_runtime, run_worker

log = logging.getLogger("docpipe.worker.gpu")


def load_embedder(settings: Settings) -> Embedder:
    devices = visible_devices(settings.gpu_count)
    if settings.embedding_null_model:
        log.warning("EMBEDDING_NULL_MODEL is set: embeddings are zero vectors (benchmarks only)")
        return NullEmbedder(devices)
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
        on_batch=batch_observer(embedder.name, settings.embedding_max_batch_items),
    )


def load_classifier(settings: Settings, embedder: Embedder) -> DocumentClassifier:
    """CLASSIFIER_MODEL_PATH if set, else zero-shot over the taxonomy's descriptions."""
    if settings.classifier_model_path:
        return TextModelClassifier(settings.classifier_model_path, embedder.replicas[0].device)
    taxonomy = settings.classifier_taxonomy or DEFAULT_TAXONOMY
    vectors = embedder.encode(ZeroShotClassifier.prompts(taxonomy))
    return ZeroShotClassifier(list(taxonomy), vectors, min_score=settings.classifier_min_score)


def load_summarizer(
    settings: Settings,
    embedder: Embedder,
    batcher: MicroBatcher[str, np.ndarray],
    http: httpx.AsyncClient,
) -> Summarizer:
    """LLM_ENDPOINT, else LLM_MODEL_PATH, else extractive summaries with our own model."""
    if settings.llm_endpoint:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return EndpointSummarizer(
            http, settings.llm_endpoint, model=settings.llm_model_name, api_key=key
        )
    if settings.llm_model_path:
        device = embedder.replicas[0].device
        return TransformersSummarizer(
            settings.llm_model_path, device, max_new_tokens=settings.llm_max_new_tokens
        )
    return ExtractiveSummarizer(batcher.submit, max_sentences=settings.summary_max_sentences)


async def serve(settings: Settings) -> None:
    register_nvml_collector()  # GPU memory, temperature, utilisation; none without a GPU
    embedder = load_embedder(settings)
    client = await connect(settings, make_runtime(settings))
    classifier = load_classifier(settings, embedder)
    ocr = OcrEngine([r.device for r in embedder.replicas], languages=settings.ocr_languages)
    image_classifier = (
        ImageModelClassifier(settings.image_classifier_model_path, embedder.replicas[0].device)
        if settings.image_classifier_model_path
        else None
    )
    batcher = make_batcher(settings, embedder)
    try:
        async with open_object_store(settings) as store, OutboundClient(timeout=120) as http:
            activities = GpuActivities(
                store,
                embedder,
                batcher,
                VectorLru(settings.embedding_cache_entries),
                classifier,
                load_summarizer(settings, embedder, batcher, http),
            )
            ocr_activities = OcrActivities(store, ocr, image_classifier)
            # The models, the batcher and the clients serve every Worker of the process.
            served = [
                activities.generate_embeddings,
                activities.run_llm_inference,
                ocr_activities.perform_ocr,
            ]
            slots = slots_for(
                [r.device for r in embedder.replicas],
                settings.max_concurrent_gpu_activities_per_gpu,
            )
            await poll_activities(settings, client, "gpu", served, slots)
    finally:
        await batcher.close()
        embedder.close()
        ocr.close()


def main() -> None:
    run_worker("gpu", serve)


if __name__ == "__main__":
    main()
