"""Readable text from HTML: what a person sees, with the block structure kept.

Block elements become line breaks and paragraph-like ones blank lines, so the
chunker can still find paragraph boundaries; scripts, styles and other
invisible content are dropped. The walk is iterative, so deeply nested pages
cannot hit Python's recursion limit.

Nesting is capped before parsing: the HTML tree builder's cost grows with the
square of the depth (100 000 nested ``<div>`` took over a minute, unclosed
inline tags several), so tags past :data:`MAX_NESTING` levels are dropped and
their text kept, as browsers do (Chromium stops nesting at 512 levels).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

from docpipe.activities.cpu.preprocess import collapse_blank_lines

# Never rendered as text (or not text at all).
_SKIP_TAGS = frozenset(
    {
        "head", "title", "meta", "link", "base", "script", "style", "noscript",
        "template", "svg", "math", "iframe", "object", "embed", "canvas",
        "audio", "video", "source", "track", "map", "select", "datalist",
    }
)  # fmt: skip
# Blank line before and after: the chunker's paragraph boundaries.
_PARAGRAPH_TAGS = frozenset(
    {
        "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table",
        "blockquote", "pre", "figure", "hr", "address", "details", "fieldset",
        "form", "section", "article", "main", "header", "footer", "nav", "aside",
    }
)  # fmt: skip
# A line break before and after.
_LINE_TAGS = frozenset(
    {
        "div", "li", "dt", "dd", "tr", "caption", "figcaption", "summary",
        "legend", "option", "center", "body", "label", "thead", "tbody", "tfoot",
    }
)  # fmt: skip
_LIST_TAGS = frozenset({"ul", "ol", "dl"})
_CELL_TAGS = frozenset({"td", "th"})

MAX_NESTING = 512
"""Deepest element nesting kept; deeper tags are dropped, their text stays."""

# Elements that never nest (void) or that the parser closes by itself when a
# sibling starts: they do not deepen the tree, so they are not counted.
_NOT_NESTING = frozenset(
    {
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr", "param", "keygen", "p", "li", "dt", "dd", "tr", "td",
        "th", "option", "optgroup", "rb", "rt", "rp", "thead", "tbody", "tfoot",
        "colgroup", "caption", "html", "head", "body",
    }
)  # fmt: skip
# Comments and raw-text elements are skipped whole: a "<b" inside a script is no tag.
_TAG_RE = re.compile(
    r"<!--.*?(?:-->|$)|<(script|style|textarea|title|xmp)\b.*?(?:</\1\s*>|$)"
    # A tag's attributes stop at the next "<" or ">": every character is looked at
    # a bounded number of times, so text full of "<a" without a ">" stays linear.
    r"|<(/?)([a-zA-Z][a-zA-Z0-9:-]*)([^<>]*)>",
    re.DOTALL | re.IGNORECASE,
)

_LINE = 1
_PARAGRAPH = 2
_HTML_SPACE_RE = re.compile(r"[ \t\n\r\f]+")


@dataclass
class HtmlText:
    text: str
    title: str


def html_to_text(html: str, *, title_from_any_heading: bool = False) -> HtmlText:
    """The visible text of ``html`` and its title.

    The title is ``<title>``, else the first ``<h1>``; with
    ``title_from_any_heading`` (rendered Markdown has no ``<title>``) it is the
    first heading of any level.
    """
    tree = LexborHTMLParser(limit_nesting(html))
    title = "" if title_from_any_heading else _node_text(tree.css_first("head > title"))
    if not title:
        selector = "h1, h2, h3, h4, h5, h6" if title_from_any_heading else "h1"
        title = _node_text(tree.css_first(selector))
    root = tree.body if tree.body is not None else tree.root
    text = _render(root) if root is not None else ""
    return HtmlText(text=text, title=title)


def limit_nesting(html: str, max_depth: int = MAX_NESTING) -> str:
    """``html`` with the tags that would nest deeper than ``max_depth`` removed.

    A cheap tag scan, not a parser: it only has to bound the depth the real
    parser sees. The text inside the removed tags stays in place; their end
    tags go too. A page with fewer tags than ``max_depth`` cannot be too deep
    and is returned as it is without a scan.
    """
    if html.count("<") <= max_depth:
        return html
    depth = 0
    dropped = 0  # start tags removed and not yet matched by an end tag
    cuts: list[tuple[int, int]] = []
    for match in _TAG_RE.finditer(html):
        name = match.group(3)
        if name is None or name.lower() in _NOT_NESTING or match.group(4).endswith("/"):
            continue  # comment, raw text, void or self-closing tag, implicitly closed element
        if match.group(2):  # end tag
            if dropped:
                dropped -= 1
                cuts.append(match.span())
            elif depth:
                depth -= 1
        elif depth >= max_depth:
            dropped += 1
            cuts.append(match.span())
        else:
            depth += 1
    if not cuts:
        return html
    pieces: list[str] = []
    last = 0
    for start, end in cuts:
        pieces.append(html[last:start])
        last = end
    pieces.append(html[last:])
    return "".join(pieces)


def _node_text(node: LexborNode | None) -> str:
    if node is None:
        return ""
    return _HTML_SPACE_RE.sub(" ", node.text(deep=True)).strip()


def _is_hidden(node: LexborNode) -> bool:
    attrs = node.attributes
    if not attrs:
        return False
    return "hidden" in attrs or (attrs.get("aria-hidden") or "").lower() == "true"


def _render(root: LexborNode) -> str:
    pieces: list[str | int] = []
    # Work items: a node to visit, or ("close", tag) when leaving an element.
    stack: list[LexborNode | tuple[str, str]] = [root]
    pre_depth = 0
    list_depth = 0
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            tag = item[1]
            if tag == "pre":
                pre_depth -= 1
            if tag in _LIST_TAGS:
                list_depth -= 1
            pieces.append(_break_for(tag, list_depth))
            continue

        node = item
        if node.is_text_node:
            content = node.text_content or ""
            if content:
                pieces.append(content if pre_depth else _HTML_SPACE_RE.sub(" ", content))
            continue
        if not node.is_element_node:
            continue  # comments, doctype
        tag = node.tag or ""
        if tag in _SKIP_TAGS or _is_hidden(node):
            continue
        if tag == "br":
            pieces.append("\n")
            continue
        if tag in _CELL_TAGS:
            pieces.append("\t")
        elif tag == "img":
            continue

        breaker = _break_for(tag, list_depth)
        if breaker:
            pieces.append(breaker)
        if tag == "pre":
            pre_depth += 1
        if tag in _LIST_TAGS:
            list_depth += 1
        stack.append(("close", tag))
        children: list[LexborNode] = []
        child = node.first_child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend(reversed(children))
    return _join(pieces)


def _break_for(tag: str, list_depth: int) -> int:
    """The break an element puts around itself (0 for inline elements)."""
    if tag in _LIST_TAGS and list_depth > 0:
        return _LINE  # a nested list continues its parent item
    if tag in _PARAGRAPH_TAGS:
        return _PARAGRAPH
    if tag in _LINE_TAGS:
        return _LINE
    return 0


def _join(pieces: list[str | int]) -> str:
    """Concatenate text pieces; adjacent breaks merge into the strongest one."""
    out: list[str] = []
    pending = 0
    for piece in pieces:
        if isinstance(piece, int):
            pending = max(pending, piece)
            continue
        if piece.strip(" ") == "" and (pending or not out or out[-1].endswith("\n")):
            continue  # inter-element whitespace next to a break adds nothing
        if pending:
            if out:
                out.append("\n" * pending)
            pending = 0
        out.append(piece)
    lines = (line.strip(" \t") for line in "".join(out).split("\n"))
    return collapse_blank_lines("\n".join(lines)).strip()
