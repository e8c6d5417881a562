"""The CPU worker: its process pool and the bytes it processes.

Every document's text work is one task in the worker's ``ProcessPoolExecutor``.
:class:`MeteredPool` wraps that executor and counts what was submitted and
not finished yet; at scrape time that splits into ``busy`` (at most one task
per pool process) and ``queued`` (the rest, waiting for a free process). A
queue that stays above zero means the pool, not Temporal, is the bottleneck:
more pool processes (WORKER_CPU_THREADS) or more replicas help.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

INPUT_BYTES = Counter(
    "docpipe_cpu_input_bytes",
    "Raw document bytes read by the CPU worker for text processing.",
)
POOL_TASK_SECONDS = Histogram(
    "docpipe_cpu_pool_task_duration_seconds",
    "Time from submitting a task to the process pool to its result (waiting included).",
    ["function"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


class MeteredPool(Executor):
    """An executor that delegates to ``pool`` and knows how many tasks are pending."""

    def __init__(self, pool: Executor, size: int) -> None:
        self.pool = pool
        self.size = size
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Submitted and not finished: running or waiting for a free process."""
        return self._pending

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        started = time.perf_counter()
        name = getattr(fn, "__name__", type(fn).__name__)
        with self._lock:
            self._pending += 1
        try:
            future = self.pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._done(name, started)
            raise
        future.add_done_callback(lambda _f: self._done(name, started))
        return future

    def _done(self, name: str, started: float) -> None:
        with self._lock:
            self._pending -= 1
        POOL_TASK_SECONDS.labels(name).observe(time.perf_counter() - started)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)


class PoolCollector(Collector):
    """size / busy / queued of the CPU worker's pools, read at scrape time."""

    def __init__(self) -> None:
        self.pools: list[MeteredPool] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = sum(p.size for p in self.pools)
        busy = sum(min(p.pending, p.size) for p in self.pools)
        queued = sum(max(p.pending - p.size, 0) for p in self.pools)
        if not self.pools:
            return
        yield GaugeMetricFamily(
            "docpipe_cpu_pool_processes", "Processes in the CPU worker's pool.", value=size
        )
        yield GaugeMetricFamily(
            "docpipe_cpu_pool_busy_processes",
            "Pool processes working on a document now.",
            value=busy,
        )
        yield GaugeMetricFamily(
            "docpipe_cpu_pool_queued_tasks",
            "Tasks waiting for a free pool process.",
            value=queued,
        )


_collector = PoolCollector()
_registered = False


def watch_pool(pool: MeteredPool, registry: CollectorRegistry = REGISTRY) -> None:
    """Report ``pool`` in the docpipe_cpu_pool_* gauges."""
    global _registered
    if not _registered:
        registry.register(_collector)
        _registered = True
    _collector.pools.append(pool)


def unwatch_pool(pool: MeteredPool) -> None:
    if pool in _collector.pools:
        _collector.pools.remove(pool)
