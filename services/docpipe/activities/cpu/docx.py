"""Text of a Word document (DOCX), read with the standard library only.

A DOCX is a zip of XML parts; the text is in ``word/document.xml``, the title
in ``docProps/core.xml`` and the style names (which say what a heading is) in
``word/styles.xml``. Reading those three parts with :mod:`zipfile` and
:mod:`xml.etree` is all a text pipeline needs, and is fast and dependency-free.

What comes out mirrors what a reader sees: paragraphs separated by blank lines
(the chunker's paragraph boundaries), consecutive list items on their own lines,
table rows as lines with tab-separated cells, text boxes after the paragraph
that anchors them. Hidden runs, deleted tracked changes, field codes and the
duplicate "fallback" copies Word writes for compatibility are left out.

Untrusted zips are guarded: each part is read with a cap on its uncompressed
size (a zip bomb stops at the cap, whatever its headers claim), and parsed by
:mod:`.safe_xml`, which refuses any document type declaration in whatever
encoding (a real DOCX has none, an entity-expansion bomb needs one), keeps only
the text and attributes read here, and stops at ``max_chars`` of text and
:data:`MAX_PART_ELEMENTS` elements while parsing.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from xml.etree import ElementTree as ET
from xml.parsers import expat

from docpipe.activities.cpu.extracted import ExtractedText
from docpipe.activities.cpu.safe_xml import (
    TextTooLong,
    UnsafeXml,
    XmlTooLarge,
    parse_untrusted_xml,
)
from docpipe.errors import DocumentError
from docpipe.models import Stage

__all__ = [
    "DOCUMENT_PART",
    "MAX_CHARS",
    "MAX_PART_BYTES",
    "MAX_PART_ELEMENTS",
    "extract_docx",
    "is_docx",
]

DOCUMENT_PART = "word/document.xml"
MAX_PART_BYTES = 64 * 1024 * 1024
"""Cap on one part's uncompressed size: a 64 MB document.xml is ~10 MB of text."""
MAX_PART_ELEMENTS = 1_500_000
"""Cap on one part's XML elements. A parsed element costs ~175 bytes (measured),
so this bounds a tree at ~260 MB; 1.5 M elements is a document of thousands of
pages, far past the text the pipeline accepts (MAX_CHARS)."""
MAX_CHARS = 5_000_000
"""Default cap on the characters of text read, the pipeline's MAX_TEXT_CHARS."""
_READ_STEP = 1024 * 1024

# Transitional (what Word writes) and Strict OOXML namespaces.
_W_NAMESPACES = frozenset(
    {
        "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
        "http://purl.oclc.org/ooxml/wordprocessingml/main",
    }
)
_MC_NAMESPACE = "http://schemas.openxmlformats.org/markup-compatibility/2006"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
# What the walk below reads: the text of w:t (and of dc:title), w:val and w:styleId.
_DOCUMENT_TEXT = frozenset(f"{{{ns}}}t" for ns in _W_NAMESPACES)
_KEPT_ATTRIBUTES = frozenset(f"{{{ns}}}{a}" for ns in _W_NAMESPACES for a in ("val", "styleId"))
_HEADING_RE = re.compile(r"^heading\s*([1-9])$")


@dataclass
class _Block:
    """One unit of the document's text: a paragraph or a table row."""

    text: str
    kind: str  # "paragraph", "list", "row"
    style: str = ""  # lower-case style name, e.g. "heading 1", "title"


def is_docx(data: bytes) -> bool:
    """Whether ``data`` is a zip holding a Word document part (DOCX, DOCM)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any(info.filename == DOCUMENT_PART for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def extract_docx(
    data: bytes, *, max_part_bytes: int = MAX_PART_BYTES, max_chars: int = MAX_CHARS
) -> ExtractedText:
    """Plain text and title of a DOCX.

    Raises :class:`DocumentError` (stage ``extract``) for a corrupt or
    encrypted zip, a zip without a Word document, malformed XML or XML with a
    DTD, and a part larger than ``max_part_bytes`` once uncompressed or than
    :data:`MAX_PART_ELEMENTS` elements once parsed; (stage ``validate``) for
    more than ``max_chars`` characters of text, found while parsing.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DocumentError(Stage.EXTRACT, f"corrupt DOCX: {exc}") from exc
    with archive:
        document = _read_part(archive, DOCUMENT_PART, max_part_bytes)
        if document is None:
            raise DocumentError(
                Stage.EXTRACT, f"not a Word document: the zip has no {DOCUMENT_PART}"
            )
        styles = _style_names(_read_part(archive, "word/styles.xml", max_part_bytes))
        core_title = _core_title(_read_part(archive, "docProps/core.xml", max_part_bytes))
        root = _parse(document, DOCUMENT_PART, text_tags=_DOCUMENT_TEXT, max_chars=max_chars)

    blocks = list(_blocks(root, styles))
    return ExtractedText(text=_join(blocks), title=core_title or _title_from(blocks))


