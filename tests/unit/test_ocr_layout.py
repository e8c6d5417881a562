"""OCR post-processing without the model: reading order, paragraphs, text area,
confidence, and image preparation (the model-backed tests are in
tests/integration/test_ocr.py)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from docpipe.activities.gpu.ocr import (
    OcrBox,
    group_lines,
    layout_text,
    prepare_image,
    summarize,
    text_area_ratio,
)


def box(text: str, left: float, top: float, width: float = 60, height: float = 20, conf=0.9):
    right, bottom = left + width, top + height
    return OcrBox(text, conf, ((left, top), (right, top), (right, bottom), (left, bottom)))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class TestReadingOrder:
    def test_boxes_are_read_line_by_line_left_to_right(self):
        boxes = [
            box("99.50", 200, 52),
            box("Total", 10, 50),
            box("12345", 200, 10),
            box("Invoice", 10, 12),
        ]
        assert layout_text(group_lines(boxes)) == "Invoice 12345\nTotal 99.50"

    def test_a_word_slightly_above_or_below_the_baseline_stays_on_its_line(self):
        boxes = [box("left", 10, 100), box("raised", 100, 96), box("lowered", 200, 104)]
        assert [[b.text for b in line] for line in group_lines(boxes)] == [
            ["left", "raised", "lowered"]
        ]

    def test_a_gap_taller_than_a_line_starts_a_new_paragraph(self):
        boxes = [box("Heading", 10, 10), box("first line", 10, 80), box("second line", 10, 105)]
        assert layout_text(group_lines(boxes)) == "Heading\n\nfirst line\nsecond line"

    def test_no_boxes_no_text(self):
        assert layout_text(group_lines([])) == ""


class TestSummary:
    def test_confidence_is_the_mean_over_boxes_and_blank_boxes_do_not_count(self):
        result = summarize(
            [box("a", 0, 0, conf=0.8), box("b", 80, 0, conf=1.0), box(" ", 160, 0, conf=0.1)],
            (300, 40),
        )
        assert result.confidence == pytest.approx(0.9)
        assert result.boxes == 2
        assert result.text == "a b"

    def test_nothing_read_gives_zero_confidence_and_area(self):
        result = summarize([], (100, 100))
        assert (result.text, result.confidence, result.boxes, result.text_area_ratio) == (
            "",
            0.0,
            0,
            0.0,
        )

    def test_text_area_counts_overlapping_boxes_once(self):
        boxes = [box("a", 0, 0, width=50, height=50), box("b", 25, 0, width=50, height=50)]
        assert text_area_ratio(boxes, (100, 100)) == pytest.approx(0.75 * 0.5 * 1.04, rel=0.06)
        assert text_area_ratio([box("all", 0, 0, 100, 100)], (100, 100)) == pytest.approx(1.0)


class TestPreparation:
    def test_large_images_are_shrunk_to_the_maximum_side(self):
        image = prepare_image(png(Image.new("L", (5000, 1000), 255)), max_side=2500)
        assert image.size == (2500, 500)
        assert image.mode == "RGB"

    def test_small_images_are_left_as_they_are(self):
        assert prepare_image(png(Image.new("RGB", (300, 200), "white"))).size == (300, 200)
