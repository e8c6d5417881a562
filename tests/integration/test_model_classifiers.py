"""Classifiers from local model paths (CLASSIFIER_MODEL_PATH, IMAGE_CLASSIFIER_MODEL_PATH).

The models here are *tiny and randomly initialised*, built from configs in the
test: they prove that a local fine-tuned model is loaded offline, run on the
worker's device and mapped to its own labels. Their predictions are noise, so
nothing here judges accuracy.
"""

from __future__ import annotations

import make_binary_samples as samples
import numpy as np
import pytest

from docpipe.activities.cpu.chunking import default_model_dir
from docpipe.activities.gpu.model_classifiers import ImageModelClassifier, TextModelClassifier

pytestmark = pytest.mark.integration

LABELS = {0: "invoice", 1: "contract", 2: "letter"}


@pytest.fixture(scope="module")
def tiny_text_classifier(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert-cls")
    tokenizer = BertTokenizerFast.from_pretrained(default_model_dir(), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_image_classifier(tmp_path_factory):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    path = tmp_path_factory.mktemp("tiny-vit-cls")
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
    )  # fmt: skip
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


async def test_a_local_sequence_classifier_labels_documents_with_its_own_labels(
    tiny_text_classifier,
):
    classifier = TextModelClassifier(tiny_text_classifier, "cpu")
    result = await classifier.classify_document(
        "Invoice 12345. Total due: 99.50 EUR. " * 200, np.zeros(384)
    )
    assert result.label in LABELS.values()
    assert set(result.scores) == set(LABELS.values())
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-3)


async def test_a_local_image_classifier_gives_its_top_labels_for_an_image(tiny_image_classifier):
    classifier = ImageModelClassifier(tiny_image_classifier, "cpu", top=2)
    png = samples.image_bytes(samples.text_image(), "PNG")
    labels = await classifier.classify(png)
    assert len(labels) == 2
    assert {entry["label"] for entry in labels} <= set(LABELS.values())
    assert labels[0]["score"] >= labels[1]["score"]