# --------------------------------------------------------------------------- zip and XML


def _read_part(archive: zipfile.ZipFile, name: str, limit: int) -> bytes | None:
    """A part's bytes, at most ``limit`` of them once uncompressed; None if absent."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    if info.file_size > limit:
        raise _too_large(name, limit)
    try:
        with archive.open(info) as part:
            # The header's size may lie: read one byte past the cap to know. In
            # steps, since one read inflates as much as it is asked for before
            # trimming to the claimed size: a lying bomb then costs 1 MB, not 64.
            pieces: list[bytes] = []
            remaining = limit + 1
            while remaining > 0:
                piece = part.read(min(remaining, _READ_STEP))
                if not piece:
                    break
                pieces.append(piece)
                remaining -= len(piece)
            content = b"".join(pieces)
    except RuntimeError as exc:  # zipfile's "File ... is encrypted"
        raise DocumentError(Stage.EXTRACT, f"DOCX is encrypted: {exc}") from exc
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
        raise DocumentError(Stage.EXTRACT, f"corrupt DOCX: {name}: {exc}") from exc
    if len(content) > limit:
        raise _too_large(name, limit)
    return content


def _too_large(name: str, limit: int) -> DocumentError:
    return DocumentError(
        Stage.EXTRACT, f"DOCX part {name} is larger than {limit // (1024 * 1024)} MB uncompressed"
    )


def _parse(
    xml: bytes, name: str, *, text_tags: frozenset[str] = frozenset(), max_chars: int = MAX_CHARS
) -> ET.Element:
    """The part's tree, holding only the text of ``text_tags`` and the attributes read here."""
    try:
        return parse_untrusted_xml(
            xml,
            text_tags=text_tags,
            keep_attributes=_KEPT_ATTRIBUTES,
            max_text_chars=max_chars,
            max_elements=MAX_PART_ELEMENTS,
        )
    except UnsafeXml as exc:
        raise DocumentError(Stage.EXTRACT, f"corrupt DOCX: {name} {exc}") from exc
    except TextTooLong as exc:
        # The same failure as any other text over the limit, only found sooner.
        raise DocumentError(
            Stage.VALIDATE, f"document is too long: {name} holds {exc}, the limit is {max_chars:,}"
        ) from exc
    except XmlTooLarge as exc:
        raise DocumentError(Stage.EXTRACT, f"DOCX part {name} has {exc}") from exc
    except expat.ExpatError as exc:
        raise DocumentError(Stage.EXTRACT, f"corrupt DOCX: {name}: {exc}") from exc


def _split(tag: object) -> tuple[str, str]:
    """``"{ns}local"`` -> ``(ns, local)``; comments and PIs have non-str tags."""
    if not isinstance(tag, str):
        return "", ""
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _w(element: ET.Element) -> str:
    """The local name of a WordprocessingML element, or ``""`` for anything else."""
    ns, local = _split(element.tag)
    return local if ns in _W_NAMESPACES else ""


def _w_attr(element: ET.Element, name: str) -> str:
    for key, value in element.attrib.items():
        ns, local = _split(key)
        if local == name and ns in _W_NAMESPACES:
            return value
    return ""


def _style_names(xml: bytes | None) -> dict[str, str]:
    """Style id -> lower-case style name ("Heading1" or "berschrift1" -> "heading 1").

    Style ids are localised by Word, the names of built-in styles are not.
    """
    if xml is None:
        return {}
    names: dict[str, str] = {}
    for style in _parse(xml, "word/styles.xml").iter():
        if _w(style) != "style":
            continue
        style_id = _w_attr(style, "styleId")
        for child in style:
            if _w(child) == "name":
                names[style_id] = " ".join(_w_attr(child, "val").lower().split())
    return names


def _core_title(xml: bytes | None) -> str:
    if xml is None:
        return ""
    element = _parse(xml, "docProps/core.xml", text_tags=frozenset({_DC_TITLE})).find(_DC_TITLE)
    return " ".join((element.text or "").split()) if element is not None else ""


# --------------------------------------------------------------------------- document walk


