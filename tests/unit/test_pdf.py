"""PDF text layer, scanned-page detection and page rendering (PDFium, no OCR model)."""

from __future__ import annotations

import io

import make_binary_samples as samples  # testdata/, on pytest's pythonpath
import pypdf
import pypdfium2 as pdfium
import pytest
from document_errors import fails_at
from PIL import Image

from docpipe.activities.cpu.extract import NeedsOcr, extract_text_from_document, sniff_content_type
from docpipe.activities.cpu.pdf import extract_pdf, render_pages
from docpipe.errors import DocumentError
from docpipe.models import Stage

LIGHTHOUSE = samples.text_pdf(samples.TEXT_PDF_PAGES, title=samples.TEXT_PDF_TITLE)
SCANNED = samples.scanned_pdf(samples.text_image())


def merged(*documents: bytes) -> bytes:
    """One PDF with the pages of ``documents`` in order."""
    out = pdfium.PdfDocument.new()
    for data in documents:
        out.import_pages(pdfium.PdfDocument(data))
    buffer = io.BytesIO()
    out.save(buffer)
    return buffer.getvalue()


def encrypted(data: bytes, *, user_password: str, owner_password: str = "owner") -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


class TestTextLayer:
    def test_the_text_of_every_page_is_extracted_pages_separated_by_a_blank_line(self):
        result = extract_pdf(LIGHTHOUSE)
        assert result.page_count == 2
        assert result.text == (
            "Lighthouse keeping notes\n"
            "The lamp was lit at dusk and trimmed every four hours.\n"
            "Keepers logged the weather, passing ships and the oil used.\n"
            "\n"
            "Page two\n"
            "Automation ended the job: the last keeper left in 1998."
        )
        assert result.pages_needing_ocr == []
        assert result.text_pages == [0, 1]
        assert not result.encrypted

    def test_the_title_comes_from_the_metadata(self):
        pdf = samples.text_pdf([["Body text that is not the title at all."]], title="Ĉefa titolo")
        assert extract_pdf(pdf).title == "Ĉefa titolo"

    def test_without_metadata_the_title_is_the_first_line_with_words(self):
        pdf = samples.text_pdf([["12", "Annual report of the harbour master", "More text."]])
        assert extract_pdf(pdf).title == "Annual report of the harbour master"

    def test_non_ascii_text_survives(self):
        pdf = samples.text_pdf([["Café crème à 3 €, déjà vu — naïve façade."]])
        assert extract_pdf(pdf).text == "Café crème à 3 €, déjà vu — naïve façade."

    def test_a_blank_page_needs_no_ocr_and_gives_no_text(self):
        result = extract_pdf(samples.text_pdf([[]]))
        assert (result.text, result.pages_needing_ocr, result.text_pages) == ("", [], [])


class TestScannedPages:
    def test_a_page_that_is_only_an_image_needs_ocr(self):
        result = extract_pdf(SCANNED)
        assert result.page_count == 1
        assert result.pages_needing_ocr == [0]
        assert result.text == ""
        assert result.is_scanned

    def test_a_scan_with_a_page_number_as_text_still_needs_ocr(self):
        result = extract_pdf(samples.text_pdf([["7"]], with_image=True))
        assert result.pages_needing_ocr == [0]
        assert result.is_scanned

    def test_an_image_on_a_page_full_of_text_does_not_make_it_a_scan(self):
        pdf = samples.text_pdf([["A figure with a caption long enough to count."]], with_image=True)
        assert extract_pdf(pdf).pages_needing_ocr == []

    def test_in_a_partly_scanned_pdf_only_the_scanned_pages_need_ocr(self):
        result = extract_pdf(merged(LIGHTHOUSE, SCANNED))
        assert result.page_count == 3
        assert result.text_pages == [0, 1]
        assert result.pages_needing_ocr == [2]
        assert not result.is_scanned


class TestBadPdfs:
    def test_a_pdf_that_needs_a_password_fails_with_a_clear_reason(self):
        with fails_at(Stage.EXTRACT, "PDF is encrypted"):
            extract_pdf(encrypted(LIGHTHOUSE, user_password="secret"))

    def test_a_pdf_encrypted_only_against_editing_is_read(self):
        result = extract_pdf(encrypted(LIGHTHOUSE, user_password=""))
        assert result.encrypted
        assert result.text.startswith("Lighthouse keeping notes")

    @pytest.mark.parametrize(
        "data",
        [LIGHTHOUSE[: len(LIGHTHOUSE) // 2], b"%PDF-1.7\nnothing else", b"%PDF-"],
        ids=["truncated", "garbage", "header-only"],
    )
    def test_a_truncated_or_garbled_pdf_is_corrupt(self, data):
        with fails_at(Stage.EXTRACT, "corrupt PDF: "):
            extract_pdf(data)

    def test_more_pages_than_the_cap_fail_before_any_is_read(self):
        pdf = samples.text_pdf([["one"], ["two"], ["three"]])
        with pytest.raises(DocumentError) as err:
            extract_pdf(pdf, max_pages=2)
        assert err.value.reason == "PDF has 3 pages, more than the limit of 2"


class TestRendering:
    def test_pages_render_as_greyscale_png_at_the_requested_resolution(self):
        [png] = render_pages(LIGHTHOUSE, [1], dpi=100)
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.mode == "L"
        assert image.size == (850, 1100)  # US Letter: 8.5 x 11 inches

    def test_pages_come_back_in_the_order_asked(self):
        first, second = render_pages(merged(SCANNED, LIGHTHOUSE), [1, 0], dpi=72)
        assert Image.open(io.BytesIO(first)).size == (612, 792)
        assert Image.open(io.BytesIO(second)).size[0] < 200

    def test_a_page_too_big_for_the_pixel_cap_is_rendered_smaller(self):
        [png] = render_pages(LIGHTHOUSE, [0], dpi=300, max_pixels=100_000)
        width, height = Image.open(io.BytesIO(png)).size
        assert width * height <= 100_000
        assert abs(width / height - 612 / 792) < 0.02

    def test_a_page_outside_the_document_is_a_caller_error(self):
        with pytest.raises(ValueError, match=r"pages \[2\] are not in a PDF of 2 pages"):
            render_pages(LIGHTHOUSE, [0, 2])


class TestRouting:
    def test_a_pdf_is_sniffed_by_its_bytes_whatever_it_is_called(self):
        assert sniff_content_type(LIGHTHOUSE, "text/plain", "notes.txt") == "application/pdf"

    def test_extract_text_returns_the_text_layer_and_title(self):
        result = extract_text_from_document(LIGHTHOUSE, "application/pdf")
        assert result.title == "Lighthouse keeping notes"
        assert "last keeper left in 1998" in result.text
        assert result.pages_needing_ocr == []

    def test_a_fully_scanned_pdf_is_routed_to_ocr(self):
        with pytest.raises(NeedsOcr) as routed:
            extract_text_from_document(SCANNED, "application/pdf")
        assert routed.value.pages == [0]
        assert routed.value.content_type == "application/pdf"

    def test_a_partly_scanned_pdf_keeps_its_text_and_lists_the_pages_left_to_ocr(self):
        result = extract_text_from_document(merged(SCANNED, LIGHTHOUSE), "application/pdf")
        assert result.text.startswith("Lighthouse keeping notes")
        assert result.pages_needing_ocr == [0]

    def test_bad_pdfs_fail_at_extract(self):
        with pytest.raises(DocumentError) as err:
            extract_text_from_document(b"%PDF-1.4\n%%EOF", "application/pdf")
        assert err.value.stage == Stage.EXTRACT
