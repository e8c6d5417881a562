"""The on-store format of chunks, shared by every worker type.

Written by the CPU worker, read by the GPU worker (to embed) and the IO worker
(to store the chunk text beside its vector). Kept free of tokenizer imports so
that the IO and GPU images can read chunks without the CPU extra.

A batch's chunks travel as ONE object (a bundle: document id -> its chunks),
not one per document: every object-store request costs a few milliseconds of
client CPU (signing, HTTP, parsing), which for short documents was most of
the pipeline's non-model work. ``chunks_to_json`` (one document) stays for
tools and tests that handle a single document.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass
class Chunk:
    index: int
    text: str
    token_count: int
    char_start: int
    char_end: int


def chunks_to_json(chunks: list[Chunk]) -> bytes:
    return json.dumps([asdict(c) for c in chunks], ensure_ascii=False).encode("utf-8")


def chunks_from_json(data: bytes) -> list[Chunk]:
    return [Chunk(**item) for item in json.loads(data)]


def bundle_to_json(chunks_by_document: dict[str, list[Chunk]]) -> bytes:
    """One object for the chunks of every document of a batch."""
    return json.dumps(
        {"documents": {d: [asdict(c) for c in cs] for d, cs in chunks_by_document.items()}},
        ensure_ascii=False,
    ).encode("utf-8")


def bundle_from_json(data: bytes) -> dict[str, list[Chunk]]:
    """Document id -> chunks; a single document's list (the older per-document
    format) reads as a bundle without ids, under the key ``""``."""
    parsed = json.loads(data)
    if isinstance(parsed, list):
        return {"": [Chunk(**item) for item in parsed]}
    return {d: [Chunk(**item) for item in cs] for d, cs in parsed["documents"].items()}


def chunks_of(bundle: dict[str, list[Chunk]], document_id: str) -> list[Chunk] | None:
    """A document's chunks from a bundle (or a per-document object); None if absent."""
    if document_id in bundle:
        return bundle[document_id]
    return bundle.get("")
