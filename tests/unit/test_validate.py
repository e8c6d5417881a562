"""Document validation: what is rejected, and with which reason."""

from __future__ import annotations

import random

import pytest

from docpipe.activities.cpu.validate import validate_document_structure
from docpipe.errors import DocumentError
from docpipe.models import Stage

PROSE = (
    "The lighthouse keeper trimmed the wick and wound the clockwork before dusk.\nThen he waited."
)


def rejection(text: str, **limits: int) -> str:
    with pytest.raises(DocumentError) as err:
        validate_document_structure(text, **limits)
    assert err.value.stage == Stage.VALIDATE
    return err.value.reason


def test_good_text_passes_with_its_statistics():
    stats = validate_document_structure(PROSE)
    assert stats.char_count == len(PROSE)
    assert stats.word_count == 15
    assert stats.line_count == 2
    assert 0.75 < stats.letter_ratio <= 1.0


def test_empty_text_is_rejected_as_empty():
    assert rejection("") == "document is empty: no text was extracted"


def test_whitespace_only_text_is_rejected_as_empty():
    assert rejection(" \n\t \n").startswith("document is empty")


def test_text_shorter_than_min_chars_is_rejected_with_the_numbers():
    assert (
        rejection("Too short.", min_chars=50)
        == "document is too short: 10 characters, at least 50 required"
    )


def test_text_longer_than_max_chars_is_rejected_with_the_numbers():
    assert (
        rejection("x" * 1001, max_chars=1000)
        == "document is too long: 1,001 characters, the limit is 1,000"
    )


def test_text_exactly_at_the_limits_passes():
    validate_document_structure("word " * 20, min_chars=100, max_chars=100)


def test_text_without_any_words_is_rejected():
    assert rejection("... --- !!! ??? *** ///").startswith("document contains no words")


def test_mostly_symbols_and_digits_are_rejected_as_not_text():
    garbage = (
        "".join(random.Random(3).choice("0123456789#$%&*+-=/<>[]{}|") for _ in range(400)) + " ok"
    )
    reason = rejection(garbage)
    assert reason.startswith("document does not look like text")
    assert "letters" in reason


def test_binary_garbage_of_control_bytes_and_symbols_is_rejected():
    rng = random.Random(11)
    garbage = bytes(rng.randrange(0, 0x40) for _ in range(3000)).decode("ascii") + " end"
    assert rejection(garbage).startswith("document does not look like text")


def test_text_full_of_replacement_characters_is_rejected_as_wrongly_decoded():
    text = ("caf\ufffd na\ufffdve \ufffd\ufffd " * 30).strip()
    assert rejection(text).startswith("document looks wrongly decoded")


def test_a_short_table_of_numbers_is_allowed():
    stats = validate_document_structure("2021 2022 2023\n10.5 11.2 12.9")
    assert stats.word_count == 9


def test_japanese_counts_one_word_per_character():
    assert validate_document_structure("桜が咲く").word_count == 4


def test_words_with_apostrophes_and_accents_count_as_words():
    assert validate_document_structure("L'été est déjà là").word_count == 5
