"""The compressed text artifact and the document's most frequent words."""

from __future__ import annotations

import gzip
import re
from collections import Counter
from dataclasses import dataclass

from docpipe.activities.cpu.stopwords import stop_words

GZIP_LEVEL = 6
"""zlib's default: most of level 9's ratio at a fraction of its time."""

# Japanese and Chinese have no spaces: runs of ideographs and runs of katakana
# stand in for words; runs of hiragana (mostly grammar) are matched, then dropped.
_IDEOGRAPHS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3005"
_KATAKANA = "\u30a0-\u30ff\u31f0-\u31ff"
_HIRAGANA = "\u3040-\u309f"
# Letters and digits, with inner apostrophes and hyphens ("don't", "état-major").
_WORD_RE = re.compile(
    rf"[{_IDEOGRAPHS}]+|[{_KATAKANA}]+|[{_HIRAGANA}]+"
    rf"|[^\W_{_IDEOGRAPHS}{_KATAKANA}{_HIRAGANA}]+(?:['’-][^\W_{_IDEOGRAPHS}{_KATAKANA}{_HIRAGANA}]+)*"
)
_HAS_LETTER_RE = re.compile(r"[^\W\d_]")
_HIRAGANA_ONLY_RE = re.compile(rf"[{_HIRAGANA}]+")
# Elided articles and prepositions glued to the next word: l'homme, dell'anno.
_ELISION_RE = {
    "fr": re.compile(r"^(?:l|d|j|m|n|s|t|c|qu|jusqu|lorsqu|puisqu|quoiqu)'(?=\w)"),
    "it": re.compile(r"^(?:l|d|un|all|dall|dell|nell|sull|coll|quell|bell|sant|c|v)'(?=\w)"),
}


@dataclass
class CompressedDocument:
    data: bytes
    original_bytes: int
    """Size of the UTF-8 text."""
    compressed_bytes: int
    ratio: float
    """``original_bytes / compressed_bytes``: 4.0 means four times smaller."""


def compress_document(text: str) -> CompressedDocument:
    """gzip of the UTF-8 text, byte-for-byte reproducible.

    The gzip header's timestamp is fixed at 0, so the same text always gives
    the same bytes: re-running a document re-uploads an identical object
    (same ETag, same checksum) instead of a new version.
    """
    raw = text.encode("utf-8")
    data = gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)
    return CompressedDocument(
        data=data,
        original_bytes=len(raw),
        compressed_bytes=len(data),
        ratio=len(raw) / len(data),
    )


def word_frequencies(text: str, *, language: str = "und", top_n: int = 25) -> dict[str, int]:
    """The ``top_n`` most frequent words of ``text``, most frequent first.

    Words are casefolded; one-character words and numbers are left out, and so
    are the stop words of ``language`` where we have a list (en, de, fr, es,
    it, pt, nl). Ties are broken alphabetically so the result is stable.
    Japanese and Chinese are not segmented with a dictionary: runs of
    ideographs and runs of katakana count as words, hiragana is skipped.
    """
    if top_n <= 0:
        return {}
    lang = language.strip().lower()[:2]
    # Count raw tokens at C speed first, then clean up each distinct one: a long
    # document has millions of words but only thousands of different ones.
    raw_counts = Counter(_WORD_RE.findall(text.casefold()))
    counts: Counter[str] = Counter()
    for token, count in raw_counts.items():
        word = _canonical(token, lang)
        if word:
            counts[word] += count
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return dict(ranked[:top_n])


def _canonical(token: str, lang: str) -> str:
    """The word a casefolded token counts as, or ``""`` if it does not count."""
    word = token.replace("’", "'")
    elision = _ELISION_RE.get(lang)
    if elision is not None:
        word = elision.sub("", word)
    if lang == "en" and word.endswith("'s"):
        word = word[:-2]
    if len(word) < 2 or word in stop_words(lang) or not _HAS_LETTER_RE.search(word):
        return ""
    if _HIRAGANA_ONLY_RE.fullmatch(word):
        return ""
    return word
