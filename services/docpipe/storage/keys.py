"""Object-store key layout: every artifact of a document lives under its id.

Keys depend only on the document id, so a retried or re-run step overwrites
the same objects instead of creating new ones.
"""

from __future__ import annotations


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
