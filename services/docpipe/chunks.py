"""The on-store format of a document's chunks, shared by every worker type.

Written by the CPU worker, read by the GPU worker (to embed) and the IO worker
(to store the chunk text beside its vector). Kept free of tokenizer imports so
that the IO and GPU images can read chunks without the CPU extra.
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
