"""The GPU worker: devices (NVML), model throughput and the micro-batcher.

Device metrics come from NVML (the ``nvidia-ml-py`` package, module
``pynvml``) at scrape time, and only where NVML finds a GPU: on a CPU-only
node the ``docpipe_gpu_memory_*``, ``temperature`` and ``utilization`` series
are absent, not zero, so an alert on "GPU memory near full" cannot fire on a
machine without one and a dashboard shows "no data" rather than a false 0 %.

Throughput and batching are recorded where they happen: the embedder counts
items per model call, the embedding activity the tokens it sends to the model, and the micro-batcher's ``on_batch`` hook
reports each batch's size, how full it was and how long its oldest request
waited to be batched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

log = logging.getLogger(__name__)

INFERENCE_ITEMS = Counter(
    "docpipe_gpu_inference_items",
    "Items through a model: chunk texts embedded, page images read by OCR.",
    ["task", "model"],
)
INFERENCE_TOKENS = Counter(
    "docpipe_gpu_inference_tokens",
    "Tokens of the chunk texts sent to the embedding model (the chunker's counts).",
    ["task", "model"],
)
INFERENCE_SECONDS = Histogram(
    "docpipe_gpu_inference_duration_seconds",
    "Wall time of one model call on one device (one micro-batch).",
    ["task", "model", "device"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH_SIZE = Histogram(
    "docpipe_gpu_batch_size_items",
    "Items in one micro-batch (one model call).",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
BATCH_FILL = Histogram(
    "docpipe_gpu_batch_fill_ratio",
    "Batch efficiency: items in a micro-batch / the batch's maximum (EMBEDDING_MAX_BATCH_ITEMS).",
    ["model"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0),
)
BATCH_MAX_ITEMS = Gauge(
    "docpipe_gpu_batch_max_items", "The micro-batcher's maximum items per batch.", ["model"]
)
QUEUE_WAIT = Histogram(
    "docpipe_gpu_batch_queue_wait_seconds",
    "How long the oldest request of a micro-batch waited for its model call to start.",
    ["model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EMBEDDING_CACHE = Counter(
    "docpipe_gpu_embedding_cache_lookups",
    "Chunk vectors looked up before the model: hit (stored or in memory) or miss (embedded).",
    ["result"],
)


def batch_observer(model: str, max_batch_items: int) -> Callable[[int, int, float], None]:
    """A MicroBatcher ``on_batch(items, requests, queue_wait_s)`` hook recording the batch."""
    BATCH_MAX_ITEMS.labels(model).set(max_batch_items)
    size, fill, wait = BATCH_SIZE.labels(model), BATCH_FILL.labels(model), QUEUE_WAIT.labels(model)

    def on_batch(items: int, requests: int, queue_wait_s: float) -> None:
        size.observe(items)
        fill.observe(min(items / max_batch_items, 1.0))
        wait.observe(max(queue_wait_s, 0.0))

    return on_batch


def record_inference(task: str, model: str, device: str, items: int, seconds: float) -> None:
    """One model call of ``items`` inputs on ``device`` that took ``seconds``."""
    INFERENCE_ITEMS.labels(task, model).inc(items)
    INFERENCE_SECONDS.labels(task, model, device).observe(seconds)


def record_embedding_lookups(model: str, hits: int, misses: int, miss_tokens: int) -> None:
    """Chunk vectors found before the model (hits) and sent to it (misses, with their tokens).

    Tokens come from the chunks' own counts (the CPU worker chunked with the
    embedding model's tokenizer), so counting them costs no second tokenization.
    """
    if hits:
        EMBEDDING_CACHE.labels("hit").inc(hits)
    if misses:
        EMBEDDING_CACHE.labels("miss").inc(misses)
    if miss_tokens:
        INFERENCE_TOKENS.labels("embed", model).inc(miss_tokens)


# ------------------------------------------------------------------------- NVML


class NvmlCollector(Collector):
    """Memory, temperature and utilisation of every GPU NVML sees, read at scrape time."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self._lock = threading.Lock()
        self._devices: list[tuple[str, str, Any]] = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):  # older bindings return bytes
                name = name.decode()
            self._devices.append((str(index), str(name), handle))

    @property
    def device_count(self) -> int:
        return len(self._devices)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["gpu", "name"]
        used = GaugeMetricFamily(
            "docpipe_gpu_memory_used_bytes", "GPU memory in use (NVML).", labels=labels
        )
        total = GaugeMetricFamily(
            "docpipe_gpu_memory_total_bytes", "GPU memory installed (NVML).", labels=labels
        )
        temperature = GaugeMetricFamily(
            "docpipe_gpu_temperature_celsius", "GPU core temperature (NVML).", labels=labels
        )
        utilization = GaugeMetricFamily(
            "docpipe_gpu_utilization_ratio",
            "Share of the last sample period in which a kernel ran on the GPU (NVML, 0-1).",
            labels=labels,
        )
        nvml = self._nvml
        with self._lock:
            for index, name, handle in self._devices:
                # Each reading on its own: a GPU without a temperature sensor still
                # reports memory, and a failed reading leaves its series absent.
                try:
                    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                    used.add_metric([index, name], float(memory.used))
                    total.add_metric([index, name], float(memory.total))
                except nvml.NVMLError as err:
                    log.debug("NVML memory of GPU %s: %s", index, err)
                try:
                    celsius = nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
                    temperature.add_metric([index, name], float(celsius))
                except nvml.NVMLError as err:
                    log.debug("NVML temperature of GPU %s: %s", index, err)
                try:
                    rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                    utilization.add_metric([index, name], rates.gpu / 100.0)
                except nvml.NVMLError as err:
                    log.debug("NVML utilisation of GPU %s: %s", index, err)
        yield from (used, total, temperature, utilization)


def register_nvml_collector(
    registry: CollectorRegistry = REGISTRY, nvml: Any | None = None
) -> NvmlCollector | None:
    """Register GPU device metrics if NVML is installed and finds a GPU; else None."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            log.info("nvidia-ml-py is not installed: no GPU device metrics")
            return None
    try:
        nvml.nvmlInit()
        collector = NvmlCollector(nvml)
    except nvml.NVMLError as err:
        log.info("no GPU device metrics: NVML is not available (%s)", err)
        return None
    if not collector.device_count:
        return None
    registry.register(collector)
    return collector
