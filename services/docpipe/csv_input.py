"""Reading the documents CSV: one :class:`DocumentRef` per data row.

Columns: ``url`` (required: http(s) or file URL, or a path relative to the
CSV's folder), ``title``, ``content_type`` (declared; content is still
sniffed), ``tags`` (``;``-separated), ``language`` (a hint). A bad row does
not stop the file: it becomes a document that fails at the ``csv`` stage with
the reason, so it shows up in the summary and in PostgreSQL.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from docpipe.models import DocumentRef

URL_COLUMNS = ("url", "source", "file_path", "path")
KNOWN_SCHEMES = {"http", "https", "file", "s3"}
MAX_FIELD_BYTES = 1024 * 1024


class CsvFormatError(ValueError):
    """The file as a whole is unusable (no header, no url column)."""


def document_id_for(source: str) -> str:
    """Stable id from the source, so re-running a CSV upserts instead of duplicating."""
    return "doc-" + hashlib.sha256(source.encode("utf-8")).hexdigest()[:32]


def _row_id(origin: str, row_number: int, raw: str) -> str:
    digest = hashlib.sha256(f"{origin}\n{row_number}\n{raw}".encode()).hexdigest()[:32]
    return f"row-{digest}"


def resolve_source(url: str, base_dir: Path | None) -> str:
    """A URL stays as written; a plain path becomes absolute against the CSV's folder."""
    url = url.strip()
    scheme = urlsplit(url).scheme.lower()
    if scheme and (len(scheme) > 1 or scheme in KNOWN_SCHEMES):
        return url
    path = Path(url).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return str(path.absolute())


def _split_tags(value: str) -> list[str]:
    return [t.strip() for t in value.replace(",", ";").split(";") if t.strip()]


def _records(text: str) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """Yield (line number, fields or None, error) without letting one bad line stop the file."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    limit = csv.field_size_limit()
    csv.field_size_limit(MAX_FIELD_BYTES)
    try:
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, None, f"unreadable CSV row: {exc}"
                continue
            yield reader.line_num, fields, None
    finally:
        csv.field_size_limit(limit)


def parse_documents_csv(
    text: str, *, base_dir: Path | None = None, origin: str = "csv"
) -> list[DocumentRef]:
    """Parse the whole CSV text; see the module docstring for the columns."""
    text = text.removeprefix("\ufeff")
    records = _records(text)
    header: list[str] | None = None
    for _, fields, _err in records:
        if fields and any(f.strip() for f in fields):
            header = [f.strip().lower() for f in fields]
            break
    if header is None:
        raise CsvFormatError("the CSV file is empty (no header row)")
    url_col = next((c for c in URL_COLUMNS if c in header), None)
    if url_col is None:
        raise CsvFormatError(
            f"the CSV header has no url column (expected one of {', '.join(URL_COLUMNS)}; "
            f"found {', '.join(header) or 'nothing'})"
        )

    documents: list[DocumentRef] = []
    first_row_of: dict[str, int] = {}
    for line, fields, error in records:
        if fields is not None and not any(f.strip() for f in fields):
            continue  # blank line: not a row
        raw = "" if fields is None else ",".join(fields)
        if error is not None or fields is None:
            documents.append(
                DocumentRef(_row_id(origin, line, raw), "", line, invalid_reason=error)
            )
            continue
        if len(fields) > len(header):
            reason = f"row has {len(fields)} fields but the header has {len(header)}"
            documents.append(
                DocumentRef(_row_id(origin, line, raw), "", line, invalid_reason=reason)
            )
            continue
        row = dict(zip(header, (f.strip() for f in fields), strict=False))
        url = row.get(url_col, "")
        common = {
            "row_number": line,
            "title": row.get("title", ""),
            "declared_type": row.get("content_type", ""),
            "language_hint": row.get("language", ""),
            "tags": _split_tags(row.get("tags", "")),
        }
        if not url:
            documents.append(
                DocumentRef(
                    _row_id(origin, line, raw), "", invalid_reason=f"row has no {url_col}", **common
                )
            )
            continue
        source = resolve_source(url, base_dir)
        if source in first_row_of:
            reason = f"duplicate of row {first_row_of[source]} (same source)"
            documents.append(
                DocumentRef(_row_id(origin, line, raw), source, invalid_reason=reason, **common)
            )
            continue
        first_row_of[source] = line
        documents.append(DocumentRef(document_id_for(source), source, **common))
    return documents


def batched(documents: list[DocumentRef], size: int) -> list[list[DocumentRef]]:
    if size < 1:
        raise ValueError("batch size must be at least 1")
    return [documents[i : i + size] for i in range(0, len(documents), size)]
