"""Text extraction: from a document's bytes and (sniffed) type to plain text.

This module is the entry point of the text steps; the work is split into
:mod:`.sniff` (what is it), :mod:`.encoding` (bytes to str),
:mod:`.html_text` (markup to text), :mod:`.pdf` (PDF text layer) and
:mod:`.docx` (Word documents).

Images and scanned PDFs have no text to extract on the CPU: for them
:func:`extract_text_from_document` raises :class:`NeedsOcr`, which is not a failure but a
routing decision, so the pipeline can send the document to the GPU OCR step.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from docpipe.activities.cpu import sniff
from docpipe.activities.cpu.docx import MAX_CHARS, extract_docx
from docpipe.activities.cpu.encoding import decode_text
from docpipe.activities.cpu.extracted import ExtractedText
from docpipe.activities.cpu.html_text import html_to_text
from docpipe.activities.cpu.pdf import extract_pdf
from docpipe.activities.cpu.sniff import sniff_content_type
from docpipe.errors import DocumentError
from docpipe.models import Stage

__all__ = [
    "ExtractedText",
    "NeedsOcr",
    "decode_text",
    "extract_text_from_document",
    "sniff_content_type",
]

# Other textual types whose content is read as is.
_PLAIN_LIKE = {"application/json", "application/xml", "application/x-ndjson"}
_HTML_LIKE = {sniff.HTML, "application/xhtml+xml"}
_MARKDOWN_LIKE = {sniff.MARKDOWN, "text/x-markdown", "text/x-gfm"}
# Images whose text OCR reads (Pillow decodes them; multi-page TIFFs: the first page).
_OCR_IMAGES = {sniff.PNG, sniff.JPEG, sniff.TIFF}

_UNSUPPORTED_REASONS = {
    sniff.GIF: "text recognition (OCR) in GIF images is not supported; convert it to PNG",
    sniff.ZIP: "archives and office documents other than Word (.docx) are not supported",
    sniff.GZIP: "compressed files are not supported; upload the uncompressed document",
    sniff.BINARY: "the content is binary data, not text",
}
_SUPPORTED = "only plain text, Markdown, HTML, PDF, DOCX and PNG/JPEG/TIFF images are supported"


class NeedsOcr(Exception):
    """The document's text can only be read by OCR (an image, a scanned PDF).

    Deliberately not a :class:`DocumentError`: the document is fine, it just
    belongs on the GPU queue. ``pages`` are the 0-based pages to recognise
    (``[0]`` for an image); ``content_type`` says whether they are PDF pages to
    render first or the image itself.
    """

    def __init__(self, pages: list[int], content_type: str = "") -> None:
        super().__init__(f"{content_type or 'document'} needs OCR of {len(pages)} page(s)")
        self.pages = list(pages)
        self.content_type = content_type

    def __reduce__(self) -> tuple[type[NeedsOcr], tuple[list[int], str]]:
        # Raised inside the CPU worker's process pool: must survive pickling back.
        return (type(self), (self.pages, self.content_type))


MAX_PLAIN_TITLE_CHARS = 120

_META_CHARSET_RE = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE
)

# One parser per process: building it compiles its rules.
_MARKDOWN = MarkdownIt("commonmark").enable("table").enable("strikethrough")


def extract_text_from_document(
    data: bytes, content_type: str, *, max_chars: int = MAX_CHARS
) -> ExtractedText:
    """Plain text and title of a document of type ``content_type``.

    ``content_type`` should come from :func:`sniff_content_type`; a
    ``charset=`` parameter is honoured when the bytes do not say otherwise.

    A PDF gives its text layer. If every page with content is a scan (no text
    layer), :class:`NeedsOcr` is raised with those pages. A partly scanned
    PDF returns the text it has, and lists the scanned pages in
    ``pages_needing_ocr`` without raising: its text is usable as it is, and
    OCR of the remaining pages is an optional extra. PNG, JPEG and TIFF
    images always raise ``NeedsOcr(pages=[0])``.

    Raises :class:`DocumentError` (stage ``extract``) for unsupported types,
    undecodable bytes and corrupt, encrypted or oversized PDFs and DOCX files.
    A DOCX stops at ``max_chars`` characters of text while it is parsed (stage
    ``validate``): its XML may hold more text than its zip suggests.
    """
    mime, charset = _parse_content_type(content_type)
    if mime in _HTML_LIKE:
        html = decode_text(data, charset or _meta_charset(data))
        result = html_to_text(html)
        return ExtractedText(text=result.text, title=result.title)
    if mime in _MARKDOWN_LIKE:
        return _extract_markdown(decode_text(data, charset))
    if mime.startswith("text/") or mime in _PLAIN_LIKE:
        text = decode_text(data, charset)
        return ExtractedText(text=text, title=_plain_title(text) if mime == sniff.PLAIN else "")
    if mime == sniff.PDF:
        return _extract_pdf_text(data)
    if mime == sniff.DOCX:
        return extract_docx(data, max_chars=max_chars)
    if mime in _OCR_IMAGES:
        raise NeedsOcr(pages=[0], content_type=mime)

    reason = _UNSUPPORTED_REASONS.get(mime, _SUPPORTED)
    raise DocumentError(Stage.EXTRACT, f"unsupported content type {mime or '(none)'}: {reason}")


def _extract_markdown(source: str) -> ExtractedText:
    """Markdown's text and first heading.

    markdown-it drops whatever sits deeper than its nesting limit (20), so
    blockquote markers past a depth of 16 are folded first (the text stays),
    and a document whose rendering has no text left is taken as the plain
    text it also is rather than failing as "empty".
    """
    result = html_to_text(
        _MARKDOWN.render(_DEEP_QUOTES.sub(r"\1", source)), title_from_any_heading=True
    )
    if not result.text.strip() and source.strip():
        return ExtractedText(text=source, title=_plain_title(source))
    return ExtractedText(text=result.text, title=result.title)


_DEEP_QUOTES = re.compile(r"^((?:[ \t]{0,3}>){16})(?:[ \t]{0,3}>)+", re.MULTILINE)


def _extract_pdf_text(data: bytes) -> ExtractedText:
    pdf = extract_pdf(data)
    if pdf.is_scanned:
        raise NeedsOcr(pages=pdf.pages_needing_ocr, content_type=sniff.PDF)
    return ExtractedText(text=pdf.text, title=pdf.title, pages_needing_ocr=pdf.pages_needing_ocr)


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
