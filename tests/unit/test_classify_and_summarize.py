"""Zero-shot classification and extractive summaries: the policy, on hand-made vectors."""

import numpy as np
import pytest

from docpipe.activities.gpu.classify import ZeroShotClassifier, document_vector
from docpipe.activities.gpu.summarize import centrality, pick_summary, split_sentences


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_a_document_takes_the_label_it_points_towards():
    classifier = ZeroShotClassifier(["food", "sports"], np.stack([unit(1, 0), unit(0, 1)]))
    result = classifier.classify(document_vector(np.stack([unit(0.9, 0.1), unit(1, 0.2)])))
    assert result.label == "food"
    assert result.score > 0.9
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-3)


def test_a_weak_winner_becomes_other():
    classifier = ZeroShotClassifier(["a", "b"], np.stack([unit(1, 0), unit(0, 1)]), min_score=0.9)
    assert classifier.classify(unit(1, 1)).label == "other"


def test_document_vector_is_unit_length_and_needs_a_chunk():
    assert np.linalg.norm(document_vector(np.stack([unit(1, 0), unit(0, 1)]))) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        document_vector(np.zeros((0, 2)))


def test_sentences_are_split_in_latin_and_cjk_text_and_fragments_dropped():
    text = "The bakery opens at six every day. Bread is baked before sunrise!\n\nShort.\n\n桜の季節になると多くの人が公園を訪れます。夜桜も人気があり、ライトアップされます。"
    sentences = split_sentences(text)
    assert sentences[0] == "The bakery opens at six every day."
    assert "Short." not in sentences
    assert any(s.startswith("桜の季節") for s in sentences)


def test_the_most_central_sentences_are_kept_in_document_order():
    sentences = [
        "outlier about cars and engines",
        "main topic one",
        "main topic two",
        "main topic three",
    ]
    vectors = np.stack([unit(0, 1), unit(1, 0.05), unit(1, 0.0), unit(1, -0.05)])
    assert centrality(vectors).argmin() == 0
    summary = pick_summary(sentences, vectors, max_sentences=2)
    assert "outlier" not in summary
    assert summary.index("main topic") == 0


def test_summary_respects_the_character_budget_but_never_returns_nothing():
    sentences = ["x" * 500, "y" * 500]
    vectors = np.stack([unit(1, 0), unit(1, 0.1)])
    summary = pick_summary(sentences, vectors, max_chars=600)
    assert len(summary) == 500
    assert pick_summary([], np.zeros((0, 2))) == ""