def _blocks(root: ET.Element, styles: dict[str, str]) -> Iterator[_Block]:
    """Paragraphs and table rows in document order (iterative: no recursion limit)."""
    stack: list[ET.Element] = [root]
    while stack:
        element = stack.pop()
        name = _w(element)
        if name == "p":
            text, boxes = _paragraph_text(element)
            style, is_list = _paragraph_style(element, styles)
            if text.strip():
                yield _Block(text.strip(), "list" if is_list else "paragraph", style)
            # Text boxes anchored in this paragraph come right after it.
            stack.extend(reversed(boxes))
        elif name == "tbl":
            yield from _table_rows(element)
        elif _is_fallback(element):
            continue  # a duplicate of the mc:Choice content, for older readers
        elif name not in ("sectPr", "pPr", "rPr", "tblPr"):
            stack.extend(reversed(list(element)))  # body, sdt, sdtContent, customXml, ...


def _paragraph_style(paragraph: ET.Element, styles: dict[str, str]) -> tuple[str, bool]:
    """(style name, whether it is a list item) from the paragraph's properties."""
    for child in paragraph:
        if _w(child) != "pPr":
            continue
        style, is_list = "", False
        for prop in child:
            if _w(prop) == "pStyle":
                style_id = _w_attr(prop, "val")
                style = styles.get(style_id, style_id.lower())
            elif _w(prop) == "numPr":
                is_list = True
        return style, is_list or style.startswith("list")
    return "", False


def _paragraph_text(paragraph: ET.Element) -> tuple[str, list[ET.Element]]:
    """The visible text of a paragraph, and the text boxes anchored in it."""
    parts: list[str] = []
    boxes: list[ET.Element] = []
    stack: list[ET.Element] = list(reversed(list(paragraph)))
    while stack:
        element = stack.pop()
        ns, local = _split(element.tag)
        if _is_fallback(element):
            continue
        if ns not in _W_NAMESPACES:
            stack.extend(reversed(list(element)))  # drawing, hyperlink wrappers, ...
            continue
        if local == "t":
            parts.append(element.text or "")
        elif local == "tab":
            parts.append("\t")
        elif local in ("br", "cr"):
            parts.append("\n")
        elif local == "noBreakHyphen":
            parts.append("-")
        elif local == "txbxContent":
            boxes.append(element)
        elif local == "r" and _is_hidden(element):
            continue
        elif local not in ("pPr", "rPr", "del", "moveFrom", "instrText", "delText"):
            stack.extend(reversed(list(element)))
    return "".join(parts), boxes


def _is_hidden(run: ET.Element) -> bool:
    """A run formatted as hidden text (``<w:vanish/>``), unless explicitly turned off."""
    for child in run:
        if _w(child) == "rPr":
            for prop in child:
                if _w(prop) == "vanish":
                    return _w_attr(prop, "val").lower() not in ("0", "false", "off")
    return False


def _table_rows(table: ET.Element) -> Iterator[_Block]:
    for row in table:
        if _w(row) != "tr":
            continue
        cells = []
        for cell in row:
            if _w(cell) != "tc":
                continue
            # A cell may hold several paragraphs and even a nested table:
            # flatten them to one line so the row stays one line.
            texts = [_paragraph_text(p)[0].strip() for p in _paragraphs_in(cell)]
            cells.append(" ".join(" ".join(t.split()) for t in texts if t))
        if any(cells):
            yield _Block("\t".join(cells), "row")


def _paragraphs_in(element: ET.Element) -> Iterator[ET.Element]:
    """Every paragraph under ``element`` in document order, nested tables and
    text boxes included, compatibility fallbacks excluded."""
    stack = [element]
    while stack:
        node = stack.pop()
        if _w(node) == "p":
            yield node
        if not _is_fallback(node):
            stack.extend(reversed(list(node)))


def _is_fallback(element: ET.Element) -> bool:
    return _split(element.tag) == (_MC_NAMESPACE, "Fallback")


def _join(blocks: list[_Block]) -> str:
    """Blank lines between paragraphs; list items and table rows stay together."""
    out: list[str] = []
    previous = ""
    for block in blocks:
        if out:
            together = block.kind == previous and block.kind in ("list", "row")
            out.append("\n" if together else "\n\n")
        out.append(block.text)
        previous = block.kind
    return "".join(out)


def _title_from(blocks: list[_Block]) -> str:
    """A "Title"-styled paragraph, else the first heading, else ``""``."""
    for wanted in ("title", "heading"):
        for block in blocks:
            if block.style == wanted or (wanted == "heading" and _HEADING_RE.match(block.style)):
                return " ".join(block.text.split())
    return ""
