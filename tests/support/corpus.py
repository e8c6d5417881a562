"""Small corpora of text documents that tests write for themselves."""

from __future__ import annotations

import uuid
from pathlib import Path

from faults.harness import document_text

from docpipe.csv_input import parse_documents_csv
from docpipe.models import DocumentRef


def write_text_documents(directory: Path, count: int, *, words: int = 120) -> list[str]:
    """Write ``count`` small English text files of their own (new content on every
    call: a unique tag seeds them, so no earlier run's documents are duplicates)
    into ``directory``; returns their file names, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    names = [f"{tag}-{i:02d}.txt" for i in range(count)]
    for i, name in enumerate(names):
        (directory / name).write_bytes(document_text(f"{tag}-{i}", words=words))
    return names


def text_documents(
    directory: Path, count: int, *, words: int = 120, origin: str = "tests"
) -> list[DocumentRef]:
    """``count`` small text files (see :func:`write_text_documents`; at 120 words or
    fewer, one chunk each), as a CSV of their paths reads them."""
    names = write_text_documents(directory, count, words=words)
    csv = "url\n" + "".join(f"{name}\n" for name in names)
    return parse_documents_csv(csv, base_dir=directory, origin=origin)
