"""Clean extracted text and find its language.

Normalisation makes the same words look the same to every later step (the
tokenizer, word statistics, deduplication by content): compatibility forms
(ligatures, full-width letters, non-breaking spaces) become their plain
equivalents, invisible control characters go, whitespace is tidied while
paragraph breaks (a blank line) survive for the chunker.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from dataclasses import dataclass

from py3langid.langid import MODEL_FILE, LanguageIdentifier

UNDETERMINED = "und"
"""ISO 639 code for "language not determined"."""

MIN_LETTERS_FOR_DETECTION = 20
"""Below this many letters a language guess is noise."""

HINT_CONFIDENCE_THRESHOLD = 0.5
"""A valid language hint overrides detections less sure than this."""

MIN_CONFIDENCE = 0.2
"""Without a hint, detections less sure than this are reported as undetermined."""

_SAMPLE_CHARS = 12_000
"""Language identification walks every byte in Python; three 4 000-character
slices (start, middle, end) are as telling as the whole of a long text."""

_NO_LINGUISTIC_CONTENT = "zxx"

_SURROGATES_RE = re.compile(r"[\ud800-\udfff]")
_NEWLINES_RE = re.compile(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# Cc except \t and \n; invisible characters that only split words (soft hyphen,
# zero-width space, word joiner, BOM); non-characters. ZWJ and ZWNJ stay: some
# scripts and emoji need them.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\xad\u200b\u2060\ufeff\ufffe\uffff]")
_HORIZONTAL_SPACE_RE = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE_RE = re.compile(r" ?\n ?")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
_LETTER_RE = re.compile(r"[^\W\d_]")
_HINT_RE = re.compile(r"^([a-z]{2})(?:[-_][a-z0-9]+)*$")


@dataclass
class PreprocessedText:
    text: str
    language: str
    """ISO 639-1 code, or ``"und"`` when it cannot be told."""
    language_confidence: float
    """The detector's probability for ``language`` (0..1); 0.0 for ``"und"`` or
    when the language came from the hint on a text too short to check it."""


def preprocess_text(text: str, language_hint: str = "") -> PreprocessedText:
    """Normalise ``text`` and identify its language.

    ``language_hint`` (e.g. from the CSV, ``"de"`` or ``"de-AT"``) is used when
    the text is too short to tell or the detector is unsure.
    """
    clean = normalize_text(text)
    language, confidence = detect_language(clean, language_hint)
    return PreprocessedText(text=clean, language=language, language_confidence=confidence)


def normalize_text(text: str) -> str:
    """NFKC, no control characters (``\\n`` and ``\\t`` kept as layout), ``\\n``
    line ends, single spaces within lines, stripped lines, at most one blank
    line in a row, no leading or trailing whitespace."""
    text = _SURROGATES_RE.sub("", text)  # unencodable; would break UTF-8 uploads
    text = unicodedata.normalize("NFKC", text)
    text = _NEWLINES_RE.sub("\n", text)
    text = _CONTROL_RE.sub("", text)
    text = _HORIZONTAL_SPACE_RE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE_RE.sub("\n", text)
    return collapse_blank_lines(text).strip()


def collapse_blank_lines(text: str) -> str:
    """At most one blank line in a row: a paragraph break, which the chunker keeps."""
    return _BLANK_LINES_RE.sub("\n\n", text)


def detect_language(text: str, hint: str = "") -> tuple[str, float]:
    """``(ISO 639-1 code or "und", confidence)`` for ``text``."""
    hint_code = _valid_hint(hint)
    if not _has_letters(text, MIN_LETTERS_FOR_DETECTION):
        return (hint_code, 0.0) if hint_code else (UNDETERMINED, 0.0)

    ranking = _identifier().rank(_sample(text))
    best, confidence = _best_iso639_1(ranking)
    if confidence >= HINT_CONFIDENCE_THRESHOLD or not hint_code:
        if best == UNDETERMINED or confidence < MIN_CONFIDENCE:
            return UNDETERMINED, 0.0
        return best, confidence
    # Unsure, and the source told us: trust the hint, with the detector's
    # probability for that language as its confidence.
    return hint_code, next((p for code, p in ranking if code == hint_code), 0.0)


@functools.lru_cache(maxsize=1)
def _identifier() -> LanguageIdentifier:
    """The language model, loaded once per process (it takes most of a second)."""
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _best_iso639_1(ranking: list[tuple[str, float]]) -> tuple[str, float]:
    """The most probable language that has a two-letter code.

    The model also knows languages with only three-letter codes (Cantonese,
    Egyptian Arabic, ...); their nearest two-letter relative ranks next.
    """
    for code, probability in ranking:
        if code == _NO_LINGUISTIC_CONTENT:
            return UNDETERMINED, 0.0
        if len(code) == 2:
            return code, float(probability)
    return UNDETERMINED, 0.0


def _valid_hint(hint: str) -> str:
    """The language part of a hint like ``"pt-BR"``, or ``""`` if it is not one."""
    match = _HINT_RE.match(hint.strip().lower())
    return match.group(1) if match else ""


def _has_letters(text: str, count: int) -> bool:
    """True if ``text`` has at least ``count`` letters (stops early on long texts)."""
    return sum(1 for _ in itertools.islice(_LETTER_RE.finditer(text), count)) >= count


def _sample(text: str) -> str:
    if len(text) <= _SAMPLE_CHARS:
        return text
    part = _SAMPLE_CHARS // 3
    middle = (len(text) - part) // 2
    return "\n".join((text[:part], text[middle : middle + part], text[-part:]))
