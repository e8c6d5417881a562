"""Untrusted XML: no DTD in any encoding, and caps that hold while parsing."""

from __future__ import annotations

from xml.parsers import expat

import pytest

from docpipe.activities.cpu.safe_xml import (
    TextTooLong,
    UnsafeXml,
    XmlTooLarge,
    parse_untrusted_xml,
)

NS = "urn:example"
T = f"{{{NS}}}t"


def parse(xml: bytes, *, max_text_chars: int = 1000, max_elements: int = 1000):
    return parse_untrusted_xml(
        xml,
        text_tags=frozenset({T}),
        keep_attributes=frozenset({f"{{{NS}}}val"}),
        max_text_chars=max_text_chars,
        max_elements=max_elements,
    )


DTD_DOCUMENT = (
    '<?xml version="1.0" encoding="{encoding}"?>'
    '<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    f'<d xmlns="{NS}"><t>&b;</t></d>'
)


@pytest.mark.parametrize(
    ("encoding", "codec", "bom"),
    [
        ("UTF-8", "utf-8", b""),
        ("UTF-16", "utf-16-le", b""),
        ("UTF-16", "utf-16-be", b""),
        ("UTF-16", "utf-16-le", b"\xff\xfe"),
        ("UTF-16", "utf-16-be", b"\xfe\xff"),
    ],
    ids=["utf-8", "utf-16-le", "utf-16-be", "utf-16-le-bom", "utf-16-be-bom"],
)
def test_a_dtd_is_refused_whatever_the_encoding(encoding, codec, bom):
    xml = bom + DTD_DOCUMENT.format(encoding=encoding).encode(codec)
    assert b"<!DOCTYPE" not in xml or codec == "utf-8"  # the old byte check saw only this
    with pytest.raises(UnsafeXml, match="declares a DTD"):
        parse(xml)


def test_a_doctype_without_entities_is_refused_too():
    with pytest.raises(UnsafeXml):
        parse(b'<!DOCTYPE d SYSTEM "file:///etc/passwd"><d/>')


def test_an_undeclared_entity_is_malformed_xml_not_a_lookup():
    with pytest.raises(expat.ExpatError):
        parse(f'<d xmlns="{NS}"><t>&secret;</t></d>'.encode())


def test_utf16_without_a_dtd_parses_to_namespaced_elements():
    xml = f'<?xml version="1.0" encoding="UTF-16"?><d xmlns="{NS}"><t>Grüße &amp; 東京</t></d>'
    root = parse(b"\xff\xfe" + xml.encode("utf-16-le"))
    assert root.tag == f"{{{NS}}}d"
    assert root.find(T).text == "Grüße & 東京"


def test_only_the_text_and_attributes_asked_for_are_kept():
    xml = (
        f'<d xmlns="{NS}" xmlns:n="{NS}" xmlns:o="urn:other">\n'
        '  <p n:val="Heading1" n:rsid="00AB" val="no namespace" o:val="x">'
        "<t>kept</t><other>dropped</other></p>\n</d>"
    ).encode()
    root = parse(xml)
    paragraph = root.find(f"{{{NS}}}p")
    assert paragraph.attrib == {f"{{{NS}}}val": "Heading1"}
    assert paragraph.find(T).text == "kept"
    assert paragraph.find(f"{{{NS}}}other").text is None
    assert root.text is None and paragraph.tail is None  # no whitespace kept between elements


def test_the_text_cap_stops_the_parse_where_the_text_passes_it():
    """The document is cut off after its huge text: reaching the end would be a
    syntax error, so TextTooLong proves the parse stopped at the cap, not after."""
    xml = f'<d xmlns="{NS}"><t>'.encode() + b"x" * 100_000
    with pytest.raises(TextTooLong, match="more than 1,000 characters"):
        parse(xml)


def test_text_under_the_cap_is_kept_whole():
    xml = f'<d xmlns="{NS}"><t>{"x" * 600}</t><t>{"y" * 400}</t></d>'.encode()
    assert "".join(t.text for t in parse(xml).iter(T)) == "x" * 600 + "y" * 400


def test_the_element_cap_stops_the_parse():
    xml = f'<d xmlns="{NS}">'.encode() + b"<e/>" * 100_000
    with pytest.raises(XmlTooLarge, match="more than 1,000 elements"):
        parse(xml)
