"""The GPU worker's micro-batcher: concurrent requests in, few model calls out."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from docpipe.activities.gpu.batcher import MicroBatcher
from docpipe.activities.gpu.embedder import encode_with_oom_split


class FakeModel:
    """Doubles numbers; records the size of each call; fails on request."""

    def __init__(self, delay_s: float = 0.0, poison: int | None = None) -> None:
        self.calls: list[int] = []
        self.delay_s = delay_s
        self.poison = poison

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(len(items))
        await asyncio.sleep(self.delay_s)
        if self.poison is not None and self.poison in items:
            raise ValueError(f"cannot process {self.poison}")
        return [2 * i for i in items]


async def test_concurrent_requests_are_merged_into_one_call_and_split_back_in_order():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_items=100, max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.submit([i, i + 100]) for i in range(10)))
    assert results == [[2 * i, 2 * (i + 100)] for i in range(10)]
    assert model.calls == [20]
    await batcher.close()


async def test_a_batch_never_exceeds_max_items_and_requests_are_not_split():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_items=5, max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.submit([i, i, i]) for i in range(4)))
    assert results == [[2 * i] * 3 for i in range(4)]
    assert all(size <= 5 for size in model.calls)
    assert sum(model.calls) == 12
    await batcher.close()


async def test_a_request_larger_than_max_items_runs_alone_whole():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_items=4, max_wait_s=0.01)
    assert await batcher.submit(list(range(10))) == [2 * i for i in range(10)]
    assert model.calls == [10]
    await batcher.close()


async def test_a_lone_request_waits_no_longer_than_max_wait():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch_items=1000, max_wait_s=0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await batcher.submit([1])
    assert loop.time() - started < 0.5
    await batcher.close()


async def test_requests_arriving_while_the_model_is_busy_join_the_next_batch():
    model = FakeModel(delay_s=0.1)
    batcher = MicroBatcher(model, max_batch_items=1000, max_wait_s=0.0)
    first = asyncio.create_task(batcher.submit([0]))
    await asyncio.sleep(0.02)
    rest = await asyncio.gather(*(batcher.submit([i]) for i in range(1, 9)))
    assert await first == [0]
    assert rest == [[2 * i] for i in range(1, 9)]
    assert model.calls == [1, 8]
    await batcher.close()


async def test_a_failing_request_fails_alone_and_the_others_get_their_results():
    model = FakeModel(poison=13)
    batcher = MicroBatcher(model, max_batch_items=100, max_wait_s=0.05)
    results = await asyncio.gather(
        batcher.submit([1, 2]), batcher.submit([13]), batcher.submit([3]), return_exceptions=True
    )
    assert results[0] == [2, 4]
    assert isinstance(results[1], ValueError)
    assert results[2] == [6]
    assert batcher.stats.isolated_failures == 1
    await batcher.close()


async def test_a_wrong_number_of_results_is_an_error_not_a_silent_misalignment():
    async def broken(items: list[int]) -> list[int]:
        return items[:-1]

    batcher = MicroBatcher(broken, max_batch_items=10, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        await batcher.submit([1, 2])
    await batcher.close()


async def test_parallel_batches_up_to_the_number_of_replicas():
    running = 0
    peak = 0

    async def model(items: list[int]) -> list[int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return items

    batcher = MicroBatcher(model, max_batch_items=1, max_wait_s=0.0, max_concurrent_batches=2)
    await asyncio.gather(*(batcher.submit([i]) for i in range(6)))
    assert peak == 2
    await batcher.close()


class InjectedOom(RuntimeError):
    pass


def test_out_of_memory_splits_the_batch_and_retries_the_halves():
    sizes: list[int] = []

    def encode(texts: list[str]) -> np.ndarray:
        sizes.append(len(texts))
        if len(texts) > 3:
            raise InjectedOom("CUDA out of memory")
        return np.array([[len(t)] for t in texts], dtype=np.float32)

    texts = ["a" * i for i in range(1, 11)]
    out = encode_with_oom_split(encode, texts, lambda e: isinstance(e, InjectedOom))
    assert out[:, 0].tolist() == list(range(1, 11)), "order is preserved across splits"
    assert sizes[0] == 10 and max(sizes[1:]) <= 5


def test_other_errors_and_a_single_item_oom_are_raised():
    def always_oom(texts: list[str]) -> np.ndarray:
        raise InjectedOom("CUDA out of memory")

    with pytest.raises(InjectedOom):
        encode_with_oom_split(always_oom, ["a", "b"], lambda e: isinstance(e, InjectedOom))

    def broken(texts: list[str]) -> np.ndarray:
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        encode_with_oom_split(broken, ["a", "b"], lambda e: isinstance(e, InjectedOom))
