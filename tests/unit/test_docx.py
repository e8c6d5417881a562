"""Word documents (DOCX): text as a reader sees it, title, sniffing, and zip-bomb guards.

The documents are built here part by part, so each test shows the exact XML
it feeds in.
"""

from __future__ import annotations

import io
import zipfile

import pytest

from docpipe.activities.cpu.docx import extract_docx, is_docx
from docpipe.activities.cpu.extract import extract_text_from_document, sniff_content_type
from docpipe.errors import DocumentError
from docpipe.models import Stage

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
STRICT_W = "http://purl.oclc.org/ooxml/wordprocessingml/main"

# Style ids are localised by Word ("berschrift1" is German), names are not.
STYLES = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:styles xmlns:w="{W}">
  <w:style w:type="paragraph" w:styleId="Titel"><w:name w:val="Title"/></w:style>
  <w:style w:type="paragraph" w:styleId="berschrift1"><w:name w:val="heading 1"/></w:style>
  <w:style w:type="paragraph" w:styleId="Listenabsatz"><w:name w:val="List Paragraph"/></w:style>
</w:styles>"""


def core(title: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cp:coreProperties
    xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"
    xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}</dc:title></cp:coreProperties>"""


def document(body: str, namespace: str = W) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="{namespace}"
    xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006">
  <w:body>{body}<w:sectPr/></w:body>
</w:document>"""


def p(text: str, style: str = "") -> str:
    props = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
    return f"<w:p>{props}<w:r><w:t xml:space='preserve'>{text}</w:t></w:r></w:p>"


def with_text_box(anchor: str, boxed: str) -> str:
    """A paragraph ``anchor`` whose run holds a text box with the paragraph ``boxed``,
    as Word writes it: the box twice, as the choice and as its fallback."""
    box = "<w:txbxContent>" + p(boxed) + "</w:txbxContent>"
    return (
        f"<w:p><w:r><w:t>{anchor}</w:t></w:r><w:r><mc:AlternateContent>"
        f"<mc:Choice>{box}</mc:Choice><mc:Fallback>{box}</mc:Fallback>"
        "</mc:AlternateContent></w:r></w:p>"
    )


def docx(body: str, *, title: str | None = None, styles: bool = True, **parts: str) -> bytes:
    """A DOCX with ``body`` as the content of <w:body> and optional other parts."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", parts.pop("document", None) or document(body))
        if styles:
            archive.writestr("word/styles.xml", STYLES)
        if title is not None:
            archive.writestr("docProps/core.xml", core(title))
        for name, content in parts.items():
            archive.writestr(name.replace("__", "/"), content)
    return buffer.getvalue()


def text_of(body: str) -> str:
    return extract_docx(docx(body)).text


class TestText:
    def test_paragraphs_are_separated_by_blank_lines_and_runs_joined(self):
        body = (
            "<w:p><w:r><w:t>The tide </w:t></w:r><w:r><w:t>turns</w:t></w:r>"
            "<w:r><w:t xml:space='preserve'> twice a day.</w:t></w:r></w:p>"
            + p("Second paragraph.")
        )
        assert text_of(body) == "The tide turns twice a day.\n\nSecond paragraph."

    def test_tabs_and_line_breaks_inside_a_paragraph_are_kept(self):
        body = (
            "<w:p><w:r><w:t>Name</w:t><w:tab/><w:t>Ann</w:t><w:br/><w:t>next line</w:t></w:r></w:p>"
        )
        assert text_of(body) == "Name\tAnn\nnext line"

    def test_list_items_stay_on_consecutive_lines(self):
        item = "<w:p><w:pPr><w:numPr><w:ilvl w:val='0'/></w:numPr></w:pPr><w:r><w:t>{}</w:t></w:r></w:p>"
        body = p("Ingredients:") + item.format("4 eggs") + item.format("500 g potatoes") + p("Mix.")
        assert text_of(body) == "Ingredients:\n\n4 eggs\n500 g potatoes\n\nMix."

    def test_table_rows_are_lines_with_tab_separated_cells(self):
        row = "<w:tr><w:tc>{}</w:tc><w:tc>{}</w:tc></w:tr>"
        body = (
            "<w:tbl>" + row.format(p("Name"), p("Age")) + row.format(p("Ann"), p("31")) + "</w:tbl>"
        )
        assert text_of(body) == "Name\tAge\nAnn\t31"

    def test_hidden_text_deleted_changes_and_field_codes_are_not_text(self):
        body = (
            "<w:p><w:r><w:t>Shown</w:t></w:r>"
            "<w:r><w:rPr><w:vanish/></w:rPr><w:t>hidden</w:t></w:r>"
            "<w:del><w:r><w:delText>deleted</w:delText></w:r></w:del>"
            "<w:ins><w:r><w:t xml:space='preserve'> and inserted</w:t></w:r></w:ins>"
            "<w:r><w:instrText>PAGE \\* MERGEFORMAT</w:instrText></w:r></w:p>"
        )
        assert text_of(body) == "Shown and inserted"

    def test_hyperlinks_and_content_controls_keep_their_text(self):
        body = (
            "<w:sdt><w:sdtContent>"
            "<w:p><w:hyperlink><w:r><w:t>Harbour office</w:t></w:r></w:hyperlink></w:p>"
            "</w:sdtContent></w:sdt>"
        )
        assert text_of(body) == "Harbour office"

    def test_a_text_box_comes_after_its_paragraph_and_only_once(self):
        body = with_text_box("Anchor text", "Boxed note") + p("After.")
        assert text_of(body) == "Anchor text\n\nBoxed note\n\nAfter."

    def test_a_text_box_in_a_table_cell_is_read_once(self):
        paragraph = with_text_box("cell", "boxed")
        body = f"<w:tbl><w:tr><w:tc>{paragraph}</w:tc><w:tc>{p('next')}</w:tc></w:tr></w:tbl>"
        assert text_of(body) == "cell boxed\tnext"

    def test_strict_ooxml_namespaces_are_read_too(self):
        data = docx("", document=document(p("Strict text."), namespace=STRICT_W), styles=False)
        assert extract_docx(data).text == "Strict text."

    def test_empty_paragraphs_are_skipped(self):
        assert text_of("<w:p/>" + p("Only this.") + "<w:p><w:r><w:t> </w:t></w:r></w:p>") == (
            "Only this."
        )


