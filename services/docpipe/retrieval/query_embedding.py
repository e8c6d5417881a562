"""Embedding a search query with the model the documents were embedded with.

A query vector is only comparable with chunk vectors of the same model, so the
CLI and the HTTP API load EMBEDDING_MODEL_PATH (the packaged MiniLM by default)
on the CPU -- one short text per query needs no GPU -- once per process, on
first use, so that text-only searches and ``show`` never pay for it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from docpipe.config import Settings

if TYPE_CHECKING:
    import numpy as np


class QueryEmbedder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.embedding_model_name
        self._model: Any = None
        self._lock = asyncio.Lock()

    async def _loaded(self) -> Any:
        async with self._lock:
            if self._model is None:
                from transformers.utils import logging as transformers_logging

                from docpipe.activities.gpu.embedder import Embedder

                # A person at a terminal asked a question; a weight-loading bar is noise.
                transformers_logging.disable_progress_bar()

                path = self.settings.resolved_embedding_model_path
                self._model = await asyncio.to_thread(Embedder, path, ["cpu"], name=self.name)
        return self._model

    async def warm(self) -> None:
        """Load the model now (a server's start-up), not on the first query."""
        await self._loaded()

    async def __call__(self, query: str) -> np.ndarray:
        model = await self._loaded()
        return (await model.embed([query]))[0]

    def close(self) -> None:
        if self._model is not None:
            self._model.close()
