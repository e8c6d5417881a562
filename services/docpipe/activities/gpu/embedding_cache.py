"""Embeddings are cached by (model, chunk hash): unchanged chunks are never re-embedded.

Two levels. A batch's vectors are stored in one bundle with the model and the
hash of every chunk (storage/arrays.py), and the workflow tells a re-run where
each document stored before has its vectors, so a re-run reuses every vector
whose chunk text is unchanged, even when chunks moved, at one read per earlier
bundle (never one per chunk, and none for a new document). An in-process LRU
catches repeats across documents (boilerplate paragraphs, duplicates).

Vectors stored before bundles existed (``embeddings/<id>.npy`` with a
``.meta.json`` sidecar naming the model, the hashes and the matrix's sha256)
are still read by :func:`load_stored_vectors`.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

import numpy as np

from docpipe.storage import keys
from docpipe.storage.arrays import from_npy
from docpipe.storage.objects import ObjectNotFound, ObjectStore


def chunk_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class VectorLru:
    """A bounded map from chunk hash to vector, per model."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def get(self, model: str, digest: str) -> np.ndarray | None:
        key = (model, digest)
        vector = self._items.get(key)
        if vector is not None:
            self._items.move_to_end(key)
        return vector

    def put(self, model: str, digest: str, vector: np.ndarray) -> None:
        if self.capacity <= 0:
            return
        self._items[(model, digest)] = vector
        self._items.move_to_end((model, digest))
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


async def load_stored_vectors(
    store: ObjectStore, document_id: str, model: str
) -> dict[str, np.ndarray]:
    """The vectors stored for this document by this model, by chunk hash ({} if none)."""
    try:
        meta = json.loads(await store.get(keys.embeddings_meta(document_id)))
        if meta.get("model") != model:
            return {}
        npy = await store.get(keys.embeddings(document_id))
    except ObjectNotFound:
        return {}
    if meta.get("npy_sha256") != hashlib.sha256(npy).hexdigest():
        return {}  # torn write: the vectors are not the ones the sidecar describes
    matrix = from_npy(npy)
    hashes = meta.get("hashes", [])
    if len(hashes) != len(matrix):
        return {}
    return dict(zip(hashes, matrix, strict=True))
