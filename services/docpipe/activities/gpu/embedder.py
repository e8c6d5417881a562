"""Sentence embeddings with one model replica per device.

Models load once per process (loading MiniLM takes seconds, encoding a batch
milliseconds). Each replica has a single-thread executor: one forward pass at a
time per device keeps the event loop free for heartbeats and new requests while
avoiding two passes fighting over the same GPU (or the same CPU cores).
Replicas are chosen round-robin, so N GPUs serve N batches at once.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from docpipe.activities.gpu.replicas import run_on, shut_down
from docpipe.metrics.gpu import record_inference

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
        return True
    return False


def encode_with_oom_split(
    encode: Callable[[list[str]], np.ndarray],
    texts: list[str],
    is_oom: Callable[[BaseException], bool],
) -> np.ndarray:
    """Encode; on out-of-memory split the batch in halves and retry each, so a batch
    that is too large for the GPU's free memory still succeeds instead of failing."""
    try:
        return encode(texts)
    except Exception as exc:
        if len(texts) <= 1 or not is_oom(exc):
            raise
    middle = len(texts) // 2
    return np.concatenate(
        [
            encode_with_oom_split(encode, texts[:middle], is_oom),
            encode_with_oom_split(encode, texts[middle:], is_oom),
        ]
    )


@dataclass
class _Replica:
    model: Any
    device: str
    executor: ThreadPoolExecutor


class Embedder:
    def __init__(
        self, model_path: Path, devices: list[str], *, batch_size: int = 64, name: str = ""
    ) -> None:
        from sentence_transformers import SentenceTransformer

        self.name = name or model_path.name
        self.batch_size = batch_size
        self.replicas: list[_Replica] = []
        for device in devices:
            model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
            if device.startswith("cuda"):
                model.half()  # fp16: twice the throughput, same ranking quality for MiniLM
            executor = ThreadPoolExecutor(1, thread_name_prefix=f"embed-{device}")
            self.replicas.append(_Replica(model, device, executor))
        self.dimensions = int(self.replicas[0].model.get_embedding_dimension())
        self._next = itertools.cycle(self.replicas)

    def _encode(self, replica: _Replica, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        vectors = encode_with_oom_split(
            lambda part: self._encode_once(replica, part), texts, _is_oom
        )
        record_inference(
            "embed", self.name, replica.device, len(texts), time.perf_counter() - started
        )
        return vectors

    def _encode_once(self, replica: _Replica, texts: list[str]) -> np.ndarray:
        vectors = replica.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Blocking encode on the next replica (for benchmarks and tests)."""
        return self._encode(next(self._next), texts)

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return await run_on(next(self._next), self._encode, texts)

    def close(self) -> None:
        shut_down(self.replicas)


class _NullModel:
    """Stands where a SentenceTransformer stands; computes nothing."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions

    def get_embedding_dimension(self) -> int:
        return self.dimensions

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        vectors[:, 0] = 1.0  # unit length, like the real model's output
        return vectors


class NullEmbedder(Embedder):
    """EMBEDDING_NULL_MODEL: the worker's whole path around a model that costs nothing.

    For bench/feed.py: the chunks/s the GPU worker reaches with it is the rate at
    which its Python could feed a real GPU."""

    def __init__(self, devices: list[str], *, dimensions: int = 384, name: str = "null") -> None:
        self.name = name
        self.batch_size = 1 << 16
        self.replicas = [
            _Replica(_NullModel(dimensions), d, ThreadPoolExecutor(1, thread_name_prefix="null"))
            for d in devices
        ]
        self.dimensions = dimensions
        self._next = itertools.cycle(self.replicas)
