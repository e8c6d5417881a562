"""What a summary engine is: the interface ``run_llm_inference`` calls.

Three engines implement it: the extractive one (:mod:`.extractive`, the
offline default) and the generative ones (:mod:`.llm`: a local model or an
OpenAI-compatible endpoint). The worker picks one at start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass
class EmbeddedText:
    """A document as the embedding step left it: chunk texts and their vectors."""

    chunks: list[str]
    vectors: np.ndarray


class Summarizer(Protocol):
    name: str

    async def summarize(self, texts: Sequence[str]) -> list[str]:
        """One summary per text, in order."""
        ...

    async def summarize_embedded(self, documents: Sequence[EmbeddedText]) -> list[str]:
        """The same, from each document's chunks and the vectors already computed
        for them: no chunk is embedded a second time."""
        ...


async def summarize_each(
    summarize_one: Callable[[T], Awaitable[str]], items: Sequence[T]
) -> list[str]:
    """One summary per item, in order, all of them requested at once: for engines
    whose summaries are independent calls (an endpoint, a per-document ranking)."""
    return list(await asyncio.gather(*(summarize_one(item) for item in items)))
