"""The on-store format of embedding matrices.

A single matrix is a float32 ``.npy``: it keeps shape and dtype with the bytes,
so the reader never guesses the dimension, and numpy reads it without
pickling anything.

A batch's vectors are one ``.npz`` bundle (``numpy.load`` opens it): the
``vectors`` of every document stacked, and an ``index`` (JSON) giving each
document's rows, the hash of each of its chunks and the model. One object per
batch instead of a matrix and a sidecar per document: the hashes that let a
re-run skip unchanged chunks travel in the same object as the vectors they
describe, so no torn pair of writes can mismatch them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np


def to_npy(matrix: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(matrix, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def from_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


@dataclass
class VectorBundle:
    """The vectors of a batch's documents, by document id."""

    model: str
    dimensions: int
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    hashes: dict[str, list[str]] = field(default_factory=dict)
    """Each document's chunk hashes, row for row (see embedding_cache.chunk_hash)."""

    def by_hash(self, document_id: str) -> dict[str, np.ndarray]:
        rows = self.vectors.get(document_id)
        if rows is None:
            return {}
        return dict(zip(self.hashes[document_id], rows, strict=True))


def bundle_to_npz(bundle: VectorBundle) -> bytes:
    index: dict[str, object] = {"model": bundle.model, "dimensions": bundle.dimensions}
    documents: dict[str, dict[str, object]] = {}
    start = 0
    for document_id, rows in bundle.vectors.items():
        documents[document_id] = {
            "start": start,
            "count": len(rows),
            "hashes": bundle.hashes[document_id],
        }
        start += len(rows)
    index["documents"] = documents
    parts = [np.asarray(v, dtype=np.float32) for v in bundle.vectors.values() if len(v)]
    matrix = np.concatenate(parts) if parts else np.zeros((0, bundle.dimensions), dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        vectors=np.ascontiguousarray(matrix, dtype=np.float32),
        index=np.frombuffer(json.dumps(index).encode(), dtype=np.uint8),
    )
    return buffer.getvalue()


def bundle_from_npz(data: bytes) -> VectorBundle:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        matrix = archive["vectors"]
        index = json.loads(archive["index"].tobytes())
    bundle = VectorBundle(str(index["model"]), int(index["dimensions"]))
    for document_id, entry in index["documents"].items():
        start, count = int(entry["start"]), int(entry["count"])
        hashes = list(entry["hashes"])
        if len(hashes) != count or start + count > len(matrix):
            raise ValueError(f"vector bundle index is inconsistent for {document_id}")
        bundle.vectors[document_id] = matrix[start : start + count]
        bundle.hashes[document_id] = hashes
    return bundle
