"""Is this text worth indexing? Reject what would only pollute the stores.

Every rejection names the rule that failed and the numbers behind it, since
the reason ends up in front of a person deciding whether to fix the source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docpipe.errors import DocumentError
from docpipe.models import Stage

MIN_LETTER_RATIO = 0.3
"""Below this share of letters among visible characters, it is not prose."""

LETTER_RATIO_MIN_CHARS = 200
"""Short texts (a title, a table of figures) may legitimately be mostly digits."""

MAX_REPLACEMENT_RATIO = 0.05
"""More U+FFFD than this means the text was decoded with the wrong encoding."""

# Scripts written without spaces count one word per character (as word
# processors do); everything else counts runs of letters and digits.
_CJK = r"\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD_RE = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_NON_LETTERS_RE = re.compile(r"[\W\d_]+")
_WHITESPACE_RE = re.compile(r"\s+")


@dataclass
class DocumentStats:
    char_count: int
    word_count: int
    line_count: int
    letter_ratio: float
    """Letters / non-whitespace characters (0..1)."""


def validate_document_structure(
    text: str, *, min_chars: int = 1, max_chars: int = 5_000_000
) -> DocumentStats:
    """Statistics of ``text``, or :class:`DocumentError` (stage ``validate``)
    if it is empty, too short, too long, wordless or not text at all."""
    char_count = len(text)
    if char_count == 0:
        raise DocumentError(Stage.VALIDATE, "document is empty: no text was extracted")
    # Before any full scan, so an oversized text is rejected cheaply.
    if char_count > max_chars:
        raise DocumentError(
            Stage.VALIDATE,
            f"document is too long: {char_count:,} characters, the limit is {max_chars:,}",
        )
    visible = _WHITESPACE_RE.sub("", text)
    if not visible:
        raise DocumentError(Stage.VALIDATE, "document is empty: it contains only whitespace")
    if char_count < min_chars:
        raise DocumentError(
            Stage.VALIDATE,
            f"document is too short: {char_count:,} characters, at least {min_chars:,} required",
        )

    word_count = len(_WORD_RE.findall(text))
    if word_count == 0:
        raise DocumentError(
            Stage.VALIDATE,
            "document contains no words: only punctuation and symbols",
        )

    letters = len(_NON_LETTERS_RE.sub("", visible))
    letter_ratio = letters / len(visible)
    if len(visible) > LETTER_RATIO_MIN_CHARS:
        replacements = visible.count("\ufffd")
        if replacements / len(visible) > MAX_REPLACEMENT_RATIO:
            raise DocumentError(
                Stage.VALIDATE,
                f"document looks wrongly decoded: {replacements:,} of {len(visible):,} "
                "characters are replacement characters (U+FFFD)",
            )
        if letter_ratio < MIN_LETTER_RATIO:
            raise DocumentError(
                Stage.VALIDATE,
                f"document does not look like text: only {letter_ratio:.0%} of its visible "
                f"characters are letters (at least {MIN_LETTER_RATIO:.0%} expected); "
                "it may be binary data, a number dump or garbled",
            )

    return DocumentStats(
        char_count=char_count,
        word_count=word_count,
        line_count=text.count("\n") + 1,
        letter_ratio=letter_ratio,
    )