class TestTitle:
    def test_the_title_comes_from_the_document_properties(self):
        data = docx(p("Heading", "berschrift1") + p("Body."), title="Tide tables 2024")
        assert extract_docx(data).title == "Tide tables 2024"

    def test_without_properties_a_title_styled_paragraph_is_the_title(self):
        data = docx(p("Intro", "berschrift1") + p("The Real Title", "Titel"))
        assert extract_docx(data).title == "The Real Title"

    def test_otherwise_the_first_heading_by_style_name_not_id(self):
        data = docx(p("Not a heading") + p("Die Gezeiten", "berschrift1"))
        assert extract_docx(data).title == "Die Gezeiten"

    def test_no_title_at_all_is_empty(self):
        assert extract_docx(docx(p("Plain words."))).title == ""


class TestRouting:
    def test_a_zip_holding_a_word_document_is_sniffed_as_docx(self):
        data = docx(p("Hello."))
        assert is_docx(data)
        assert sniff_content_type(data, "application/octet-stream", "upload.bin") == DOCX_TYPE

    def test_other_zips_stay_zips(self):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("xl/workbook.xml", "<workbook/>")
        assert sniff_content_type(buffer.getvalue(), filename="sheet.docx") == "application/zip"

    def test_extract_text_reads_a_docx(self):
        result = extract_text_from_document(docx(p("Body text."), title="T"), DOCX_TYPE)
        assert (result.text, result.title) == ("Body text.", "T")


class TestBadDocuments:
    def test_a_part_larger_than_the_cap_uncompressed_is_refused(self):
        # 1 MB of XML that deflates to a few KB: a small zip bomb.
        data = docx(p("x" * 1_000_000))
        assert len(data) < 20_000
        with pytest.raises(DocumentError) as err:
            extract_docx(data, max_part_bytes=500_000)
        assert err.value.stage == Stage.EXTRACT
        assert "larger than" in err.value.reason

    def test_xml_with_a_dtd_is_refused_so_entities_cannot_expand(self):
        bomb = (
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            '<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            f'<w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>'
        )
        with pytest.raises(DocumentError, match="declares a DTD"):
            extract_docx(docx("", document=bomb))

    def test_a_truncated_zip_is_a_corrupt_docx(self):
        data = docx(p("Some text " * 200))
        with pytest.raises(DocumentError) as err:
            extract_docx(data[: len(data) // 2])
        assert err.value.reason.startswith("corrupt DOCX")

    def test_malformed_xml_is_a_corrupt_docx(self):
        with pytest.raises(DocumentError, match=r"corrupt DOCX: word/document\.xml"):
            extract_docx(docx("", document="<w:document><unclosed>"))

    def test_a_zip_without_a_document_part_is_not_a_word_document(self):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("readme.txt", "hi")
        with pytest.raises(DocumentError, match="not a Word document"):
            extract_docx(buffer.getvalue())
