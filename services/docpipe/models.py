"""Small dataclasses passed between the workflow and its activities.

Long because every payload dataclass is here, one job and one result per step,
so the wire contract reads in one place.

Payloads stay small (Temporal's limit is a few MB): bytes and text never
travel here, only object-store keys and per-document facts (claim check).
Every activity takes a batch and returns one result per document, so a bad
document fails alone and the batch goes on: each step's ``*Result`` holds its
``succeeded`` and ``failed`` documents.

Field names are the payloads' JSON keys, and histories of running workflows hold
them: renaming a field changes the wire format (class names are not on the wire).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from docpipe import queues


class Stage(StrEnum):
    """Where in the pipeline a document failed."""

    CSV = "csv"
    DOWNLOAD = "download"
    EXTRACT = "extract"
    OCR = "ocr"
    PREPROCESS = "preprocess"
    VALIDATE = "validate"
    TOKENIZE = "tokenize"
    EMBED = "embed"
    SUMMARIZE = "summarize"
    STORE = "store"
    TIMEOUT = "timeout"


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class DocumentRef:
    """One CSV row: what to fetch and the hints that came with it."""

    document_id: str
    source: str
    row_number: int
    title: str = ""
    declared_type: str = ""
    language_hint: str = ""
    tags: list[str] = field(default_factory=list)
    invalid_reason: str | None = None
    """Set when the row itself is unusable; the document fails at the CSV stage."""


@dataclass
class DocumentFailure:
    document_id: str
    stage: Stage
    reason: str
    content_type: str = ""
    """What the bytes turned out to be, when the failure came after sniffing them."""


@dataclass
class FetchedDocument:
    """The raw bytes are in the object store under ``raw_key``."""

    document_id: str
    raw_key: str
    size_bytes: int
    content_sha256: str
    content_type: str
    """As declared (CSV column or server header), or "": the CPU step sniffs the bytes."""
    final_url: str = ""
    filename: str = ""
    """The name the source gave (Content-Disposition, else the URL's last segment)."""


@dataclass
class FetchResult:
    succeeded: list[FetchedDocument] = field(default_factory=list)
    failed: list[DocumentFailure] = field(default_factory=list)


@dataclass
class TextJob:
    """What the CPU step needs to turn raw bytes into clean, chunked text."""

    document_id: str
    raw_key: str
    content_type: str
    source: str = ""
    language_hint: str = ""
    filename: str = ""
    """The source's file name, a hint for the sniffer (.md, .html); else ``source`` is."""


@dataclass
class PreparedDocument:
    """Clean text, chunks and gzip artifact are in the object store."""

    document_id: str
    text_key: str
    chunks_key: str
    compressed_key: str
    title: str
    language: str
    language_confidence: float
    char_count: int
    word_count: int
    token_count: int
    chunk_count: int
    compressed_bytes: int
    top_words: dict[str, int] = field(default_factory=dict)
    quality_score: float = 0.0
    content_type: str = ""
    """The sniffed type (from the bytes, with the declared type and file name as hints)."""


@dataclass
class OcrJob:
    """Page images to read: rendered PDF pages, or the raw image itself."""

    document_id: str
    page_keys: list[str]
    content_type: str
    is_image: bool


@dataclass
class PrepareResult:
    succeeded: list[PreparedDocument] = field(default_factory=list)
    failed: list[DocumentFailure] = field(default_factory=list)
    needs_ocr: list[OcrJob] = field(default_factory=list)
    """Images and scanned PDFs: their text must come from perform_ocr first."""


@dataclass
class OcrText:
    """The recognised text is in the object store under ``text_key``."""

    document_id: str
    text_key: str
    pages: int
    confidence: float
    image: dict[str, Any] | None = None
    """analyze_images: size, format, perceptual hash, colours, EXIF (images only)."""
    chars: int = -1
    """Characters of recognised text; 0: the pages hold no text (-1: not counted)."""


@dataclass
class OcrResult:
    succeeded: list[OcrText] = field(default_factory=list)
    failed: list[DocumentFailure] = field(default_factory=list)


@dataclass
class EmbeddingJob:
    document_id: str
    chunks_key: str
    """The batch's chunk bundle (or, from older runs, the document's own chunks)."""
    chunk_count: int
    previous_embeddings_key: str = ""
    """Where an earlier run stored this document's vectors: unchanged chunks are reused
    from there instead of embedded again. Empty for a document never stored."""


@dataclass
class EmbeddedDocument:
    """Vectors are in the object store under ``embeddings_key`` (float32 .npy)."""

    document_id: str
    embeddings_key: str
    chunks_key: str
    chunk_count: int
    dimensions: int
    model: str
    label: str = ""
    """Zero-shot class of the whole document (classify_document)."""
    label_score: float = 0.0


@dataclass
class EmbedResult:
    succeeded: list[EmbeddedDocument] = field(default_factory=list)
    failed: list[DocumentFailure] = field(default_factory=list)


@dataclass
class SummaryJob:
    document_id: str
    text_key: str
    embeddings_key: str = ""
    """The chunk vectors generate_embeddings stored: an extractive summary ranks with
    them instead of embedding the document a second time."""
    chunks_key: str = ""


@dataclass
class DocumentSummary:
    document_id: str
    summary_key: str
    summary: str
    engine: str


@dataclass
class SummaryResult:
    succeeded: list[DocumentSummary] = field(default_factory=list)
    failed: list[DocumentFailure] = field(default_factory=list)


@dataclass
class VectorJob:
    document_id: str
    embeddings_key: str
    chunks_key: str
    chunk_count: int
    source: str
    title: str
    language: str


@dataclass
class StoreVectorsResult:
    stored: list[str] = field(default_factory=list)
    """Document ids whose vectors are now in the vector store. The field keeps this
    name because it is the payload's JSON key: histories of running workflows hold
    it, and a renamed field would read them as nothing stored."""
    failed: list[DocumentFailure] = field(default_factory=list)

    @property
    def succeeded(self) -> list[str]:
        """``stored`` under the name every other step result uses."""
        return self.stored


@dataclass
class DocumentOutcome:
    """The metadata row of one document: what happened and where its data is."""

    document_id: str
    source: str
    row_number: int
    status: Status
    run_id: str
    title: str = ""
    tags: list[str] = field(default_factory=list)
    failure_stage: Stage | None = None
    failure_reason: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    content_sha256: str | None = None
    language: str | None = None
    char_count: int | None = None
    word_count: int | None = None
    token_count: int | None = None
    chunk_count: int | None = None
    compressed_bytes: int | None = None
    raw_key: str | None = None
    text_key: str | None = None
    chunks_key: str | None = None
    compressed_key: str | None = None
    embeddings_key: str | None = None
    embedding_model: str | None = None
    top_words: dict[str, int] = field(default_factory=dict)
    label: str | None = None
    label_score: float | None = None
    summary: str | None = None
    quality_score: float | None = None
    duplicate_of: str | None = None
    """Another document with byte-identical content that was processed before."""
    started_at: datetime | None = None
    """When the batch workflow that produced this outcome started (end-to-end latency)."""
    ocr_pages: int | None = None
    ocr_confidence: float | None = None
    image_info: dict[str, Any] | None = None
    near_duplicate_of: str | None = None
    """An image stored before (or earlier in the batch) that is the same picture:
    resized, recompressed or lightly edited (perceptual hash within a few bits)."""
    near_duplicate_distance: int | None = None
    """How many of the 64 perceptual-hash bits differ from ``near_duplicate_of``."""
    has_text: bool | None = None
    """False for a document stored without text (an image or scanned page with none
    to read): it succeeds with its image analysis and zero chunks."""


@dataclass
class TaskQueues:
    """Queue names travel with the input: workflows must not read the environment."""

    cpu: str = queues.CPU_QUEUE
    gpu: str = queues.GPU_QUEUE
    io: str = queues.IO_QUEUE
    workflow: str = queues.WORKFLOW_QUEUE


@dataclass
class StepTimeouts:
    """How long one attempt of a step may *run*, and how often it must show life.

    Time spent waiting in a task queue never counts: a busy queue is not a stuck
    step. An attempt gets its step's base budget plus an allowance for the work it
    carries (chunks to embed, pages to read, megabytes to extract), so a batch of
    large documents is not mistaken for a hung one. A worker that dies is noticed
    within ``heartbeat`` seconds; an attempt over its budget is retried.
    """

    io_start_to_close: float = 300
    cpu_start_to_close: float = 300
    gpu_start_to_close: float = 300
    heartbeat: float = 60
    per_chunk: float = 0.5
    """Extra seconds per chunk (embeddings, summaries): ~10x a CPU's cost per chunk."""
    per_page: float = 30.0
    """Extra seconds per page image to OCR (a CPU reads one in ~3 s under load)."""
    per_megabyte: float = 10.0
    """Extra seconds per MB of raw input to extract and prepare."""
    metadata_grace: float = 60
    """With an explicit deadline: extra time after it to record outcomes."""


@dataclass
class PipelineOptions:
    queues: TaskQueues = field(default_factory=TaskQueues)
    timeouts: StepTimeouts = field(default_factory=StepTimeouts)
    deadline_seconds: float | None = None
    """An explicit end-to-end deadline (``--deadline``), off by default: documents not
    finished this long after the batch started fail with stage 'timeout', queue
    waits included. Without it nothing fails for waiting its turn."""
    summarize: bool = False
    """Run run_llm_inference (a summary per document) on the GPU queue."""
    webhook_url: str = ""
    """If set, each document's result is POSTed here (signed with the io worker's secret)."""
    image_near_duplicate_bits: int = 6
    """Perceptual-hash bits (of 64) two images may differ in and be near duplicates; 0-7."""


@dataclass
class PipelineInput:
    """One batch of documents; the workflow runs each step once for the batch."""

    run_id: str
    documents: list[DocumentRef]
    options: PipelineOptions = field(default_factory=PipelineOptions)


@dataclass
class PipelineResult:
    run_id: str
    outcomes: list[DocumentOutcome]

    @property
    def failed(self) -> list[DocumentOutcome]:
        return [o for o in self.outcomes if o.status == Status.FAILED]


@dataclass
class MetadataQuery:
    """query_metadata_database: which of these contents are already stored, and as what."""

    content_sha256: dict[str, str] = field(default_factory=dict)
    """document id -> sha256 of its raw bytes."""
    image_phash: dict[str, str] = field(default_factory=dict)
    """document id -> perceptual hash of its image: look for near-duplicate images."""
    max_image_distance: int = 6
    """Hash bits two images may differ in and still be the same picture (at most 7)."""
    stored_vectors: list[str] = field(default_factory=list)
    """Document ids: where has an earlier run stored their vectors?"""


@dataclass
class SimilarImage:
    document_id: str
    distance: int
    """Perceptual-hash bits that differ (0: the same picture)."""


@dataclass
class MetadataAnswer:
    duplicate_of: dict[str, str] = field(default_factory=dict)
    """document id -> an earlier document with byte-identical content."""
    similar_image: dict[str, SimilarImage] = field(default_factory=dict)
    """document id -> the closest stored image within the distance (earliest on ties)."""
    embeddings_key: dict[str, str] = field(default_factory=dict)
    """document id -> the vectors an earlier run stored (documents stored before only)."""


@dataclass
class WebhookRequest:
    url: str
    outcomes: list[DocumentOutcome]


@dataclass
class CsvPageRequest:
    """Read rows [offset, offset + limit) of a CSV in the object store or on disk."""

    location: str
    offset: int = 0
    limit: int = 1000
    base_dir: str | None = None
    """The folder plain paths in the CSV are relative to, when the file was copied
    from elsewhere (``docpipe ingest`` uploads a local CSV: its rows stay relative to
    the folder it came from, as ``docpipe start`` reads them)."""


@dataclass
class CsvPage:
    documents: list[DocumentRef]
    next_offset: int | None
    """None when the file has no more rows."""
    total: int | None = None
    """Documents in the whole file (so a progress bar knows its end early)."""


@dataclass
class IngestInput:
    """Server-side form of `docpipe start`: a CSV read by the io worker, fanned out."""

    location: str
    run_id: str
    batch_size: int = 10
    max_batches_in_flight: int = 20
    page_size: int = 500
    pages_per_run: int = 20
    """Continue-as-new after this many pages, so history stays small for huge CSVs."""
    options: PipelineOptions = field(default_factory=PipelineOptions)
    offset: int = 0
    batches_started: int = 0
    summary: IngestSummary | None = None
    base_dir: str | None = None
    """See :attr:`CsvPageRequest.base_dir`."""


@dataclass
class IngestSummary:
    """An ingestion's running totals: its result, and its progress while it runs
    (the ``summary`` query); carried across continue-as-new."""

    documents: int = 0
    """Documents admitted so far (read from the CSV and handed to batches)."""
    succeeded: int = 0
    failed: int = 0
    failures: list[DocumentFailure] = field(default_factory=list)
    """The first failures with their reasons (all are in PostgreSQL)."""
    error: str | None = None
    """Set when the CSV as a whole is unusable (no header, no url column): nothing ran."""
    total: int | None = None
    """Documents in the whole CSV, once its first page is read."""
    chunks: int = 0
    """Chunks embedded, over the succeeded documents."""
    without_text: int = 0
    """Succeeded documents stored without text (images with nothing to read)."""
    started_at: float | None = None
    """Workflow time (epoch seconds) the ingestion's first run started."""
    finished_at: float | None = None
    """Workflow time it ended; None while it runs."""
