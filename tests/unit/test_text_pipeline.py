"""The whole CPU text step for one document, as the process pool runs it."""

from __future__ import annotations

import gzip
import json
import pickle
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from docpipe.activities.cpu.chunking import default_model_dir
from docpipe.activities.cpu.text_pipeline import (
    Chunk,
    PreparationError,
    PreparedText,
    TextOptions,
    chunks_from_json,
    chunks_to_json,
    prepare_text,
    warm_up,
)
from docpipe.errors import DocumentError
from docpipe.models import Stage

DOCS = Path(__file__).resolve().parents[2] / "testdata" / "docs"


@pytest.fixture(scope="module")
def options() -> TextOptions:
    return TextOptions(
        tokenizer_dir=str(default_model_dir()), chunk_tokens=128, chunk_overlap_tokens=16
    )


def read(name: str) -> bytes:
    return (DOCS / name).read_bytes()


def failure(raw: bytes, content_type: str, options: TextOptions) -> DocumentError:
    with pytest.raises(DocumentError) as err:
        prepare_text(raw, content_type, options)
    return err.value


def test_an_html_page_becomes_clean_chunked_text_with_statistics(options):
    result = prepare_text(read("article_search_engines.html"), "text/html", options)
    assert result.title == "How search engines read a web page"
    assert result.language == "en" and result.language_confidence > 0.9
    assert "analytics" not in result.text and "font-family" not in result.text
    assert result.char_count == len(result.text)
    assert result.word_count > 150
    assert result.chunks and all(c.text in result.text for c in result.chunks)
    assert result.token_count >= max(c.token_count for c in result.chunks)
    assert gzip.decompress(result.compressed).decode("utf-8") == result.text
    assert "crawler" in result.top_words and "the" not in result.top_words


def test_a_long_article_makes_several_chunks(options):
    result = prepare_text(read("long_article_lighthouses.txt"), "text/plain", options)
    assert len(result.chunks) >= 10
    assert result.title == "Keepers of the Light: A Short History of Lighthouses"
    assert list(result.top_words)[:2] == ["light", "lights"]


@pytest.mark.parametrize(
    ("name", "declared", "language"),
    [
        ("fr_cp1252_musee.txt", "text/plain", "fr"),
        ("nl_utf16_windmolens.txt", "", "nl"),
        ("ja_sakura.txt", "", "ja"),
        ("wandern_latin1.htm", "text/html", "de"),
        ("release-notes", "text/markdown", "en"),
    ],
)
def test_sample_documents_in_other_encodings_and_formats_are_read(
    options, name, declared, language
):
    result = prepare_text(read(name), declared, options)
    assert result.language == language
    assert "\ufffd" not in result.text


def test_the_declared_type_is_only_a_hint_and_the_content_decides(options):
    result = prepare_text(read("page_served_as_text.txt"), "text/plain", options)
    assert result.title == "Opening hours of the public library"
    assert "<p>" not in result.text


def test_the_text_is_normalized(options):
    result = prepare_text(read("unicode_normalisation.txt"), "text/plain", options)
    assert "\r" not in result.text and "\u00a0" not in result.text and "\u200b" not in result.text
    assert (
        "first line" in result.text and "flow" in result.text and "Temporal and 123" in result.text
    )
    assert "soft hyphen" in result.text and "\n\n\n" not in result.text


def test_a_hint_decides_the_language_of_a_very_short_text(options):
    result = prepare_text(b"Guten Tag", "text/plain", options, language_hint="de")
    assert (result.language, result.language_confidence) == ("de", 0.0)


def test_each_bad_input_fails_at_its_own_stage_with_a_reason(options):
    assert failure(b"", "text/plain", options).stage == Stage.VALIDATE
    empty = failure(read("whitespace-only.txt"), "text/plain", options)
    assert (empty.stage, empty.reason) == (
        Stage.VALIDATE,
        "document is empty: it contains only whitespace",
    )
    binary = failure(read("binary-posing-as-text.txt"), "text/plain", options)
    assert binary.stage == Stage.EXTRACT
    assert binary.reason.startswith("unsupported content type application/octet-stream")
    pdf = failure(b"%PDF-1.4\n...", "application/pdf", options)
    assert pdf.stage == Stage.EXTRACT and pdf.reason.startswith("corrupt PDF")


