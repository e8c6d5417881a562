"""Dynamic micro-batching: many small concurrent requests, few large model calls.

A model's throughput depends on batch size (MiniLM on one GPU does ~10^4 short
texts/s at large batches, a fraction of that one by one), but activities
arrive one batch of documents at a time, each with a handful of chunks. The
batcher queues concurrent requests and runs them as one model call when
``max_batch_items`` items are waiting or the oldest has waited ``max_wait_s``,
then hands each request its own slice of the results.

Failures stay with their request: if a merged batch fails, each request in it
is re-run alone, so one poisonous input fails only the activity that sent it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass
class _Request(Generic[T, R]):
    items: Sequence[T]
    future: asyncio.Future[list[R]]
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """Running totals, for metrics and tests."""

    batches: int = 0
    items: int = 0
    requests: int = 0
    isolated_failures: int = 0

    @property
    def mean_batch_size(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        run_batch: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch_items: int = 256,
        max_wait_s: float = 0.005,
        max_concurrent_batches: int = 1,
        on_batch: Callable[[int, int, float], None] | None = None,
    ) -> None:
        """``run_batch`` must return one result per item, in order.
        ``on_batch(items, requests, queue_wait_s)`` is called once per model call."""
        if max_batch_items < 1:
            raise ValueError("max_batch_items must be at least 1")
        self._run_batch = run_batch
        self.max_batch_items = max_batch_items
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Request[T, R]] = asyncio.Queue()
        self._slots = asyncio.Semaphore(max_concurrent_batches)
        self._collector: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.stats = BatchStats()

    async def submit(self, items: Sequence[T]) -> list[R]:
        """Results for ``items`` in order; waits at most about ``max_wait_s`` to batch."""
        if not items:
            return []
        self._ensure_started()
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(items, future))
        return await future

    def _ensure_started(self) -> None:
        if self._collector is None or self._collector.done():
            self._collector = asyncio.create_task(self._collect(), name="micro-batcher")

    async def _collect(self) -> None:
        carry: _Request[T, R] | None = None
        while True:
            first = carry or await self._queue.get()
            carry = None
            # Take a model slot before collecting: while the model is busy, requests pile
            # up in the queue and all go into the next batch (continuous batching).
            await self._slots.acquire()
            batch = [first]
            size = len(first.items)
            deadline = first.enqueued + self.max_wait_s
            while size < self.max_batch_items:
                timeout = deadline - time.monotonic()
                try:
                    nxt = (
                        self._queue.get_nowait()
                        if timeout <= 0
                        else await asyncio.wait_for(self._queue.get(), timeout)
                    )
                except (TimeoutError, asyncio.QueueEmpty):
                    break
                if size + len(nxt.items) > self.max_batch_items:
                    carry = nxt  # starts the next batch; requests are never split across batches
                    break
                batch.append(nxt)
                size += len(nxt.items)
            task = asyncio.create_task(self._run(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _run(self, batch: list[_Request[T, R]]) -> None:
        try:
            live = [r for r in batch if not r.future.done()]  # a cancelled caller needs no result
            if not live:
                return
            items = [item for r in live for item in r.items]
            waited = time.monotonic() - min(r.enqueued for r in live)
            try:
                results = await self._run_batch(items)
                if len(results) != len(items):
                    raise RuntimeError(
                        f"run_batch returned {len(results)} results for {len(items)} items"
                    )
            except Exception as exc:
                if len(live) == 1:
                    self._fail(live[0], exc)
                else:
                    await self._run_alone(live)
                return
            self._record(len(items), len(live), waited)
            start = 0
            for request in live:
                end = start + len(request.items)
                if not request.future.done():
                    request.future.set_result(list(results[start:end]))
                start = end
        finally:
            self._slots.release()

    async def _run_alone(self, requests: list[_Request[T, R]]) -> None:
        """A merged batch failed: find which request is to blame by running each alone."""
        for request in requests:
            try:
                results = await self._run_batch(list(request.items))
            except Exception as exc:
                self._fail(request, exc)
                continue
            self._record(len(request.items), 1, time.monotonic() - request.enqueued)
            if not request.future.done():
                request.future.set_result(list(results))

    def _fail(self, request: _Request[T, R], exc: Exception) -> None:
        self.stats.isolated_failures += 1
        if not request.future.done():
            request.future.set_exception(exc)

    def _record(self, items: int, requests: int, waited: float) -> None:
        self.stats.batches += 1
        self.stats.items += items
        self.stats.requests += requests
        if self._on_batch:
            self._on_batch(items, requests, waited)

    async def close(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
