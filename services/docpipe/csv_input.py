"""Reading the documents CSV: one :class:`DocumentRef` per data row.

Columns: ``url`` (required: http(s) or file URL, or a path relative to the
CSV's folder), ``title``, ``content_type`` (declared; content is still
sniffed), ``tags`` (``;``-separated), ``language`` (a hint). A bad row does
not stop the file: it becomes a document that fails at the ``csv`` stage with
the reason, so it shows up in the summary and in PostgreSQL.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from docpipe.models import DocumentRef

URL_COLUMNS = ("url", "source", "file_path", "path")
KNOWN_SCHEMES = {"http", "https", "file", "s3"}
MAX_FIELD_BYTES = 1024 * 1024
"""Cap on one row of the file, in characters: larger rows fail unread."""
MAX_CELL_CHARS = 8192
"""Cap on one cell of a row that is read (a url, a title)."""
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


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
    if _SIMPLE_RELATIVE_RE.match(url):
        # The common case, without pathlib's parsing (most of the time of a
        # 100k-row CSV); the result is the same string pathlib would give.
        base = _absolute_dir(str(base_dir) if base_dir is not None else os.getcwd())
        return f"{base}/{url}"
    path = Path(url).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return str(path.absolute())


# "docs/a.txt": no leading "/" or "~", no "." or ".." parts, no empty parts.
_SIMPLE_RELATIVE_RE = re.compile(r"^(?!\.\.?(?:/|$))[\w-][\w.-]*(?:/(?!\.\.?(?:/|$))[\w.-]+)*$")


@functools.lru_cache(maxsize=64)
def _absolute_dir(base_dir: str) -> str:
    return str(Path(base_dir).absolute()).rstrip("/")


def _clean(value: str) -> str:
    return _CONTROL_RE.sub("", value.replace("\t", " ").replace("\n", " "))


def _split_tags(value: str) -> list[str]:
    return [t.strip() for t in value.replace(",", ";").split(";") if t.strip()]


MAX_RECORD_LINES = 1000
"""A quoted field may hold line breaks, but a row spanning more lines than this
is an unclosed quote swallowing the rows after it, not a real row."""


class _LineFeed:
    """Physical lines for :mod:`csv`, one record's worth at a time.

    The reader is fed line by line so that the parser always knows where a
    record started and how far it ran. A record that outgrows the caps (an
    unclosed quote eating the rest of the file, a 10 MB cell) is cut short
    instead of being read to the end.
    """

    def __init__(self, lines: list[str], start: int, max_chars: int, max_lines: int) -> None:
        self.lines = lines
        self.next = start
        self.chars = 0
        self.max_chars = max_chars
        self.end = min(len(lines), start + max_lines)
        self.capped = False
        """The record ran past ``max_lines`` lines."""
        self.oversized = False
        """The record grew past ``max_chars`` characters."""

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self.next >= self.end:
            self.capped = self.next < len(self.lines)
            raise StopIteration
        line = self.lines[self.next]
        if self.chars + len(line) > self.max_chars:
            self.oversized = True  # never handed to csv: memory and time stay bounded
            raise StopIteration
        self.next += 1
        self.chars += len(line)
        return line


def _unterminated(lines: list[str]) -> bool:
    """Whether these lines end inside a quoted field (strict parsing says so)."""
    try:
        for _ in csv.reader(lines, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _record_end(lines: list[str], start: int) -> int | None:
    """Index after the last line of the record starting at ``start``, by quote
    parity (a quoted field closes when its quotes pair up), or None if the
    quotes never pair up: an unclosed quote."""
    quotes = 0
    for index in range(start, len(lines)):
        quotes += lines[index].count('"')
        if quotes % 2 == 0:
            return index + 1
    return None


def _records(
    text: str, *, max_chars: int = MAX_FIELD_BYTES, max_lines: int = MAX_RECORD_LINES
) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """Yield (line number, fields or None, error) for every record of ``text``.

    One bad line never stops the file, and never swallows the rows after it:
    a row over the size caps, or one whose quote is never closed, is reported
    with its line number and reading resumes on the next line. Line numbers
    are physical (1-based) lines where each record starts.
    """
    # newline="": split on \n, \r and \r\n only, as csv does (str.splitlines
    # would also split inside fields on \x0b, \x1c, U+2028 ...).
    lines = list(io.StringIO(text, newline=""))
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, max_chars + 2))  # our cap below decides, per row
    try:
        position = 0
        while position < len(lines):
            start = position
            feed = _LineFeed(lines, start, max_chars, max_lines)
            try:
                fields = next(csv.reader(feed, strict=False), None)
            except csv.Error as exc:
                yield start + 1, None, f"unreadable CSV row: {exc}"
                position = max(feed.next, start + 1)
                continue
            spanned = feed.next - start
            if feed.oversized or (fields is not None and feed.capped):
                # Too big to be a row. If its quotes pair up further on, it is one
                # huge record: skip to its end. If they never do, a quote is unclosed:
                # go on from the next line, so the rows it swallowed are still read.
                end = _record_end(lines, start)
                what = (
                    f"larger than the {max_chars // 1024} KB limit for one row"
                    if feed.oversized
                    else f"longer than {max_lines} lines"
                )
                if end is None:
                    reason = (
                        f"the row is {what}: the quote opened on line {start + 1} is never closed"
                    )
                    position = start + 1
                elif end - start > 1:
                    reason = f"the row on lines {start + 1}-{end} is {what}"
                    position = end
                else:
                    reason = f"the row is {what}"
                    position = end
                yield start + 1, None, f"unreadable CSV row: {reason}"
                continue
            if fields is None:
                return
            if spanned > 1 and feed.next == len(lines) and _unterminated(lines[start:]):
                yield (
                    start + 1,
                    None,
                    (
                        f"unreadable CSV row: the quote opened on line {start + 1} is never "
                        "closed; the lines after it are read as rows of their own"
                    ),
                )
                position = start + 1
                continue
            yield start + 1, fields, None
            position = feed.next
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
        oversized = next((c for c, v in row.items() if len(v) > MAX_CELL_CHARS), None)
        if oversized is not None:
            # Every row travels in the batch's workflow input (a few MB at most).
            reason = (
                f"the {oversized} cell is {len(row[oversized]):,} characters long; "
                f"the limit is {MAX_CELL_CHARS:,}"
            )
            documents.append(
                DocumentRef(_row_id(origin, line, raw), "", line, invalid_reason=reason)
            )
            continue
        url = row.get(url_col, "")
        if _CONTROL_RE.search(url):
            reason = f"the {url_col} contains control characters (a NUL, a line break ...)"
            documents.append(
                DocumentRef(_row_id(origin, line, raw), "", line, invalid_reason=reason)
            )
            continue
        # PostgreSQL refuses NUL in text, and no title needs a control character.
        common = {
            "row_number": line,
            "title": _clean(row.get("title", "")),
            "declared_type": _clean(row.get("content_type", "")),
            "language_hint": _clean(row.get("language", "")),
            "tags": _split_tags(_clean(row.get("tags", ""))),
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


_last_parsed: tuple[tuple[str, str, str], list[DocumentRef]] | None = None
_last_parsed_lock = threading.Lock()


def documents_page(
    text: str, offset: int, limit: int, *, base_dir: Path | None = None, origin: str = "csv"
) -> tuple[list[DocumentRef], int | None]:
    """Rows ``[offset, offset + limit)`` and the next offset: :func:`csv_page` without
    the total."""
    documents, next_offset, _ = csv_page(text, offset, limit, base_dir=base_dir, origin=origin)
    return documents, next_offset


def csv_page(
    text: str, offset: int, limit: int, *, base_dir: Path | None = None, origin: str = "csv"
) -> tuple[list[DocumentRef], int | None, int]:
    """Rows ``[offset, offset + limit)`` of the CSV, the next offset (None at the end)
    and how many documents the whole file holds.

    The server-side ingestion asks for a long CSV page after page. Parsing the
    whole file for every page made that quadratic (a 100k-row CSV in pages of
    500 is 200 full parses); the last file parsed is kept, keyed by a hash of
    its text, so each page after the first is a slice. Duplicate rows are still
    found across the whole file, as :func:`parse_documents_csv` finds them.
    """
    global _last_parsed
    key = (hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(), str(base_dir), origin)
    with _last_parsed_lock:
        cached = _last_parsed
    if cached is not None and cached[0] == key:
        documents = cached[1]
    else:
        documents = parse_documents_csv(text, base_dir=base_dir, origin=origin)
        with _last_parsed_lock:
            _last_parsed = (key, documents)
    end = offset + limit
    return documents[offset:end], (end if end < len(documents) else None), len(documents)
