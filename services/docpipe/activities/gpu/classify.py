"""Zero-shot document classification with the embedding model itself.

Each label of the taxonomy has a short description; descriptions are embedded
once per process with the same model as the chunks, and a document (the mean
of its chunk vectors) takes the label whose description it is closest to. No
second model, no training data, and a taxonomy is changed by editing text.

The score is a softmax over cosine similarities with a temperature: a
relative confidence among the configured labels (it sums to 1 over them), not
a probability calibrated on labelled data. ``min_score`` turns weak winners
into ``"other"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

DEFAULT_TAXONOMY: dict[str, str] = {
    "technology": "software, computers, the internet, engineering and technical systems",
    "science": "scientific research, physics, biology, chemistry, astronomy and experiments",
    "business": "companies, markets, money, finance, budgets, sales and the economy",
    "government": "politics, public administration, elections, councils, laws and policy",
    "health": "medicine, hospitals, illness, nutrition, fitness and wellbeing",
    "culture": "art, museums, music, literature, history, film and heritage",
    "travel": "travel, tourism, places, cities, landscapes, transport and outdoor trips",
    "food": "food, cooking, recipes, bakeries, restaurants, ingredients and drinks",
    "education": "schools, universities, teaching, learning and training",
    "environment": "nature, climate, weather, energy, agriculture, gardens and ecology",
    "sports": "sports, games, athletes, competitions and teams",
}


class DocumentClassifier(Protocol):
    async def classify_document(self, text: str, vector: np.ndarray) -> Classification: ...


LABEL_PROMPT = "This document is about {description}."


@dataclass(frozen=True)
class Classification:
    label: str
    score: float
    scores: dict[str, float]


def document_vector(chunk_vectors: np.ndarray) -> np.ndarray:
    """Mean of the (unit) chunk vectors, renormalised: the document's direction."""
    if len(chunk_vectors) == 0:
        raise ValueError("a document needs at least one chunk vector")
    mean = np.asarray(chunk_vectors, dtype=np.float32).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


class ZeroShotClassifier:
    def __init__(
        self,
        labels: list[str],
        label_vectors: np.ndarray,
        *,
        temperature: float = 0.05,
        min_score: float = 0.0,
    ) -> None:
        if len(labels) != len(label_vectors) or not labels:
            raise ValueError("one vector per label, at least one label")
        self.labels = labels
        self.label_vectors = np.asarray(label_vectors, dtype=np.float32)
        self.temperature = temperature
        self.min_score = min_score

    @staticmethod
    def prompts(taxonomy: dict[str, str]) -> list[str]:
        return [LABEL_PROMPT.format(description=d) for d in taxonomy.values()]

    async def classify_document(self, text: str, vector: np.ndarray) -> Classification:
        """The classifier interface of the GPU worker (a model classifier reads the text)."""
        return self.classify(vector)

    def classify(self, doc_vector: np.ndarray) -> Classification:
        similarities = self.label_vectors @ np.asarray(doc_vector, dtype=np.float32)
        logits = similarities / self.temperature
        weights = np.exp(logits - logits.max())
        probabilities = weights / weights.sum()
        best = int(np.argmax(probabilities))
        scores = {
            label: round(float(p), 4) for label, p in zip(self.labels, probabilities, strict=True)
        }
        score = float(probabilities[best])
        label = self.labels[best] if score >= self.min_score else "other"
        return Classification(label, round(score, 4), scores)
