"""Untrusted XML to an ElementTree, with no DTD and bounded memory.

:func:`xml.etree.ElementTree.fromstring` lets expat expand internal entities,
so a few KB declaring nested entities ("billion laughs") becomes gigabytes of
text. Looking for the bytes ``<!DOCTYPE`` first is not enough: in UTF-16 they
are ``<\\0!\\0D\\0...``. Here expat itself reports the declaration, after it
has decoded the document whatever its encoding, and the handler refuses it
before a single entity is declared.

Without a DTD the text cannot grow past the input, but a tree can still cost
far more than its XML: every element and attribute is a Python object (about
20 times the bytes of ``<a/>``). So the tree keeps only what its reader asks
for: character data inside ``text_tags`` (counted against ``max_text_chars``
as it arrives, so a huge text stops at the cap, not after it was collected),
the attributes named in ``keep_attributes``, and at most ``max_elements``
elements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree import ElementTree as ET
from xml.parsers import expat

__all__ = ["TextTooLong", "UnsafeXml", "XmlTooLarge", "parse_untrusted_xml"]


class UnsafeXml(ValueError):
    """The XML declares a DTD or entities: refused, never expanded."""


class XmlTooLarge(ValueError):
    """The XML holds more elements (or text) than the caller allows."""


class TextTooLong(XmlTooLarge):
    """The XML holds more characters of kept text than the caller allows."""


def parse_untrusted_xml(
    xml: bytes,
    *,
    text_tags: frozenset[str],
    keep_attributes: frozenset[str],
    max_text_chars: int,
    max_elements: int,
) -> ET.Element:
    """The root of ``xml``, parsed by expat in any encoding it declares or marks.

    Tags and attribute names are in ElementTree's ``{namespace}local`` form.
    Raises :class:`UnsafeXml` for a document type or entity declaration,
    :class:`XmlTooLarge` past a cap (:class:`TextTooLong` for the text), and :class:`expat.ExpatError` for XML that
    is not well formed.
    """
    return _Builder(text_tags, keep_attributes, max_text_chars, max_elements).parse(xml)


def _refuse_dtd(parser: expat.XMLParserType) -> None:
    """No DTD at all: not internal (entity bombs), not external (file and
    network reads), not parameter entities."""
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_entity


def _refuse_doctype(*_args: object) -> None:
    raise UnsafeXml("declares a DTD")


def _refuse_entity(*_args: object) -> None:
    raise UnsafeXml("declares an entity")


@dataclass
class _Builder:
    text_tags: frozenset[str]
    keep_attributes: frozenset[str]
    max_text_chars: int
    max_elements: int
    text_chars: int = field(init=False, default=0)
    elements: int = field(init=False, default=0)
    in_text: list[bool] = field(init=False, default_factory=list)
    """Per open element: is its character data kept?"""
    names: dict[str, str] = field(init=False, default_factory=dict)
    """One str per distinct name, shared by all elements."""
    tree: ET.TreeBuilder = field(init=False, default_factory=ET.TreeBuilder)

    def parse(self, xml: bytes) -> ET.Element:
        parser = expat.ParserCreate(namespace_separator="}")
        parser.buffer_text = True  # one call per run of text, not per line
        _refuse_dtd(parser)
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._data
        parser.Parse(xml, True)
        return self.tree.close()

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        self.elements += 1
        if self.elements > self.max_elements:
            raise XmlTooLarge(f"more than {self.max_elements:,} elements")
        tag = self._name(name)
        kept = {}
        for key, value in attributes.items():
            key = self._name(key)
            if key in self.keep_attributes:
                kept[key] = value
        self.in_text.append(tag in self.text_tags)
        self.tree.start(tag, kept)

    def _end(self, name: str) -> None:
        self.in_text.pop()
        self.tree.end(self._name(name))

    def _data(self, data: str) -> None:
        if not self.in_text or not self.in_text[-1]:
            return  # whitespace between elements, text nobody reads
        self.text_chars += len(data)
        if self.text_chars > self.max_text_chars:
            raise TextTooLong(f"more than {self.max_text_chars:,} characters of text")
        self.tree.data(data)

    def _name(self, name: str) -> str:
        """expat's ``namespace}local`` -> ElementTree's ``{namespace}local``."""
        clark = self.names.get(name)
        if clark is None:
            clark = self.names[name] = "{" + name if "}" in name else name
        return clark
