"""``docpipe show``: one document's record, found by id or by source.

A user remembers what they ingested by where it came from, not by its hash, so
the argument may be a document id, the source exactly as stored, or a local
path as typed (made absolute, as the CSV reader does) -- and a source that was
never ingested is told apart from one that failed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from docpipe.csv_input import document_id_for, resolve_source
from docpipe.storage.metadata import MetadataStore

_SECTIONS: dict[str, tuple[str, ...]] = {
    "document": ("document_id", "status", "title", "source", "content_type", "language", "tags"),
    "failure": ("failure_stage", "failure_reason"),
    "content": (
        "size_bytes",
        "content_sha256",
        "has_text",
        "char_count",
        "word_count",
        "token_count",
        "chunk_count",
        "quality_score",
        "top_words",
    ),
    "analysis": ("label", "label_score", "summary", "ocr_pages", "ocr_confidence", "image_info"),
    "duplicates": ("duplicate_of", "near_duplicate_of", "near_duplicate_distance"),
    "objects": (
        "raw_key",
        "text_key",
        "chunks_key",
        "compressed_key",
        "embeddings_key",
        "embedding_model",
    ),
    "history": (
        "run_id",
        "row_number",
        "attempts",
        "created_at",
        "started_at",
        "updated_at",
        "duration_s",
    ),
}
"""How ``show`` groups a record for people; JSON output has the same fields, flat."""


def candidate_ids(reference: str) -> list[str]:
    """The document ids ``reference`` may mean, most likely first (no I/O)."""
    reference = reference.strip()
    ids = [reference] if reference.startswith("doc-") else []
    ids.append(document_id_for(reference))
    if "://" not in reference:
        resolved = resolve_source(reference, Path.cwd())
        ids.append(document_id_for(resolved))
    return list(dict.fromkeys(ids))


async def find_document(metadata: MetadataStore, reference: str) -> dict[str, Any] | None:
    """The record of the document ``reference`` names (id, source or local path)."""
    ids = candidate_ids(reference)
    rows = await metadata.rows(ids)
    for document_id in ids:
        if document_id in rows:
            return record(rows[document_id])
    row = await metadata.by_source(reference.strip())
    return record(row) if row is not None else None


def record(row: dict[str, Any]) -> dict[str, Any]:
    """The row as ``show`` presents it: every column plus the end-to-end duration."""
    result = dict(row)
    started, updated = row.get("started_at"), row.get("updated_at")
    if isinstance(started, datetime) and isinstance(updated, datetime):
        result["duration_s"] = round((updated - started).total_seconds(), 3)
    else:
        result["duration_s"] = None
    return result


def sections(record: dict[str, Any]) -> list[tuple[str, list[tuple[str, Any]]]]:
    """The record's non-empty fields, grouped and ordered for a human reader."""
    grouped: list[tuple[str, list[tuple[str, Any]]]] = []
    for title, names in _SECTIONS.items():
        fields = [
            (name, record[name]) for name in names if record.get(name) not in (None, "", [], {})
        ]
        if fields:
            grouped.append((title, fields))
    return grouped
