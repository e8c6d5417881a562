"""Text extraction: from a document's bytes and (sniffed) type to plain text.

This module is the entry point of the text steps; the work is split into
:mod:`.sniff` (what is it), :mod:`.encoding` (bytes to str) and
:mod:`.html_text` (markup to text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt

from docpipe.activities.cpu import sniff
from docpipe.activities.cpu.encoding import decode_text
from docpipe.activities.cpu.html_text import html_to_text
from docpipe.activities.cpu.sniff import sniff_content_type
from docpipe.errors import DocumentError
from docpipe.models import Stage

__all__ = ["ExtractedText", "decode_text", "extract_text", "sniff_content_type"]

# Other textual types whose content is read as is.
_PLAIN_LIKE = {"application/json", "application/xml", "application/x-ndjson"}
_HTML_LIKE = {sniff.HTML, "application/xhtml+xml"}
_MARKDOWN_LIKE = {sniff.MARKDOWN, "text/x-markdown", "text/x-gfm"}

_UNSUPPORTED_REASONS = {
    sniff.PDF: "PDF text extraction is not supported yet",
    sniff.PNG: "text recognition (OCR) in images is not supported yet",
    sniff.JPEG: "text recognition (OCR) in images is not supported yet",
    sniff.TIFF: "text recognition (OCR) in images is not supported yet",
    sniff.GIF: "text recognition (OCR) in images is not supported yet",
    sniff.ZIP: "archives and office documents (zip containers such as .docx) are not supported",
    sniff.GZIP: "compressed files are not supported; upload the uncompressed document",
    sniff.BINARY: "the content is binary data, not text",
}

MAX_PLAIN_TITLE_CHARS = 120

_META_CHARSET_RE = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE
)

# One parser per process: building it compiles its rules.
_MARKDOWN = MarkdownIt("commonmark").enable("table").enable("strikethrough")


@dataclass
class ExtractedText:
    text: str
    title: str
    """The document's own title (``<title>``, first heading), or ``""``."""


def extract_text(data: bytes, content_type: str) -> ExtractedText:
    """Plain text and title of a document of type ``content_type``.

    ``content_type`` should come from :func:`sniff_content_type`; a
    ``charset=`` parameter is honoured when the bytes do not say otherwise.
    Raises :class:`DocumentError` (stage ``extract``) for types that carry no
    extractable text yet and for undecodable bytes.
    """
    mime, charset = _parse_content_type(content_type)
    if mime in _HTML_LIKE:
        html = decode_text(data, charset or _meta_charset(data))
        result = html_to_text(html)
        return ExtractedText(text=result.text, title=result.title)
    if mime in _MARKDOWN_LIKE:
        source = decode_text(data, charset)
        result = html_to_text(_MARKDOWN.render(source), title_from_any_heading=True)
        return ExtractedText(text=result.text, title=result.title)
    if mime.startswith("text/") or mime in _PLAIN_LIKE:
        text = decode_text(data, charset)
        return ExtractedText(text=text, title=_plain_title(text) if mime == sniff.PLAIN else "")

    reason = _UNSUPPORTED_REASONS.get(mime, "only plain text, Markdown and HTML are supported")
    raise DocumentError(Stage.EXTRACT, f"unsupported content type {mime or '(none)'}: {reason}")


def _plain_title(text: str) -> str:
    """A plain-text title: a short first line standing alone above the text,
    as in "Title\n\nFirst paragraph..."; anything else is not a title."""
    first, sep, rest = text.lstrip("\ufeff \t\r\n").partition("\n")
    first = first.strip()
    if not sep or not rest.lstrip(" \t\r").startswith("\n"):
        return ""  # no blank line after it: the first line of a paragraph
    if not first or len(first) > MAX_PLAIN_TITLE_CHARS or first[-1] in ".,;:":
        return ""
    return " ".join(first.split())


def _parse_content_type(content_type: str) -> tuple[str, str]:
    """``"text/html; charset=UTF-8"`` -> ``("text/html", "UTF-8")``."""
    mime, _, params = content_type.partition(";")
    charset = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'")
    return mime.strip().lower(), charset


def _meta_charset(data: bytes) -> str:
    """The charset an HTML page declares in its first KB (``<meta charset>``)."""
    match = _META_CHARSET_RE.search(data[:2048])
    return match.group(1).decode("ascii") if match else ""