def test_limits_from_the_options_are_applied(options):
    small = TextOptions(tokenizer_dir=options.tokenizer_dir, max_chars=100)
    reason = failure(read("en_durable_workflows.txt"), "text/plain", small).reason
    assert reason.startswith("document is too long")


def test_a_truncating_tokenizer_fails_at_the_tokenize_stage(options, monkeypatch):
    from tokenizers import Tokenizer

    from docpipe.activities.cpu import text_pipeline

    # load_tokenizer() switches truncation off; should a truncating tokenizer get
    # through anyway, the document must fail rather than silently lose text.
    truncating = Tokenizer.from_file(str(default_model_dir() / "tokenizer.json"))
    truncating.no_padding()
    truncating.enable_truncation(max_length=8)
    monkeypatch.setattr(text_pipeline, "load_tokenizer", lambda _directory: truncating)

    err = failure(read("en_durable_workflows.txt"), "text/plain", options)
    assert err.stage == Stage.TOKENIZE
    assert "truncated" in err.reason


def test_results_and_options_survive_pickling_for_the_process_pool(options):
    result = prepare_text(read("guide_backups.md"), "text/markdown", options)
    assert pickle.loads(pickle.dumps(result)) == result
    assert pickle.loads(pickle.dumps(options)) == options


def test_prepare_text_runs_in_a_spawned_process_pool(options):
    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=get_context("spawn"),
        initializer=warm_up,
        initargs=(options.tokenizer_dir,),
    ) as pool:
        result = pool.submit(prepare_text, read("de_fahrrad_stadt.txt"), "", options).result(
            timeout=60
        )
    assert isinstance(result, PreparedText)
    assert result.language == "de"


def test_chunks_round_trip_through_the_object_store_json_format():
    chunks = [Chunk(index=0, text="Grüße aus 東京", token_count=7, char_start=0, char_end=12)]
    data = chunks_to_json(chunks)
    assert json.loads(data.decode("utf-8")) == [
        {"index": 0, "text": "Grüße aus 東京", "token_count": 7, "char_start": 0, "char_end": 12}
    ]
    assert chunks_from_json(data) == chunks


def test_identical_input_gives_identical_output(options):
    raw = read("handbook_nested.html")
    assert prepare_text(raw, "text/html", options) == prepare_text(raw, "text/html", options)


def test_the_file_name_is_a_hint_to_the_sniffer_and_the_sniffed_type_is_returned(options):
    note = b"# Harbour log\n\nThe tide turned at noon and the boats came back in.\n" * 3
    assert prepare_text(note, "", options).content_type == "text/plain"
    as_markdown = prepare_text(note, "", options, filename="/data/harbour.md")
    assert as_markdown.content_type == "text/markdown"
    assert as_markdown.title == "Harbour log"


def test_a_failure_says_what_the_bytes_turned_out_to_be(options):
    executable = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8
    with pytest.raises(PreparationError) as err:
        prepare_text(executable, "text/plain", options, filename="notes.txt")
    assert err.value.stage == Stage.EXTRACT
    assert err.value.content_type == "application/octet-stream"
    again = pickle.loads(pickle.dumps(err.value))  # back from the process pool
    assert (again.stage, again.reason, again.content_type) == (
        err.value.stage,
        err.value.reason,
        err.value.content_type,
    )


def test_a_text_over_the_limit_is_refused_before_it_is_normalized(options):
    small = TextOptions(tokenizer_dir=options.tokenizer_dir, max_chars=1000)
    err = failure(b"lighthouse " * 200, "text/plain", small)
    assert err.stage == Stage.VALIDATE
    assert err.reason == ("document is too long: 2,200 characters extracted, the limit is 1,000")
