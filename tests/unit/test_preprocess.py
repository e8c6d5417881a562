"""Normalisation and language detection."""

from __future__ import annotations

import pytest

from docpipe.activities.cpu.preprocess import detect_language, normalize_text, preprocess_text

PARAGRAPHS = {
    "en": (
        "A durable workflow engine records every step a process takes, so that another machine "
        "can replay the history and continue exactly where the first one stopped."
    ),
    "de": (
        "In vielen europäischen Städten hat sich das Fahrrad in den letzten Jahren vom "
        "Freizeitgerät zum ernsthaften Verkehrsmittel entwickelt."
    ),
    "fr": (
        "Chaque matin, bien avant le lever du soleil, des milliers de boulangers allument leur "
        "four, et le pain que l'on achète à sept heures a été façonné dans la nuit."
    ),
    "es": (
        "En azoteas, patios de colegios y solares abandonados, cada vez más vecinos cultivan "
        "tomates, lechugas y hierbas aromáticas en pequeños huertos urbanos."
    ),
    "ja": (
        "日本では、春になると各地で桜が咲き始めます。多くの人が公園や川沿いに集まり、"
        "友人や家族と一緒に花見を楽しみます。"
    ),
}


class TestNormalisation:
    @pytest.mark.parametrize(
        ("raw", "normalized"),
        [
            pytest.param("ﬁne ﬂow", "fine flow", id="nfkc-ligatures-become-plain-letters"),
            pytest.param("ＡＢＣ１２３", "ABC123", id="nfkc-full-width-becomes-plain"),
            pytest.param("™", "TM", id="nfkc-symbols-are-spelt-out"),
            pytest.param(
                "a\x00b\x07c\x1bd\x7fe\x9f",
                "abcde",
                id="nul-bytes-and-control-characters-are-removed",
            ),
            pytest.param(
                "hy\u00adphen zero\u200bwidth bom\ufeff",
                "hyphen zerowidth bom",
                id="invisible-word-splitters-are-removed",
            ),
            pytest.param(
                "👩\u200d💻 می\u200cخواهم",
                "👩\u200d💻 می\u200cخواهم",
                id="joiners-that-scripts-and-emoji-need-are-kept",
            ),
            pytest.param(
                "a\r\nb\rc\u2028d\x85e",
                "a\nb\nc\nd\ne",
                id="newlines-are-normalized-to-line-feeds",
            ),
            pytest.param(
                "a  \t b\u00a0\u00a0c\u2003d",
                "a b c d",
                id="runs-of-spaces-and-tabs-collapse-to-one-space",
            ),
            pytest.param(
                "  title  \n\n\n\n   body line \n\t\n\n  last\t",
                "title\n\nbody line\n\nlast",
                id="lines-are-stripped-and-blank-line-runs-collapse-to-one",
            ),
        ],
    )
    def test_normalization(self, raw, normalized):
        assert normalize_text(raw) == normalized

    def test_lone_surrogates_are_dropped_so_the_text_can_be_utf8_encoded(self):
        assert normalize_text("ok\ud800ay").encode("utf-8") == b"okay"

    def test_whitespace_only_text_normalizes_to_empty(self):
        assert normalize_text(" \t\r\n \u00a0\n") == ""

    def test_normalization_is_idempotent(self):
        once = normalize_text(" ﬁ \r\n\r\n\r\n x\x00 ")
        assert normalize_text(once) == once


class TestLanguageDetection:
    @pytest.mark.parametrize("language", sorted(PARAGRAPHS))
    def test_language_of_a_paragraph_is_detected(self, language):
        result = preprocess_text(PARAGRAPHS[language])
        assert result.language == language
        assert 0.5 < result.language_confidence <= 1.0

    def test_too_short_text_is_undetermined(self):
        assert detect_language("Hello there") == ("und", 0.0)

    def test_too_short_text_takes_a_valid_hint(self):
        assert detect_language("Hallo Welt", "de") == ("de", 0.0)

    def test_hint_with_region_is_reduced_to_the_language(self):
        assert detect_language("Olá mundo", "pt-BR")[0] == "pt"

    def test_invalid_hint_is_ignored(self):
        assert detect_language("Hallo Welt", "german") == ("und", 0.0)
        assert detect_language("Hallo Welt", "d") == ("und", 0.0)

    def test_a_confident_detection_wins_over_a_wrong_hint(self):
        language, confidence = detect_language(PARAGRAPHS["de"], "en")
        assert language == "de" and confidence > 0.9

    def test_text_without_letters_is_undetermined(self):
        assert detect_language("12345 67890 ---- !!!! 2024-01-01 3.14159 42") == ("und", 0.0)

    def test_result_is_always_a_two_letter_code_or_und(self):
        for text in [
            *PARAGRAPHS.values(),
            "廣東話係一種好靚嘅語言，我哋日日都講，你識唔識講呀？好多人都識講。",
        ]:
            language = detect_language(text)[0]
            assert language == "und" or (len(language) == 2 and language.isalpha())

    def test_long_text_is_detected_quickly_from_samples(self):
        import time

        text = (PARAGRAPHS["fr"] + "\n\n") * 20_000  # ~3.5 MB
        started = time.perf_counter()
        assert detect_language(text)[0] == "fr"
        assert time.perf_counter() - started < 2.0
