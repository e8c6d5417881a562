"""One model replica per device, each on its own single-thread executor.

The embedder and the OCR engine both work this way: one call at a time per
replica keeps two passes from fighting over one GPU (or the same CPU cores),
and the event loop stays free for heartbeats and new requests meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar


class Replica(Protocol):
    executor: ThreadPoolExecutor


R = TypeVar("R", bound=Replica)
A = TypeVar("A")
T = TypeVar("T")


async def run_on(replica: R, work: Callable[[R, A], T], arg: A) -> T:
    """``work(replica, arg)`` on the replica's own thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(replica.executor, work, replica, arg)


def shut_down(replicas: Iterable[Replica]) -> None:
    """Wait for each replica's call in progress, then stop its thread."""
    for replica in replicas:
        replica.executor.shutdown(wait=True)
