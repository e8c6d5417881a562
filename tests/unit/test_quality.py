"""The quality score separates readable prose from debris, and says why."""

from docpipe.activities.cpu.quality import quality_score

PROSE = (
    "The harbour office publishes tide tables every morning. Fishermen read them before "
    "they leave, and the bakery near the pier opens early to sell them bread. In winter "
    "the ferry runs twice a day, weather permitting, and the lighthouse is open on Sundays."
)


def test_prose_scores_high():
    assert quality_score(PROSE, language_confidence=0.99).score > 0.8


def test_ocr_noise_and_number_tables_score_low_and_say_why():
    noise = "l1 |} 0O0 ;; ~~ 4f9 %% ## 12 34 56 ]] [[ xx yy 8 9 0 11 22 33 44 ||| ///"
    result = quality_score(noise, language_confidence=0.2)
    assert result.score < 0.4
    assert result.parts["letters"] < 0.5


def test_repeated_boilerplate_loses_diversity():
    menu = "\n".join(["Home", "About", "Contact", "Login"] * 30)
    result = quality_score(menu, language_confidence=0.5)
    assert result.parts["diversity"] < 0.2
    assert result.parts["lines"] == 0.0
    assert result.score < quality_score(PROSE).score


def test_japanese_is_not_penalised_for_having_no_spaces():
    text = "桜の季節になると、多くの人が公園を訪れます。夜桜も人気があり、ライトアップされた桜はとても美しいです。"
    assert quality_score(text, language_confidence=0.99).score > 0.75


def test_empty_text_scores_zero():
    assert quality_score("   \n ").score == 0.0
