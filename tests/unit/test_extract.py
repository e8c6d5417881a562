"""Sniffing, decoding and text extraction: bytes in, plain text out."""

from __future__ import annotations

import codecs
import pickle
import random

import pytest

from docpipe.activities.cpu.extract import (
    NeedsOcr,
    decode_text,
    extract_text_from_document,
    sniff_content_type,
)
from docpipe.errors import DocumentError
from docpipe.models import Stage

FRENCH = "L’été à Paris : un cœur léger, 5 € le café, « déjà vu » et naïveté."
HTML_PAGE = b"""<!DOCTYPE html>
<html><head><title>Opening  hours</title>
<style>body { color: red }</style>
<script>var tracking = "do not index me";</script>
</head>
<body>
<nav><a href="/">Home</a></nav>
<h1>Library</h1>
<p>The library is open
   on weekdays.</p><p>It is closed on Sundays.</p>
<ul><li>Monday</li><li>Tuesday</li></ul>
<script>console.log("also not text")</script>
<noscript>Please enable JavaScript</noscript>
<template><p>never rendered</p></template>
<svg><text>icon label</text></svg>
</body></html>
"""


def random_bytes(n: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


# --------------------------------------------------------------------------- sniffing


class TestSniffing:
    def test_pdf_is_recognised_by_its_magic_bytes_whatever_the_name_says(self):
        assert (
            sniff_content_type(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "text/plain", "a.txt")
            == "application/pdf"
        )

    def test_png_jpeg_gif_and_tiff_are_recognised_by_magic_bytes(self):
        assert sniff_content_type(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR") == "image/png"
        assert sniff_content_type(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "image/jpeg"
        assert sniff_content_type(b"GIF89a\x01\x00\x01\x00") == "image/gif"
        assert sniff_content_type(b"II*\x00\x08\x00\x00\x00") == "image/tiff"
        assert sniff_content_type(b"MM\x00*\x00\x00\x00\x08") == "image/tiff"

    def test_zip_containers_and_gzip_are_recognised(self):
        assert (
            sniff_content_type(b"PK\x03\x04\x14\x00\x06\x00", filename="report.docx")
            == "application/zip"
        )
        assert sniff_content_type(b"\x1f\x8b\x08\x00\x00\x00\x00\x00") == "application/gzip"

    def test_html_served_as_text_plain_is_sniffed_as_html(self):
        assert (
            sniff_content_type(HTML_PAGE, declared="text/plain", filename="page.txt") == "text/html"
        )

    def test_html_fragment_without_doctype_is_html(self):
        fragment = b"<div><p>First paragraph</p><p>Second <b>bold</b> one</p></div>"
        assert sniff_content_type(fragment) == "text/html"

    def test_plain_text_that_mentions_a_tag_stays_plain_text(self):
        text = b"To start a paragraph in HTML you write <p> and end it with a closing tag."
        assert sniff_content_type(text, "text/plain", "notes.txt") == "text/plain"

    def test_binary_posing_as_text_is_octet_stream(self):
        data = b"Quarterly report\n" + random_bytes(2048)
        assert sniff_content_type(data, "text/plain", "report.txt") == "application/octet-stream"

    def test_control_characters_without_nul_are_binary_too(self):
        data = bytes(range(1, 32)) * 20 + b"some text"
        assert sniff_content_type(data, filename="x.txt") == "application/octet-stream"

    def test_utf16_text_with_bom_is_text_not_binary(self):
        data = "Hello, world.\nA second line.".encode("utf-16")
        assert sniff_content_type(data, filename="x.txt") == "text/plain"

    def test_utf16_html_with_bom_is_html(self):
        assert sniff_content_type(HTML_PAGE.decode().encode("utf-16")) == "text/html"

    def test_markdown_needs_a_hint_from_extension_or_declared_type(self):
        md = b"# Title\n\nSome text with a [link](https://example.org).\n\n- one\n- two\n"
        assert sniff_content_type(md, filename="README.md") == "text/markdown"
        assert sniff_content_type(md, declared="text/markdown") == "text/markdown"
        assert sniff_content_type(md, declared="text/plain", filename="notes.txt") == "text/plain"

    def test_strong_markdown_signals_count_when_nothing_says_otherwise(self):
        md = b"# Title\n\nSome text with a [link](https://example.org).\n\n- one\n- two\n"
        assert sniff_content_type(md) == "text/markdown"
        assert sniff_content_type(b"# Just one heading\n\nand prose.") == "text/plain"

    def test_markdown_served_as_text_plain_with_md_extension_is_markdown(self):
        md = b"# Notes\n\nplain words"
        assert (
            sniff_content_type(md, "text/plain; charset=utf-8", "https://x.org/raw/README.md?x=1")
            == "text/markdown"
        )

    def test_declared_html_without_markup_is_plain_text(self):
        assert (
            sniff_content_type(b"Just words.\n\nMore words.", declared="text/html") == "text/plain"
        )

    def test_empty_content_is_plain_text_so_validation_can_reject_it(self):
        assert sniff_content_type(b"") == "text/plain"


# --------------------------------------------------------------------------- decoding


class TestDecoding:
    def test_utf8_is_decoded_strictly(self):
        assert decode_text("Grüße aus Köln – 東京".encode()) == "Grüße aus Köln – 東京"

    def test_utf8_bom_is_removed(self):
        assert decode_text(codecs.BOM_UTF8 + b"hello") == "hello"

    @pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
    def test_utf16_and_utf32_with_bom_are_decoded(self, encoding):
        text = "Windmolens in Nederland: één, twee."
        data = text.encode(encoding)
        if encoding == "utf-16-be":
            data = codecs.BOM_UTF16_BE + data
        assert decode_text(data) == text

    def test_utf16_without_bom_is_recognised_by_its_zero_bytes(self):
        text = "A text saved as UTF-16 without a byte-order mark."
        assert decode_text(text.encode("utf-16-le")) == text

    def test_cp1252_french_is_decoded_with_its_typographic_characters(self):
        assert decode_text(FRENCH.encode("cp1252")) == FRENCH

    def test_latin1_german_is_decoded(self):
        text = "Die Straße über den Fluß führt zur Mühle."
        assert decode_text(text.encode("latin-1")) == text

    def test_a_declared_charset_is_used_when_the_bytes_are_not_utf8(self):
        text = "Съешь же ещё этих мягких французских булок"
        assert decode_text(text.encode("koi8-r"), charset="koi8-r") == text

    def test_a_wrong_latin1_declaration_does_not_garble_utf8(self):
        assert decode_text("naïve café".encode(), charset="iso-8859-1") == "naïve café"

    def test_binary_data_cannot_be_decoded(self):
        with pytest.raises(DocumentError) as err:
            decode_text(b"\x00\x01\x02\x03" * 200)
        assert err.value.stage == Stage.EXTRACT
        assert err.value.reason.startswith("could not decode text")

    def test_empty_bytes_decode_to_empty_text(self):
        assert decode_text(b"") == ""

    def test_a_few_nul_bytes_in_prose_do_not_make_it_binary(self):
        text = b"A log line that was padded by a crashing writer.\n" * 20 + b"\x00" * 4
        assert sniff_content_type(text, filename="app.log") == "text/plain"
        assert decode_text(text).startswith("A log line")

    def test_text_that_is_mostly_nul_bytes_is_binary(self):
        assert sniff_content_type(b"header" + bytes(1000), filename="a.txt") == (
            "application/octet-stream"
        )

    def test_utf8_with_a_windows_1252_stretch_reads_both_parts(self):
        data = "Crème brûlée, 2 €. ".encode() * 3 + "Später: Grüße.".encode("cp1252")
        assert decode_text(data) == "Crème brûlée, 2 €. " * 3 + "Später: Grüße."

    def test_windows_1252_alone_is_still_guessed_as_such(self):
        text = "Der Bäcker über die Straße. " * 5
        assert decode_text(text.encode("cp1252")) == text


# --------------------------------------------------------------------------- extraction


class TestPlainText:
    def test_plain_text_is_returned_as_decoded(self):
        result = extract_text_from_document(b"Hello\n\nWorld", "text/plain")
        assert result.text == "Hello\n\nWorld"

    def test_a_short_first_line_above_a_blank_line_is_the_title(self):
        assert (
            extract_text_from_document(
                b"Keepers of the Light\n\nFor as long as...", "text/plain"
            ).title
            == "Keepers of the Light"
        )
        assert (
            extract_text_from_document(b"It was a dark night.\nThe end.", "text/plain").title == ""
        )

    def test_charset_parameter_of_the_content_type_is_honoured(self):
        data = "Съешь же ещё".encode("cp1251")
        assert (
            extract_text_from_document(data, "text/plain; charset=windows-1251").text
            == "Съешь же ещё"
        )


class TestHtml:
    def test_html_scripts_and_styles_are_not_part_of_the_text(self):
        text = extract_text_from_document(HTML_PAGE, "text/html").text
        for hidden in (
            "tracking",
            "color: red",
            "console.log",
            "enable JavaScript",
            "never rendered",
            "icon label",
        ):
            assert hidden not in text
        assert "The library is open on weekdays." in text

    def test_html_title_comes_from_the_title_element(self):
        assert extract_text_from_document(HTML_PAGE, "text/html").title == "Opening hours"

    def test_html_title_falls_back_to_the_first_h1(self):
        html = b"<html><body><svg><title>icon</title></svg><h2>Sub</h2><h1>Main heading</h1></body></html>"
        assert extract_text_from_document(html, "text/html").title == "Main heading"

    def test_block_elements_become_line_breaks_and_paragraphs_blank_lines(self):
        text = extract_text_from_document(HTML_PAGE, "text/html").text
        assert "Library\n\nThe library is open on weekdays.\n\nIt is closed on Sundays." in text
        assert "Monday\nTuesday" in text

    def test_inline_elements_do_not_break_words_or_lines(self):
        text = extract_text_from_document(
            b"<p>A <b>bold</b> and <a href='#'>linked</a> w<i>o</i>rd.</p>", "text/html"
        ).text
        assert text == "A bold and linked word."

    def test_br_is_a_line_break_and_table_cells_are_separated(self):
        html = b"<p>one<br>two</p><table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann</td><td>31</td></tr></table>"
        text = extract_text_from_document(html, "text/html").text
        assert "one\ntwo" in text
        assert "Name\tAge\nAnn\t31" in text

    def test_hidden_elements_are_dropped(self):
        html = b"<p>shown</p><p hidden>secret</p><span aria-hidden='true'>icon</span>"
        assert extract_text_from_document(html, "text/html").text == "shown"

    def test_deeply_nested_html_does_not_hit_the_recursion_limit(self):
        html = b"<div>" * 5000 + b"deep text" + b"</div>" * 5000
        assert extract_text_from_document(html, "text/html").text == "deep text"

    def test_meta_charset_of_a_latin1_page_is_honoured(self):
        html = '<html><head><meta charset="iso-8859-1"></head><body><p>Größe über alles</p></body></html>'
        assert (
            extract_text_from_document(html.encode("latin-1"), "text/html").text
            == "Größe über alles"
        )

    def test_entities_are_decoded(self):
        assert (
            extract_text_from_document(
                b"<p>Fish &amp; chips &eacute;t&eacute; &#8364;5</p>", "text/html"
            ).text
            == "Fish & chips été €5"
        )


class TestMarkdown:
    MD = (
        "# Tortilla de patatas\n\nUn plato *muy* popular, ver [receta](https://example.org).\n\n"
        "## Ingredientes\n\n- 4 huevos\n- 500 g de patatas\n\n```\ncode block\n```\n"
    )

    def test_markdown_is_rendered_to_text_without_markup(self):
        text = extract_text_from_document(self.MD.encode(), "text/markdown").text
        assert "*" not in text and "](" not in text and "#" not in text
        assert "Un plato muy popular, ver receta." in text

    def test_markdown_headings_and_paragraphs_are_separated_by_blank_lines(self):
        text = extract_text_from_document(self.MD.encode(), "text/markdown").text
        assert text.startswith("Tortilla de patatas\n\nUn plato")
        assert "\n\nIngredientes\n\n4 huevos\n500 g de patatas\n\ncode block" in text

    def test_markdown_title_is_the_first_heading(self):
        assert (
            extract_text_from_document(self.MD.encode(), "text/markdown").title
            == "Tortilla de patatas"
        )
        assert (
            extract_text_from_document(b"Intro\n\n### Third level first", "text/markdown").title
            == "Third level first"
        )


class TestUnsupported:
    @pytest.mark.parametrize(
        ("content_type", "expected"),
        [
            ("image/gif", "convert it to PNG"),
            ("application/zip", "other than Word (.docx) are not supported"),
            ("application/gzip", "upload the uncompressed document"),
            ("application/octet-stream", "binary"),
            ("video/mp4", "only plain text, Markdown, HTML, PDF, DOCX and PNG/JPEG/TIFF"),
        ],
    )
    def test_types_without_text_fail_at_extract_with_a_clear_reason(self, content_type, expected):
        with pytest.raises(DocumentError) as err:
            extract_text_from_document(b"\x00\x01", content_type)
        assert err.value.stage == Stage.EXTRACT
        assert err.value.reason.startswith(f"unsupported content type {content_type}")
        assert expected in err.value.reason


class TestImagesNeedOcr:
    @pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "image/tiff"])
    def test_an_image_is_routed_to_ocr_rather_than_failed(self, content_type):
        with pytest.raises(NeedsOcr) as routed:
            extract_text_from_document(b"\x89PNG\r\n\x1a\n", content_type)
        assert routed.value.pages == [0]
        assert routed.value.content_type == content_type

    def test_needing_ocr_is_not_a_document_error(self):
        assert not issubclass(NeedsOcr, DocumentError)

    def test_the_routing_signal_survives_the_trip_back_from_the_process_pool(self):
        signal = pickle.loads(pickle.dumps(NeedsOcr([0, 2], "application/pdf")))
        assert (signal.pages, signal.content_type) == ([0, 2], "application/pdf")


def test_markdown_nested_past_the_parsers_limit_keeps_its_text() -> None:
    deep = ">" * 50_000 + " the innermost quote\n\nAfter the quote."
    text = extract_text_from_document(deep.encode(), "text/markdown").text
    assert "the innermost quote" in text
    assert "After the quote." in text


def test_markdown_that_renders_to_no_text_is_taken_as_plain_text() -> None:
    nested = "".join("  " * depth + "- \n" for depth in range(40)) + "  " * 40 + "- leaf\n"
    assert "leaf" in extract_text_from_document(nested.encode(), "text/markdown").text
