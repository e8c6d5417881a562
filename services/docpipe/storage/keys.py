"""Object-store key layout.

A document's own artifacts (raw bytes, text, gzip, OCR text, summary) live
under its id. What only travels between steps (chunks, vectors) lives in one
bundle per batch under ``batches/<bundle id>/``, the id a hash of the batch's
document ids. Keys depend only on ids, so a retried or re-run step overwrites
the same objects instead of creating new ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def raw(document_id: str) -> str:
    return f"raw/{document_id}"


def text(document_id: str) -> str:
    return f"text/{document_id}.txt"


def chunks(document_id: str) -> str:
    return f"chunks/{document_id}.json"


def embeddings(document_id: str) -> str:
    return f"embeddings/{document_id}.npy"


def page_image(document_id: str, page: int) -> str:
    return f"pages/{document_id}/{page:04d}.png"


def ocr_text(document_id: str) -> str:
    return f"ocr/{document_id}.txt"


def summary(document_id: str) -> str:
    return f"summaries/{document_id}.txt"


def compressed(document_id: str) -> str:
    return f"compressed/{document_id}.txt.gz"


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
