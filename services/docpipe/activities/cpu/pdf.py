"""PDF text layer and page rendering, with PDFium (pypdfium2), on the CPU.

PDFium is the parser Chrome uses: fast (C++), tolerant of the damaged files
found in the wild, and fuzzed for years, which matters for untrusted uploads.
It also renders pages, so a scanned page can be turned into an image for OCR
without a second PDF library.

A page "needs OCR" when its text layer is (nearly) empty *and* it shows an
image: that is a scan. A page with no text and no image is blank and is left
alone, and so is a page with a short text and no image (a chapter title).
Pages drawn as vector outlines without text are not detected.

PDFium keeps global state and is not thread-safe; the CPU worker runs these
functions in a process pool, one call per process at a time.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from docpipe.errors import DocumentError
from docpipe.models import Stage

__all__ = [
    "MAX_TITLE_CHARS",
    "MIN_TEXT_CHARS_PER_PAGE",
    "PdfExtraction",
    "extract_pdf",
    "render_pages",
]

MIN_TEXT_CHARS_PER_PAGE = 16
"""Fewer non-whitespace characters than this on a page with an image: a scan.

A scanned page often still carries a page number or a stamp as text."""

MAX_TITLE_CHARS = 200

# PDFium marks a hyphen it found at a line end as U+0002; other C0 controls
# (except tab and newline) are noise from broken font encodings.
_CONTROL_RE = re.compile(r"[\x00\x01\x03-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class PdfExtraction:
    text: str
    """The text layer, pages separated by a blank line."""
    title: str
    """The metadata title, else the first line of text, else ``""``."""
    page_count: int
    pages_needing_ocr: list[int] = field(default_factory=list)
    """0-based pages whose text layer is (nearly) empty but which show an image."""
    encrypted: bool = False
    """Encrypted, but readable without a password (only the owner password is set)."""
    text_pages: list[int] = field(default_factory=list)
    """0-based pages with a real text layer (at least MIN_TEXT_CHARS_PER_PAGE)."""

    @property
    def is_scanned(self) -> bool:
        """True when only OCR can give this document any text: some pages are
        scans and none has a real text layer."""
        return bool(self.pages_needing_ocr) and not self.text_pages


def extract_pdf(data: bytes, *, max_pages: int = 2000) -> PdfExtraction:
    """The text layer of a PDF, and which pages are scans that need OCR.

    Raises :class:`DocumentError` (stage ``extract``) for an encrypted PDF that
    needs a password, a corrupt or truncated file, and more than ``max_pages``
    pages (a cap on the work one document may cause).
    """
    pdf = _open(data)
    try:
        page_count = len(pdf)
        if page_count > max_pages:
            raise DocumentError(
                Stage.EXTRACT, f"PDF has {page_count} pages, more than the limit of {max_pages}"
            )
        texts: list[str] = []
        needing_ocr: list[int] = []
        text_pages: list[int] = []
        for index in range(page_count):
            text, has_image = _read_page(pdf, index)
            texts.append(text)
            if _visible_chars(text) >= MIN_TEXT_CHARS_PER_PAGE:
                text_pages.append(index)
            elif has_image:
                needing_ocr.append(index)
        full_text = "\n\n".join(t for t in texts if t)
        return PdfExtraction(
            text=full_text,
            title=_title(_metadata_title(pdf), full_text),
            page_count=page_count,
            pages_needing_ocr=needing_ocr,
            encrypted=pdfium_c.FPDF_GetSecurityHandlerRevision(pdf.raw) != -1,
            text_pages=text_pages,
        )
    finally:
        pdf.close()


def render_pages(
    data: bytes, pages: list[int], *, dpi: int = 200, max_pixels: int = 40_000_000
) -> list[bytes]:
    """PNG images of ``pages`` (0-based), for OCR of scanned pages.

    Pages are rendered in greyscale (OCR ignores colour; the PNG is a third
    the size) at ``dpi``; a page that would exceed ``max_pixels`` at that
    resolution is rendered at the highest resolution that fits instead, so a
    poster-sized page cannot exhaust memory. Raises :class:`ValueError` for a
    page number outside the document (a caller's bug, not bad input).
    """
    if dpi <= 0 or max_pixels <= 0:
        raise ValueError("dpi and max_pixels must be positive")
    pdf = _open(data)
    try:
        page_count = len(pdf)
        bad = [p for p in pages if not 0 <= p < page_count]
        if bad:
            raise ValueError(f"pages {bad} are not in a PDF of {page_count} pages")
        return [_render_png(pdf, index, dpi, max_pixels) for index in pages]
    finally:
        pdf.close()


# --------------------------------------------------------------------------- helpers


def _open(data: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code == pdfium_c.FPDF_ERR_PASSWORD:
            raise DocumentError(
                Stage.EXTRACT, "PDF is encrypted and needs a password to be opened"
            ) from exc
        if code == pdfium_c.FPDF_ERR_SECURITY:
            raise DocumentError(
                Stage.EXTRACT, "PDF is encrypted with an unsupported security scheme"
            ) from exc
        if code == pdfium_c.FPDF_ERR_SUCCESS:  # parsed fine, but no page to show
            raise DocumentError(Stage.EXTRACT, "corrupt PDF: it has no pages") from exc
        raise DocumentError(Stage.EXTRACT, f"corrupt PDF: {_pdfium_reason(exc)}") from exc


def _pdfium_reason(exc: Exception) -> str:
    """PDFium's own words ("Data format error"), without pypdfium2's wrapping."""
    match = re.search(r"PDFium: ([^)]+)", str(exc))
    return match.group(1).lower() if match else str(exc)


def _read_page(pdf: pdfium.PdfDocument, index: int) -> tuple[str, bool]:
    """(normalised text, whether the page shows an image) of one page."""
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            text = _clean(textpage.get_text_range())
        finally:
            textpage.close()
        # Only near-empty pages are checked for images: walking a page's
        # objects costs more than reading its text.
        has_image = _visible_chars(text) < MIN_TEXT_CHARS_PER_PAGE and _shows_image(page)
        return text, has_image
    finally:
        page.close()


def _shows_image(page: pdfium.PdfPage) -> bool:
    """Whether an image is drawn on the page, directly or inside a form XObject."""
    return any(True for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]))


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x02", "-")
    text = _CONTROL_RE.sub("", text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def _visible_chars(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def _metadata_title(pdf: pdfium.PdfDocument) -> str:
    try:
        title = pdf.get_metadata_value("Title")
    except (pdfium.PdfiumError, UnicodeError, ValueError):
        return ""
    return " ".join(_CONTROL_RE.sub("", title).split())


def _title(metadata_title: str, text: str) -> str:
    """The metadata title, else the first line of the text with a word in it
    (not a lone page number or a rule of dashes)."""
    if metadata_title:
        return metadata_title[:MAX_TITLE_CHARS]
    for line in text.split("\n"):
        line = " ".join(line.split())
        if sum(ch.isalpha() for ch in line) >= 2:
            return line[:MAX_TITLE_CHARS]
    return ""


def _render_png(pdf: pdfium.PdfDocument, index: int, dpi: int, max_pixels: int) -> bytes:
    page = pdf[index]
    try:
        width_pt, height_pt = page.get_size()
        width_pt, height_pt = max(width_pt, 1.0), max(height_pt, 1.0)
        scale = min(dpi / 72, math.sqrt(max_pixels / (width_pt * height_pt)))
        # PDFium rounds the bitmap's sides up: shave the scale until it fits.
        while math.ceil(width_pt * scale) * math.ceil(height_pt * scale) > max_pixels:
            scale *= 0.99
        bitmap = page.render(scale=scale, grayscale=True)
        try:
            image = bitmap.to_pil()
            buffer = io.BytesIO()
            # Level 3: nearly the size of level 6 at a fraction of the time;
            # these PNGs are only a transport format to the OCR step.
            image.save(buffer, format="PNG", compress_level=3)
            return buffer.getvalue()
        finally:
            bitmap.close()
    finally:
        page.close()
