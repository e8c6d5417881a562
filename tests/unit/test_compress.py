"""The gzip artifact and word statistics."""

from __future__ import annotations

import gzip

from docpipe.activities.cpu.compress import compress_document, word_frequencies
from docpipe.activities.cpu.stopwords import STOP_WORDS, stop_words

TEXT = "Lighthouses guide ships. A lighthouse keeper keeps the light burning.\n" * 50


class TestCompression:
    def test_compressed_text_round_trips(self):
        result = compress_document(TEXT + "Grüße, 東京 ✓")
        assert gzip.decompress(result.data).decode("utf-8") == TEXT + "Grüße, 東京 ✓"

    def test_identical_text_gives_identical_bytes(self):
        assert compress_document(TEXT).data == compress_document(TEXT).data

    def test_gzip_header_carries_no_timestamp(self):
        data = compress_document(TEXT).data
        assert data[:2] == b"\x1f\x8b"
        assert data[4:8] == b"\x00\x00\x00\x00"  # MTIME

    def test_sizes_and_ratio_are_reported(self):
        result = compress_document(TEXT)
        assert result.original_bytes == len(TEXT.encode("utf-8"))
        assert result.compressed_bytes == len(result.data)
        assert result.ratio == result.original_bytes / result.compressed_bytes
        assert result.ratio > 10  # very repetitive text

    def test_empty_text_compresses_to_a_valid_empty_gzip(self):
        result = compress_document("")
        assert gzip.decompress(result.data) == b""
        assert result.original_bytes == 0 and result.ratio == 0.0


class TestWordFrequencies:
    def test_most_frequent_words_come_first_with_their_counts(self):
        words = word_frequencies("apple banana apple cherry apple banana", top_n=2)
        assert words == {"apple": 3, "banana": 2}
        assert list(words) == ["apple", "banana"]

    def test_ties_are_broken_alphabetically(self):
        assert list(word_frequencies("pear fig kiwi fig kiwi pear")) == ["fig", "kiwi", "pear"]

    def test_words_are_casefolded(self):
        assert word_frequencies("Straße STRASSE strasse Light LIGHT") == {"strasse": 3, "light": 2}

    def test_one_character_words_and_numbers_are_dropped(self):
        assert word_frequencies("a b c 2024 42 3.14 x1 covid19") == {"covid19": 1, "x1": 1}

    def test_inner_apostrophes_and_hyphens_stay_inside_words(self):
        words = word_frequencies(
            "the keeper's log; a well-known rock-lighthouse; don't", language="und"
        )
        assert {"keeper's", "well-known", "rock-lighthouse", "don't"} <= set(words)

    def test_english_stop_words_are_dropped_for_english(self):
        words = word_frequencies(TEXT, language="en")
        assert "the" not in words
        assert words["lighthouses"] == 50 and words["keeper"] == 50

    def test_english_possessives_count_as_the_word(self):
        assert word_frequencies("Smeaton's tower. Smeaton built it.", language="en")["smeaton"] == 2

    def test_stop_words_are_only_dropped_for_the_matching_language(self):
        assert "the" in word_frequencies(TEXT, language="de")
        assert "the" in word_frequencies(TEXT, language="und")

    def test_german_stop_words(self):
        words = word_frequencies(
            "Der Hund und die Katze. Der Hund schläft, die Katze nicht.", language="de"
        )
        assert words == {"hund": 2, "katze": 2, "schläft": 1}

    def test_french_elisions_are_counted_as_the_word(self):
        words = word_frequencies("L'homme et l’homme qu'il voit. D'abord l'homme.", language="fr")
        assert words == {"homme": 3, "abord": 1, "voit": 1}

    def test_every_supported_language_has_a_stop_word_list(self):
        for language in ("en", "de", "fr", "es", "it", "pt", "nl"):
            assert 50 <= len(stop_words(language)) <= 200, language
        assert stop_words("ja") == frozenset()
        assert set(STOP_WORDS) == {"en", "de", "fr", "es", "it", "pt", "nl"}

    def test_japanese_words_are_runs_of_kanji_or_katakana(self):
        words = word_frequencies(
            "桜の季節です。桜前線のニュースを見ました。季節の花です。", language="ja"
        )
        assert words == {"季節": 2, "ニュース": 1, "桜前線": 1}

    def test_top_n_limits_the_result(self):
        assert len(word_frequencies(" ".join(f"word{i}" for i in range(100)), top_n=25)) == 25
        assert word_frequencies("some words here", top_n=0) == {}
