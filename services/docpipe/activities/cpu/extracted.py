"""The result of text extraction, shared by every document kind.

It lives in its own module so the per-format extractors (:mod:`.docx`,
:mod:`.pdf`) and the dispatcher (:mod:`.extract`, which re-exports it) can all
use it without importing each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExtractedText:
    text: str
    title: str
    """The document's own title (``<title>``, first heading, PDF/DOCX metadata), or ``""``."""
    pages_needing_ocr: list[int] = field(default_factory=list)
    """0-based pages of a partly scanned PDF whose text is missing from ``text``
    because they are images; an OCR step may add it. Empty for other kinds."""
