"""Zero-shot classification and extractive summaries: the policy, on hand-made vectors."""

import numpy as np
import pytest

from docpipe.activities.gpu.classify import ZeroShotClassifier, document_vector
from docpipe.activities.gpu.extractive import centrality, pick_summary, split_sentences


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


def test_the_central_chunks_are_those_nearest_the_whole_documents_centre():
    from docpipe.activities.gpu.extractive import central_chunks

    # Nine chunks on the main topic (x axis), one off-topic opening chunk (y axis).
    vectors = np.array([[0.0, 1.0]] + [[1.0, 0.05 * i] for i in range(9)], dtype=np.float32)
    assert 0 not in central_chunks(vectors, 3)
    assert central_chunks(vectors, 3) == sorted(central_chunks(vectors, 3)), "document order"
    assert central_chunks(np.zeros((0, 2), dtype=np.float32), 3) == []


def test_candidate_sentences_are_bounded_and_spread_over_the_chosen_chunks():
    from docpipe.activities.gpu.extractive import candidate_sentences

    chunks = [
        " ".join(f"Chunk {c} sentence number {s} is long enough." for s in range(10))
        for c in range(4)
    ]
    vectors = np.ones((4, 2), dtype=np.float32)
    picked = candidate_sentences(chunks, vectors, chunks=4, limit=8)
    assert len(picked) == 8
    assert {p.split()[1] for p in picked} == {"0", "1", "2", "3"}


def test_a_generative_prompt_gets_the_central_chunks_in_order_within_its_budget():
    from docpipe.activities.gpu.extractive import representative_text

    chunks = ["off topic " * 10] + [f"main topic part {i} " * 5 for i in range(6)]
    vectors = np.array([[0.0, 1.0]] + [[1.0, 0.0]] * 6, dtype=np.float32)
    text = representative_text(chunks, vectors, max_chars=250)
    assert len(text) <= 250
    assert "off topic" not in text
    assert text.index("part 0") < text.index("part 1")
    assert representative_text(["short"], vectors[:1], max_chars=250) == "short"


def test_the_summary_of_an_embedded_document_keeps_what_the_whole_document_is_about():
    from docpipe.activities.gpu.extractive import summary_from_chunks

    flood = "The river flooded the lower town and the bridge closed for a week."
    chunks = ["Copyright notice: this file may be shared freely by anyone at all."] + [
        f"{flood} Volunteers filled sandbags by the river number {i} all night long."
        for i in range(6)
    ]
    vectors = np.array([[0.0, 1.0]] + [[1.0, 0.1]] * 6, dtype=np.float32)
    summary = summary_from_chunks(chunks, vectors, max_sentences=1)
    assert "flooded" in summary
    assert "Copyright" not in summary
    assert summary_from_chunks([], np.zeros((0, 2), dtype=np.float32)) == ""
