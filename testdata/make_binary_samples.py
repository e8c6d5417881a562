"""Write the binary sample documents in ``testdata/docs/`` (reproducibly).

Run ``python testdata/make_binary_samples.py`` to (re)create them; the same
bytes come out every time, so a diff in git means the generator changed.

The generators are also imported by the tests and benchmarks (by file path:
``testdata`` is not a package), so the committed samples and the documents
the tests build on the fly come from one place:

* :func:`text_pdf` writes a PDF with a real text layer by hand (a few hundred
  bytes of PDF syntax, Helvetica with WinAnsi encoding), so no PDF-writing
  library is needed;
* :func:`text_image` renders lines of text with the TrueType font Pillow ships
  (``ImageFont.load_default(size=...)``, Pillow >= 10.1), so the result does
  not depend on the fonts installed on the machine;
* :func:`scanned_pdf` wraps an image in a PDF with no text layer, which is
  what a scanner produces.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

INVOICE_LINES = ("Invoice 12345", "Total 99.50")
"""The text of the image samples: short, unambiguous, easy to assert on."""

TEXT_PDF_TITLE = "Lighthouse keeping notes"
TEXT_PDF_PAGES = (
    (
        "Lighthouse keeping notes",
        "",
        "The lamp was lit at dusk and trimmed every four hours.",
        "Keepers logged the weather, passing ships and the oil used.",
    ),
    (
        "Page two",
        "",
        "Automation ended the job: the last keeper left in 1998.",
    ),
)

_FIXED_DATE = time.gmtime(1717200000)  # 2024-06-01, UTC
_PAGE_WIDTH_PT, _PAGE_HEIGHT_PT = 612, 792  # US Letter


# --------------------------------------------------------------------------- PDF with text


def text_pdf(
    pages: list[list[str]] | tuple[tuple[str, ...], ...],
    title: str = "",
    *,
    with_image: bool = False,
) -> bytes:
    """A PDF whose pages carry ``pages``' lines as real (selectable) text.

    Each page is one content stream drawing its lines top-down in 12 pt
    Helvetica; ``title`` goes into the document information dictionary.
    Characters outside Windows-1252 cannot be drawn with a standard font and
    are replaced by ``?``. ``with_image`` also draws a small grey inline image
    on every page (what a scan with a page number as text looks like).
    """
    objects: list[bytes] = []  # objects[i] is object number i + 1

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in once the page tree's number is known
    pages_obj = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    info = add(b"<< /Title " + _pdf_text_string(title) + b" /Producer (docpipe testdata) >>")

    page_numbers = []
    for lines in pages:
        content = _content_stream(list(lines), with_image=with_image)
        stream = add(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        page_numbers.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] "
                b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                % (pages_obj, _PAGE_WIDTH_PT, _PAGE_HEIGHT_PT, font, stream)
            )
        )
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_obj
    kids = b" ".join(b"%d 0 R" % n for n in page_numbers)
    objects[pages_obj - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_numbers))
    return _assemble(objects, root=catalog, info=info)


def _content_stream(lines: list[str], *, with_image: bool = False) -> bytes:
    ops = []
    if with_image:  # a 4x4 8-bit grey checkerboard, scaled to 2 x 2 inches
        pixels = (b"\x00\xff\x00\xff\xff\x00\xff\x00") * 2
        ops.append(b"q 144 0 0 144 72 400 cm BI /W 4 /H 4 /CS /G /BPC 8 ID " + pixels + b" EI Q")
    ops += [b"BT", b"/F1 12 Tf", b"16 TL", b"72 %d Td" % (_PAGE_HEIGHT_PT - 72)]
    for line in lines:
        ops.append(_pdf_literal(line.encode("cp1252", errors="replace")) + b" Tj T*")
    ops.append(b"ET")
    return b"\n".join(ops)


def _pdf_literal(raw: bytes) -> bytes:
    escaped = raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    return b"(" + escaped + b")"


def _pdf_text_string(text: str) -> bytes:
    """A PDF text string that holds any Unicode text: UTF-16BE with a BOM, in hex."""
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode("ascii") + b">"


def _assemble(objects: list[bytes], *, root: int, info: int) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\n" % (len(objects) + 1, root, info)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


# --------------------------------------------------------------------------- images of text


def text_image(
    lines: tuple[str, ...] | list[str] = INVOICE_LINES,
    *,
    font_size: int = 34,
    margin: int | None = None,
    mode: str = "L",
) -> Image.Image:
    """Dark text on a white background, one line per entry, in Pillow's own font.

    34 px letters are what a 200 dpi scan of 12 pt print gives. easyocr reads
    the invoice lines right at any size from 28 px up, but its confidence
    swings between about 0.65 and 0.99 with size and JPEG quality (the
    capital I of "Invoice" is a bare stroke in this sans-serif font); at
    34 px it is above 0.9 as PNG, JPEG (quality 85-90) and a 200 dpi scan.
    """
    font = ImageFont.load_default(size=font_size)
    margin = font_size if margin is None else margin
    line_height = int(font_size * 1.9)
    width = max(int(font.getlength(line)) for line in lines) + 2 * margin
    height = line_height * len(lines) + 2 * margin - (line_height - font_size)
    image = Image.new(mode, (width, height), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * line_height), line, font=font, fill="black")
    return image


def image_bytes(image: Image.Image, format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def scanned_pdf(image: Image.Image, *, dpi: int = 200) -> bytes:
    """A one-page PDF holding ``image`` and no text layer, like a scanner's output.

    The dates are fixed so the same image always gives the same bytes.
    """
    return image_bytes(
        image,
        "PDF",
        resolution=float(dpi),
        title="Scanned invoice",
        creationDate=_FIXED_DATE,
        modDate=_FIXED_DATE,
    )


def icon_image(size: int = 96) -> Image.Image:
    """A picture with no text at all, like the icons packages ship: a few shapes."""
    image = Image.new("RGB", (size, size), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, size - 8, size - 8), fill=(32, 96, 200))
    draw.rectangle((size // 3, size // 3, 2 * size // 3, 2 * size // 3), fill=(250, 200, 40))
    draw.polygon([(size // 2, 14), (size - 18, size - 22), (18, size - 22)], outline=(20, 20, 20))
    return image


# --------------------------------------------------------------------------- the samples


def samples() -> dict[str, bytes]:
    """File name in ``testdata/docs/`` -> content."""
    invoice = text_image()
    return {
        "text_layer_lighthouses.pdf": text_pdf(TEXT_PDF_PAGES, title=TEXT_PDF_TITLE),
        "scanned_invoice.pdf": scanned_pdf(invoice),
        "invoice_scan.png": image_bytes(invoice, "PNG", optimize=True),
        "invoice_photo.jpg": image_bytes(invoice.convert("RGB"), "JPEG", quality=90),
        # No text to read: stored as documents with image analysis and zero chunks.
        "icon_no_text.png": image_bytes(icon_image(), "PNG", optimize=True),
        "blank_scan.pdf": scanned_pdf(Image.new("L", (850, 1100), "white"), dpi=100),
    }


def main(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name, data in samples().items():
        (target / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "docs")
