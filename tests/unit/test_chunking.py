"""Token-aware chunking with the embedding model's own tokenizer."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docpipe.activities.cpu.chunking import (
    TokenizationError,
    chunk_text,
    default_model_dir,
    load_tokenizer,
    tokenize_text,
)

LONG_ARTICLE = (
    Path(__file__).resolve().parents[2] / "testdata" / "docs" / "long_article_lighthouses.txt"
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(default_model_dir())


@pytest.fixture(scope="module")
def article() -> str:
    return LONG_ARTICLE.read_text(encoding="utf-8")


def tokens_with_specials(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=True).ids)


class TestTokenizer:
    def test_tokenizer_loads_without_torch_or_transformers(self):
        # In a fresh interpreter: other tests in this process may have imported torch.
        code = (
            "import sys\n"
            "from docpipe.activities.cpu.chunking import load_tokenizer\n"
            "load_tokenizer()\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

    def test_tokenizer_neither_pads_nor_truncates(self, tokenizer):
        assert tokenizer.padding is None
        assert tokenizer.truncation is None
        assert len(tokenizer.encode("word " * 1000, add_special_tokens=False).ids) == 1000

    def test_tokenizer_is_loaded_once_per_process(self, tokenizer):
        assert load_tokenizer(default_model_dir()) is tokenizer
        assert load_tokenizer(str(default_model_dir())) is tokenizer

    def test_a_directory_without_tokenizer_json_is_a_clear_error(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json"):
            load_tokenizer(tmp_path)


class TestChunks:
    def test_chunk_text_is_a_verbatim_slice_of_the_original(self, tokenizer, article):
        chunks = chunk_text(article, tokenizer, max_tokens=128, overlap_tokens=16)
        assert len(chunks) > 5
        for chunk in chunks:
            assert chunk.text == article[chunk.char_start : chunk.char_end]
            assert chunk.text == chunk.text.strip()

    def test_chunks_are_indexed_in_order_and_cover_the_whole_text(self, tokenizer, article):
        chunks = chunk_text(article, tokenizer, max_tokens=128, overlap_tokens=16)
        assert [c.index for c in chunks] == list(range(len(chunks)))
        assert chunks[0].char_start == 0
        assert chunks[-1].char_end == len(article.rstrip())
        for previous, current in itertools.pairwise(chunks):
            assert current.char_start <= previous.char_end  # no gap: every word is in a chunk
            assert current.char_start > previous.char_start

    def test_consecutive_chunks_overlap(self, tokenizer, article):
        chunks = chunk_text(article, tokenizer, max_tokens=128, overlap_tokens=16)
        for previous, current in itertools.pairwise(chunks):
            shared = article[current.char_start : previous.char_end]
            assert current.char_start < previous.char_end
            assert len(tokenizer.encode(shared, add_special_tokens=False).ids) >= 16

    def test_no_overlap_when_overlap_is_zero(self, tokenizer, article):
        chunks = chunk_text(article, tokenizer, max_tokens=128, overlap_tokens=0)
        for previous, current in itertools.pairwise(chunks):
            assert current.char_start >= previous.char_end

    @pytest.mark.parametrize(("max_tokens", "overlap"), [(256, 32), (128, 16), (32, 8), (16, 0)])
    def test_every_chunk_fits_the_model_including_cls_and_sep(
        self, tokenizer, article, max_tokens, overlap
    ):
        for chunk in chunk_text(article, tokenizer, max_tokens=max_tokens, overlap_tokens=overlap):
            assert chunk.token_count <= max_tokens - 2
            assert tokens_with_specials(tokenizer, chunk.text) <= max_tokens
            assert tokens_with_specials(tokenizer, chunk.text) == chunk.token_count + 2

    def test_chunks_end_at_a_sentence_end_when_one_is_near_the_window_end(self, tokenizer):
        text = " ".join(
            f"Sentence number {i} talks about lighthouses and keepers." for i in range(60)
        )
        chunks = chunk_text(text, tokenizer, max_tokens=64, overlap_tokens=8)
        assert len(chunks) > 5
        assert all(c.text.endswith("keepers.") for c in chunks)

    def test_chunks_prefer_a_paragraph_break_to_a_sentence_end(self, tokenizer):
        paragraph = "One short sentence here. Another short sentence there. A third one."
        text = "\n\n".join([paragraph] * 30)
        for chunk in chunk_text(text, tokenizer, max_tokens=64, overlap_tokens=8)[:-1]:
            assert text[chunk.char_end : chunk.char_end + 2] == "\n\n"

    def test_most_chunks_of_an_article_end_at_a_sentence_or_paragraph(self, tokenizer, article):
        chunks = chunk_text(article, tokenizer, max_tokens=128, overlap_tokens=16)
        at_boundary = [
            c
            for c in chunks
            if c.text.endswith((".", "?", "!")) or article[c.char_end : c.char_end + 1] == "\n"
        ]
        assert len(at_boundary) >= 0.7 * len(chunks)

    def test_chunks_do_not_end_in_the_middle_of_a_word(self, tokenizer):
        text = " ".join(["incomprehensibilities"] * 400)  # many tokens per word, no sentences
        for chunk in chunk_text(text, tokenizer, max_tokens=64, overlap_tokens=8):
            assert chunk.text.startswith("incomprehensibilities")
            assert chunk.text.endswith("incomprehensibilities")

    def test_chunking_is_deterministic(self, tokenizer, article):
        first = chunk_text(article, tokenizer, max_tokens=96, overlap_tokens=12)
        second = chunk_text(article, tokenizer, max_tokens=96, overlap_tokens=12)
        assert first == second

    def test_short_text_is_one_chunk(self, tokenizer):
        chunks = chunk_text("A single short sentence.", tokenizer)
        assert len(chunks) == 1
        assert chunks[0].text == "A single short sentence."
        assert chunks[0].token_count == 5
        assert (chunks[0].char_start, chunks[0].char_end) == (0, 24)

    def test_empty_and_blank_text_give_no_chunks(self, tokenizer):
        assert chunk_text("", tokenizer) == []
        assert chunk_text(" \n\t ", tokenizer) == []

    def test_japanese_text_without_spaces_is_chunked(self, tokenizer):
        text = "日本では、春になると各地で桜が咲き始めます。" * 40
        chunks = chunk_text(text, tokenizer, max_tokens=64, overlap_tokens=8)
        assert len(chunks) > 3
        assert all(c.text == text[c.char_start : c.char_end] for c in chunks)
        assert all(tokens_with_specials(tokenizer, c.text) <= 64 for c in chunks)

    def test_total_token_count_counts_each_token_once(self, tokenizer, article):
        result = tokenize_text(article, tokenizer, max_tokens=128, overlap_tokens=16)
        assert result.token_count == len(tokenizer.encode(article, add_special_tokens=False).ids)
        assert sum(c.token_count for c in result.chunks) > result.token_count  # overlap

    @pytest.mark.parametrize(("max_tokens", "overlap"), [(34, 32), (34, 40), (2, 0), (64, -1)])
    def test_impossible_sizes_are_rejected(self, tokenizer, max_tokens, overlap):
        with pytest.raises(ValueError):
            chunk_text("some text", tokenizer, max_tokens=max_tokens, overlap_tokens=overlap)

    def test_a_truncating_tokenizer_is_a_tokenization_error(self):
        from tokenizers import Tokenizer

        truncating = Tokenizer.from_file(str(default_model_dir() / "tokenizer.json"))
        truncating.no_padding()
        truncating.enable_truncation(max_length=16)
        with pytest.raises(TokenizationError, match="truncated"):
            chunk_text("word " * 100, truncating)

    def test_a_long_text_is_chunked_in_reasonable_time(self, tokenizer, article):
        text = "\n\n".join([article] * 85)  # ~1 MB
        started = time.perf_counter()
        result = tokenize_text(text, tokenizer)
        elapsed = time.perf_counter() - started
        assert len(result.chunks) > 85 * 10
        assert result.chunks[-1].char_end == len(text.rstrip())
        assert elapsed < 10.0, f"chunking 1 MB took {elapsed:.1f} s"
