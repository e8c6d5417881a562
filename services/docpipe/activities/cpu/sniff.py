"""Decide what a document really is from its bytes.

Declared types and file extensions are hints, not facts: servers send HTML as
``text/plain``, everything as ``application/octet-stream``, and a ``.txt`` may
hold anything. Magic bytes decide first; for text, the markup decides between
HTML and plain text, and the hints only break ties that the bytes cannot.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from docpipe.activities.cpu.docx import is_docx
from docpipe.activities.cpu.encoding import bom_encoding, guess_utf16_without_bom, looks_binary

HTML = "text/html"
MARKDOWN = "text/markdown"
PLAIN = "text/plain"
PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
TIFF = "image/tiff"
GIF = "image/gif"
ZIP = "application/zip"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
GZIP = "application/gzip"
BINARY = "application/octet-stream"

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", PDF),
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"\xff\xd8\xff", JPEG),
    (b"II*\x00", TIFF),
    (b"MM\x00*", TIFF),
    (b"GIF87a", GIF),
    (b"GIF89a", GIF),
    (b"PK\x03\x04", ZIP),  # also docx, xlsx, odt, epub: all zip containers
    (b"PK\x05\x06", ZIP),  # empty archive
    (b"PK\x07\x08", ZIP),  # spanned archive
    (b"\x1f\x8b", GZIP),
)

SNIFF_BYTES = 8192
"""How much of the document the decision looks at: enough for any HTML preamble."""

_HTML_HINTS = {"text/html", "application/xhtml+xml"}
_MARKDOWN_HINTS = {"text/markdown", "text/x-markdown", "text/x-gfm"}
_HTML_EXTENSIONS = {".html", ".htm", ".xhtml", ".shtml"}
_MARKDOWN_EXTENSIONS = {".md", ".markdown", ".mdown", ".mkd", ".mkdn"}
_TEXT_EXTENSIONS = {".txt", ".text", ".log"}

# Markup only an HTML document has (not a text that mentions a tag in passing).
_STRONG_HTML_RE = re.compile(r"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]")
_COMMON_TAG_RE = re.compile(
    r"<(p|div|span|a|br|hr|h[1-6]|ul|ol|li|table|tr|td|th|img|b|i|em|strong|section|"
    r"article|nav|header|footer|main|meta|link|script|style|title|form|pre|blockquote)[\s>/]"
)

_MD_HEADING_RE = re.compile(r"^#{1,6} \S", re.MULTILINE)
_MD_LIST_RE = re.compile(r"^ {0,3}(?:[-*+]|\d{1,3}[.)]) \S", re.MULTILINE)
_MD_LINK_RE = re.compile(r"!?\[[^\]\n]+\]\([^)\s]+\)")
_MD_FENCE_RE = re.compile(r"^ {0,3}(?:```|~~~)", re.MULTILINE)


def sniff_content_type(data: bytes, declared: str = "", filename: str = "") -> str:
    """The MIME type of ``data``, judged by its content.

    ``declared`` (a Content-Type or the CSV's content_type) and ``filename``
    (a path or URL) only steer the choice between kinds of text.
    """
    head = data[:SNIFF_BYTES]
    stripped = head.lstrip(b" \t\r\n")
    for magic, mime in _MAGIC:
        if stripped.startswith(magic):
            # A zip is a container: a Word document is one holding word/document.xml.
            if mime == ZIP and is_docx(data):
                return DOCX
            return mime

    text = _decode_head(head)
    if text is None:
        return BINARY
    hints = _hints(declared, filename)
    return _classify_text(text, hints)


def _decode_head(head: bytes) -> str | None:
    """The start of the document as lower-case text, or None if it is binary."""
    bom = bom_encoding(head)
    if bom is not None:
        encoding, skip = bom
        return head[skip:].decode(encoding, errors="replace").lower()
    utf16 = guess_utf16_without_bom(head)
    if utf16 is not None:
        return head.decode(utf16, errors="replace").lower()
    if looks_binary(head):
        return None
    # 8-bit legacy text decodes with a few replacement characters; the markup
    # we look for is ASCII either way.
    return head.decode("utf-8", errors="replace").lower()


def _hints(declared: str, filename: str) -> set[str]:
    """What the declared type and the file extension say: {"html", "markdown", "text"}."""
    hints: set[str] = set()
    mime = declared.split(";", 1)[0].strip().lower()
    if mime in _HTML_HINTS:
        hints.add("html")
    elif mime in _MARKDOWN_HINTS:
        hints.add("markdown")
    elif mime == PLAIN:
        hints.add("text")

    if filename:
        path = urlsplit(filename).path if "://" in filename else filename
        suffix = PurePosixPath(path.replace("\\", "/")).suffix.lower()
        if suffix in _HTML_EXTENSIONS:
            hints.add("html")
        elif suffix in _MARKDOWN_EXTENSIONS:
            hints.add("markdown")
        elif suffix in _TEXT_EXTENSIONS:
            hints.add("text")
    return hints


def _classify_text(text: str, hints: set[str]) -> str:
    starts_with_markup = text.lstrip("\ufeff \t\r\n").startswith("<")
    strong_html = _STRONG_HTML_RE.search(text) is not None
    tags = len(set(_COMMON_TAG_RE.findall(text)))

    if "markdown" in hints:
        # Markdown may embed HTML; only a whole HTML page overrides the hint.
        return HTML if starts_with_markup and strong_html else MARKDOWN
    if "html" in hints:
        return HTML if strong_html or tags else PLAIN
    if "text" in hints:
        # A page served as text/plain still starts like a page.
        return HTML if starts_with_markup and (strong_html or tags >= 2) else PLAIN
    if strong_html or (starts_with_markup and tags >= 2) or tags >= 4:
        return HTML
    # Rendering plain text as Markdown mangles it (``*`` and ``_`` become
    # emphasis, indented lines code), so without a hint it takes strong signals.
    if _markdown_signals(text) >= 2:
        return MARKDOWN
    return PLAIN


def _markdown_signals(text: str) -> int:
    """How many distinct kinds of Markdown syntax ``text`` uses."""
    return sum(
        1
        for pattern in (_MD_HEADING_RE, _MD_LIST_RE, _MD_LINK_RE, _MD_FENCE_RE)
        if pattern.search(text) is not None
    )
