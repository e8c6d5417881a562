"""All CPU text steps for one document, as one call for the process pool.

One call per document keeps the pickled traffic to the pool small (raw bytes
in, results out) and loads nothing twice: the tokenizer and the language
model are cached per pool process. Every way a document can be bad surfaces
as a :class:`DocumentError` carrying the stage where it was found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from docpipe.activities.cpu.chunking import TokenizationError, load_tokenizer, tokenize_text
from docpipe.activities.cpu.compress import compress_document, word_frequencies
from docpipe.activities.cpu.extract import extract_text_from_document, sniff_content_type
from docpipe.activities.cpu.preprocess import detect_language, normalize_text, preprocess_text
from docpipe.activities.cpu.quality import quality_score
from docpipe.activities.cpu.validate import validate_document_structure
from docpipe.chunks import Chunk, chunks_from_json, chunks_to_json
from docpipe.errors import DocumentError
from docpipe.models import Stage

__all__ = [
    "Chunk",
    "PreparationError",
    "PreparedText",
    "TextOptions",
    "chunks_from_json",
    "chunks_to_json",
    "prepare_text",
    "warm_up",
]


@dataclass
class TextOptions:
    tokenizer_dir: str
    """Model directory holding ``tokenizer.json`` (the embedding model's)."""
    chunk_tokens: int = 256
    """Chunk size limit in tokens, including the model's [CLS] and [SEP]."""
    chunk_overlap_tokens: int = 32
    min_chars: int = 1
    max_chars: int = 5_000_000
    top_words: int = 25


@dataclass
class PreparedText:
    title: str
    text: str
    language: str
    language_confidence: float
    char_count: int
    word_count: int
    token_count: int
    """Content tokens of the whole text (special tokens and overlap not counted)."""
    chunks: list[Chunk]
    compressed: bytes
    """gzip of the UTF-8 text, reproducible byte for byte."""
    top_words: dict[str, int] = field(default_factory=dict)
    quality: float = 0.0
    """Postprocessing quality score, 0..1 (see quality.py)."""
    content_type: str = ""
    """What the bytes turned out to be (sniffed), whatever was declared."""


class PreparationError(DocumentError):
    """A :class:`DocumentError` that also says what the document turned out to be,
    so a failed document's record shows the sniffed type (a ``.txt`` that is an
    executable is recorded as ``application/octet-stream``, not ``text/plain``)."""

    def __init__(self, stage: Stage, reason: str, content_type: str = "") -> None:
        super().__init__(stage, reason)
        self.content_type = content_type

    def __reduce__(self) -> tuple[type[PreparationError], tuple[Stage, str, str]]:  # type: ignore[override]
        # Raised inside the CPU worker's process pool: must survive pickling back.
        return (type(self), (self.stage, self.reason, self.content_type))


def prepare_text(
    raw: bytes,
    content_type: str,
    options: TextOptions,
    language_hint: str = "",
    filename: str = "",
) -> PreparedText:
    """extract -> preprocess -> validate -> chunk -> compress + word statistics.

    ``content_type`` is sniffed again from the bytes (with the given type and
    ``filename``, a path or URL, as hints), so a mislabelled document is still
    read as what it is; the result and any :class:`PreparationError` carry the
    sniffed type.
    """
    sniffed = sniff_content_type(raw, declared=content_type, filename=filename)
    try:
        prepared = _prepare(raw, sniffed, options, language_hint)
    except DocumentError as err:
        raise PreparationError(err.stage, err.reason, sniffed) from err
    prepared.content_type = sniffed
    return prepared


def _prepare(
    raw: bytes, content_type: str, options: TextOptions, language_hint: str
) -> PreparedText:
    try:
        extracted = extract_text_from_document(raw, content_type, max_chars=options.max_chars)
    except (UnicodeError, ValueError) as exc:  # a parser choking on malformed input
        raise DocumentError(Stage.EXTRACT, f"could not extract text: {exc}") from exc
    # Before normalizing: the limit is on the work one document may cause, and
    # normalizing a 20 MB line costs seconds and ~0.5 GB before validate sees it.
    if len(extracted.text) > options.max_chars:
        raise DocumentError(
            Stage.VALIDATE,
            f"document is too long: {len(extracted.text):,} characters extracted, "
            f"the limit is {options.max_chars:,}",
        )

    try:
        pre = preprocess_text(extracted.text, language_hint)
    except (UnicodeError, ValueError) as exc:
        raise DocumentError(Stage.PREPROCESS, f"could not normalise text: {exc}") from exc

    if not pre.text and extracted.text:
        raise DocumentError(Stage.VALIDATE, "document is empty: it contains only whitespace")
    stats = validate_document_structure(
        pre.text, min_chars=options.min_chars, max_chars=options.max_chars
    )

    tokenizer = load_tokenizer(options.tokenizer_dir)  # a missing model is not the document's fault
    try:
        chunked = tokenize_text(
            pre.text,
            tokenizer,
            max_tokens=options.chunk_tokens,
            overlap_tokens=options.chunk_overlap_tokens,
        )
    except TokenizationError as exc:
        raise DocumentError(Stage.TOKENIZE, str(exc)) from exc
    if not chunked.chunks:
        raise DocumentError(Stage.TOKENIZE, "the text produced no tokens for the embedding model")

    compressed = compress_document(pre.text)
    return PreparedText(
        title=normalize_text(extracted.title).replace("\n", " "),
        text=pre.text,
        language=pre.language,
        language_confidence=pre.language_confidence,
        char_count=stats.char_count,
        word_count=stats.word_count,
        token_count=chunked.token_count,
        chunks=chunked.chunks,
        compressed=compressed.data,
        top_words=word_frequencies(pre.text, language=pre.language, top_n=options.top_words),
        quality=quality_score(pre.text, language_confidence=pre.language_confidence).score,
    )


def warm_up(tokenizer_dir: str) -> None:
    """Process-pool initializer: load the tokenizer and the language model now,
    so the first document in each process does not pay for them. The pool already
    runs one document per process, so the tokenizer's own threads would only
    oversubscribe the cores."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    load_tokenizer(tokenizer_dir)
    detect_language("Loading the language identification model once per process.")
