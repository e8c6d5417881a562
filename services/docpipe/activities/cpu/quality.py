"""A text quality score for postprocessing: is this readable prose or debris?

Search and retrieval suffer from text that validates but is poor: OCR noise,
navigation menus, tables of numbers, repeated boilerplate. The score combines
signals that are cheap, language-independent and explainable, each in 0..1:

* letters: share of letters among non-space characters (garbage is low);
* words: mean word length in a sane band (OCR noise and hashes are not);
* lines: share of lines that look like sentences rather than fragments;
* diversity: distinct words / words (repetition and boilerplate are low);
* language: the language identifier's confidence.

The overall score is their weighted mean; the parts are kept so that a low
score says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")

WEIGHTS = {"letters": 0.3, "words": 0.15, "lines": 0.2, "diversity": 0.2, "language": 0.15}


@dataclass(frozen=True)
class QualityScore:
    score: float
    parts: dict[str, float]


def _band(value: float, low: float, high: float, soft: float) -> float:
    """1 inside [low, high], falling linearly to 0 over ``soft`` outside it."""
    if value < low:
        return max(0.0, 1 - (low - value) / soft)
    if value > high:
        return max(0.0, 1 - (value - high) / soft)
    return 1.0


def _sentence_like(line: str) -> bool:
    """Prose, not a menu item, a number row or noise: several words, mostly letters."""
    if _CJK.search(line):
        return len(line) >= 10
    words = _WORD.findall(line)
    letters = sum(c.isalpha() for c in line) / max(1, sum(not c.isspace() for c in line))
    return letters >= 0.6 and (
        len(words) >= 6 or (len(words) >= 3 and line.endswith((".", "!", "?", ":")))
    )


def quality_score(text: str, *, language_confidence: float = 1.0) -> QualityScore:
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return QualityScore(0.0, dict.fromkeys(WEIGHTS, 0.0))
    letters = sum(c.isalpha() for c in visible) / len(visible)
    cjk = len(_CJK.findall(text)) / len(visible) > 0.3
    words = [w.casefold() for w in _WORD.findall(text)]
    if cjk or not words:
        word_band = 1.0 if cjk else 0.0  # no spaces between CJK words: length means nothing
        diversity = 1.0 if cjk else 0.0
    else:
        mean_length = sum(len(w) for w in words) / len(words)
        word_band = _band(mean_length, 3.0, 8.5, 4.0)
        distinct = len(set(words)) / len(words)
        # Long texts repeat function words; expect less diversity as they grow. Under
        # 20 words diversity says nothing either way: neutral.
        expected = 0.7 if len(words) < 200 else 0.35
        diversity = min(1.0, distinct / expected) if len(words) >= 20 else 0.5
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    sentence_like = sum(1 for line in lines if _sentence_like(line))
    line_share = sentence_like / len(lines) if lines else 0.0
    parts = {
        "letters": round(min(1.0, letters / 0.8), 3),
        "words": round(word_band, 3),
        "lines": round(line_share, 3),
        "diversity": round(diversity, 3),
        "language": round(max(0.0, min(1.0, language_confidence)), 3),
    }
    score = sum(WEIGHTS[k] * v for k, v in parts.items())
    return QualityScore(round(score, 3), parts)
