"""Object-store key layout.

A document's own artifacts (raw bytes, text, gzip, OCR text, summary) live
under its id. What only travels between steps (chunks, vectors) lives in one
bundle per batch under ``batches/<bundle id>/``, the id a hash of the batch's
document ids. Keys depend only on ids, so a retried or re-run step overwrites
the same objects instead of creating new ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable


def _per_document(prefix: str, suffix: str = "") -> Callable[[str], str]:
    """The key function of one per-document artifact: ``<prefix>/<id><suffix>``."""

    def key(document_id: str) -> str:
        return f"{prefix}/{document_id}{suffix}"

    return key


raw = _per_document("raw")
text = _per_document("text", ".txt")
chunks = _per_document("chunks", ".json")
embeddings = _per_document("embeddings", ".npy")
embeddings_meta = _per_document("embeddings", ".meta.json")
"""The sidecar of ``embeddings``: the model, the chunk hashes and the matrix's sha256
(vectors stored before bundles existed)."""
ocr_text = _per_document("ocr", ".txt")
summary = _per_document("summaries", ".txt")
compressed = _per_document("compressed", ".txt.gz")


def page_image(document_id: str, page: int) -> str:
    return f"pages/{document_id}/{page:04d}.png"


def bundle_id(document_ids: Iterable[str]) -> str:
    """The same set of documents always names the same bundle (a retry overwrites)."""
    digest = hashlib.sha256("\n".join(sorted(set(document_ids))).encode("utf-8"))
    return digest.hexdigest()[:32]


def chunk_bundle(document_ids: Iterable[str]) -> str:
    return f"batches/{bundle_id(document_ids)}/chunks.json"


def vector_bundle(document_ids: Iterable[str]) -> str:
    return f"batches/{bundle_id(document_ids)}/vectors.npz"


def ingest_csv(content: bytes, filename: str) -> str:
    """Where ``docpipe ingest`` uploads a local CSV for the IO worker to read: named by
    its content, so ingesting the same file again reuses the object (and its bad rows
    keep their ids, which are derived from the CSV's location)."""
    digest = hashlib.sha256(content).hexdigest()[:32]
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename) or "documents.csv"
    return f"ingest/{digest}/{name}"
