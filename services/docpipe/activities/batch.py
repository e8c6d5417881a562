"""One activity call per batch, one outcome per document.

Every step takes a batch and answers, per document, with what it made or with a
:class:`~docpipe.models.DocumentFailure`: a bad document fails alone and the
rest of the batch goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from docpipe.activities.heartbeat import heartbeating
from docpipe.models import DocumentFailure

J = TypeVar("J")
T = TypeVar("T")


async def each_document(
    step: Callable[[J], Awaitable[T | DocumentFailure]], jobs: Iterable[J]
) -> tuple[list[T], list[DocumentFailure]]:
    """Run ``step`` on every document of the batch at once, heartbeating meanwhile:
    the documents it made and the ones it failed, each list in batch order."""
    async with heartbeating():
        outcomes = await asyncio.gather(*(step(job) for job in jobs))
    succeeded: list[T] = []
    failed: list[DocumentFailure] = []
    for outcome in outcomes:
        if isinstance(outcome, DocumentFailure):
            failed.append(outcome)
        else:
            succeeded.append(outcome)
    return succeeded, failed
