"""Extractive summaries ranked by embedding centrality (the offline default).

With no generative model configured, a summary is the few sentences that
best represent the whole document: each sentence is embedded, its centrality
is its mean cosine similarity to every other sentence (a sentence that many
others resemble carries the document's main thread), and the top sentences
are returned in their original order. Real, deterministic, and it never says
anything the document does not.
"""

from __future__ import annotations

import re

import numpy as np

# Sentence ends: Latin punctuation followed by space/newline, CJK full stops, or blank lines.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-ZÀ-ÖØ-Þ0-9])|(?<=[。！？])|\n{2,}")
MIN_SENTENCE_CHARS = 20


def split_sentences(text: str, *, max_sentences: int = 400) -> list[str]:
    """Sentences worth ranking (very short fragments and headings are dropped)."""
    parts = (p.strip() for p in _SENTENCE_END.split(text))
    sentences = [re.sub(r"\s+", " ", p) for p in parts if len(p) >= MIN_SENTENCE_CHARS]
    return sentences[:max_sentences]


def centrality(vectors: np.ndarray) -> np.ndarray:
    """Mean cosine similarity of each (unit) vector to all the others."""
    n = len(vectors)
    if n <= 1:
        return np.ones(n, dtype=np.float32)
    similarity = vectors @ vectors.T
    return (similarity.sum(axis=1) - np.diag(similarity)) / (n - 1)


def pick_summary(
    sentences: list[str], vectors: np.ndarray, *, max_sentences: int = 3, max_chars: int = 600
) -> str:
    """The most central sentences, in document order, within a character budget."""
    if not sentences:
        return ""
    ranked = np.argsort(-centrality(vectors), kind="stable")
    chosen: list[int] = []
    used = 0
    for index in ranked:
        length = len(sentences[index])
        if chosen and (len(chosen) >= max_sentences or used + length > max_chars):
            break
        chosen.append(int(index))
        used += length + 1
    return " ".join(sentences[i] for i in sorted(chosen))[
        : max(max_chars, len(sentences[chosen[0]]))
    ]
