"""IO-queue activities: the network and storage steps, all async.

One instance per worker process holds the pooled clients (HTTP, object store,
PostgreSQL pool, Chroma), so ~200 concurrent activities share connections
instead of opening their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
import numpy as np
from temporalio import activity
from temporalio.exceptions import ApplicationError

from docpipe import steps
from docpipe.activities.batch import each_document
from docpipe.activities.heartbeat import heartbeating
from docpipe.activities.io.download import Downloaded, download, source_kind
from docpipe.activities.io.netguard import NetPolicy
from docpipe.activities.io.s3_source import S3SourceReader
from docpipe.activities.io.webhook import WebhookRejected, deliver
from docpipe.chunks import bundle_from_json, chunks_of
from docpipe.config import Settings
from docpipe.csv_input import CsvFormatError, csv_page
from docpipe.errors import DocumentError, TransientError
from docpipe.metrics.io import backend_request, count_bytes, timed
from docpipe.metrics.pipeline import record_outcomes
from docpipe.models import (
    CsvPage,
    CsvPageRequest,
    DocumentFailure,
    DocumentOutcome,
    DocumentRef,
    FetchedDocument,
    FetchResult,
    MetadataAnswer,
    MetadataQuery,
    SimilarImage,
    Stage,
    StoreVectorsResult,
    VectorJob,
    WebhookRequest,
)
from docpipe.redact import redact_text, redact_url
from docpipe.storage import keys
from docpipe.storage.arrays import bundle_from_npz, from_npy
from docpipe.storage.chunk_texts import ChunkTextRows, ChunkTexts
from docpipe.storage.metadata import MetadataStore
from docpipe.storage.objects import ObjectNotFound, ObjectStore, S3ObjectStore, read_each_once
from docpipe.storage.vectors import DocumentVectors, VectorStore

log = logging.getLogger(__name__)

_timed_deliver = timed("http", "webhook")(deliver)


def _language(metadata: Mapping[str, object]) -> str | None:
    language = metadata.get("language")
    return language if isinstance(language, str) else None


@dataclasses.dataclass(eq=False)
class IoActivities:
    settings: Settings
    http: httpx.AsyncClient
    store: ObjectStore
    metadata: MetadataStore
    vectors: VectorStore
    chunk_texts: ChunkTexts = dataclasses.field(init=False)
    schemes: frozenset[str] = dataclasses.field(init=False)
    webhook_policy: NetPolicy = dataclasses.field(init=False)
    s3_sources: S3SourceReader | None = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.chunk_texts = ChunkTexts(self.metadata)
        self.schemes = frozenset(self.settings.download_schemes.split(",")) - {""}
        self.webhook_policy = NetPolicy.for_webhooks(self.settings)
        self.s3_sources = (
            S3SourceReader(self.store.client, self.settings.download_s3_buckets.split(","))
            if isinstance(self.store, S3ObjectStore)
            else None
        )

    # -- download_document: download + upload_to_s3 ---------------------------------
    @activity.defn(name=steps.DOWNLOAD_DOCUMENT)
    async def download_document(self, refs: list[DocumentRef]) -> FetchResult:
        """Fetch every document of the batch at once and keep the raw bytes in S3."""
        succeeded, failed = await each_document(self._fetch_one, refs)
        return FetchResult(succeeded=succeeded, failed=failed)

    async def _fetch_one(self, ref: DocumentRef) -> FetchedDocument | DocumentFailure:
        attempts = self.settings.download_attempts
        backend = _source_backend(ref.source)
        for attempt in range(1, attempts + 1):
            try:
                with backend_request(backend, "download"):
                    got = await download(
                        ref.source,
                        self.http,
                        max_bytes=self.settings.download_max_bytes,
                        local_roots=self.settings.local_source_roots,
                        schemes=self.schemes,
                        s3=self.s3_sources,
                    )
                break
            except DocumentError as err:
                return DocumentFailure(ref.document_id, err.stage, err.reason)
            except TransientError as err:
                if attempt == attempts:
                    return DocumentFailure(
                        ref.document_id, Stage.DOWNLOAD, f"gave up after {attempts} attempts: {err}"
                    )
                await asyncio.sleep(min(2.0**attempt * 0.25, 10.0))
        count_bytes(backend, "in", len(got.data))
        return await self.upload_to_s3(ref, got)

    async def upload_to_s3(self, ref: DocumentRef, got: Downloaded) -> FetchedDocument:
        """Keep a downloaded document's raw bytes in the object store (the claim
        check the later steps read), keyed by its id so a retry overwrites."""
        key = keys.raw(ref.document_id)
        declared = ref.declared_type or got.content_type.split(";")[0].strip()
        await self.store.put(key, got.data, declared or "application/octet-stream")
        return FetchedDocument(
            document_id=ref.document_id,
            raw_key=key,
            size_bytes=len(got.data),
            content_sha256=hashlib.sha256(got.data).hexdigest(),
            # Only what was declared: the CPU step sniffs the bytes, with this and the
            # source's file name as hints, and the sniffed type is what gets recorded.
            content_type=declared,
            final_url=got.final_url,
            filename=got.filename,
        )

    # -- ChromaDB ------------------------------------------------------------------
    @activity.defn(name=steps.STORE_VECTOR_EMBEDDINGS)
    async def store_vector_embeddings(self, jobs: list[VectorJob]) -> StoreVectorsResult:
        """Upsert each document's chunk vectors (ids document:chunk) with their text:
        each bundle read once, the whole batch in one upsert. If that call fails, each
        document is tried alone so a bad one fails by itself."""
        result = StoreVectorsResult()
        async with heartbeating():
            ready: list[DocumentVectors] = []
            for item in await self._vectors_of(jobs):
                (result.failed if isinstance(item, DocumentFailure) else ready).append(item)
            try:
                await self.vectors.upsert_documents(ready)
                result.stored = [d.document_id for d in ready]
            except Exception as batch_error:
                if len(ready) <= 1:
                    raise
                log.warning("batch upsert failed (%s); storing documents one by one", batch_error)
                for doc in ready:
                    try:
                        await self.vectors.upsert_documents([doc])
                    except ValueError as err:
                        result.failed.append(
                            DocumentFailure(doc.document_id, Stage.STORE, str(err))
                        )
                    else:
                        result.stored.append(doc.document_id)
            # The full-text index follows the vectors: same chunks, same documents.
            stored = set(result.stored)
            await self.chunk_texts.replace(
                [
                    ChunkTextRows(d.document_id, d.texts, _language(d.metadata))
                    for d in ready
                    if d.document_id in stored
                ]
            )
        return result

    async def _vectors_of(self, jobs: list[VectorJob]) -> list[DocumentVectors | DocumentFailure]:
        """Each document's chunk texts and vectors, from its batch's bundles."""
        chunk_bundles, vector_bundles = await asyncio.gather(
            read_each_once(self.store, (j.chunks_key for j in jobs), bundle_from_json),
            read_each_once(self.store, (j.embeddings_key for j in jobs), _read_vectors),
        )
        items: list[DocumentVectors | DocumentFailure] = []
        for job in jobs:
            metadata = {
                "source": redact_url(job.source),
                "title": job.title,
                "language": job.language,
            }
            if not job.embeddings_key and job.chunk_count == 0:
                # A document without text (an image with nothing to read) has no chunks:
                # those of an earlier version, if any, go, so the store matches the row.
                items.append(
                    DocumentVectors(job.document_id, [], np.zeros((0, 0), np.float32), metadata)
                )
                continue
            chunk_bundle = chunk_bundles.get(job.chunks_key)
            vector_bundle = vector_bundles.get(job.embeddings_key)
            chunks = (
                chunks_of(chunk_bundle, job.document_id) if isinstance(chunk_bundle, dict) else None
            )
            vectors = vector_bundle(job.document_id) if callable(vector_bundle) else None
            if chunks is None or vectors is None:
                missing = job.chunks_key if chunks is None else job.embeddings_key
                items.append(
                    DocumentFailure(job.document_id, Stage.STORE, f"artifact missing: {missing}")
                )
            elif len(chunks) != len(vectors):
                items.append(
                    DocumentFailure(
                        job.document_id,
                        Stage.STORE,
                        f"{len(chunks)} chunks but {len(vectors)} vectors: "
                        "artifacts are out of step",
                    )
                )
            else:
                items.append(
                    DocumentVectors(job.document_id, [c.text for c in chunks], vectors, metadata)
                )
        return items

    # -- PostgreSQL ----------------------------------------------------------------
    @activity.defn(name=steps.STORE_METADATA)
    async def store_metadata(self, outcomes: list[DocumentOutcome]) -> None:
        """Upsert one row per document (succeeded or failed, with the reason).

        Sources and reasons are stored redacted (the workflow already redacts
        them; this holds for any caller): a row never carries a credential."""
        outcomes = [_redacted(o) for o in outcomes]
        await self.metadata.upsert_outcomes(outcomes)
        record_outcomes(outcomes)  # the pipeline's result: every outcome passes here

    @activity.defn(name=steps.QUERY_METADATA_DATABASE)
    async def query_metadata_database(self, query: MetadataQuery) -> MetadataAnswer:
        """Duplicates among every stored document: byte-identical content (by hash),
        and near-duplicate images (by perceptual hash)."""
        answer = MetadataAnswer()
        if query.content_sha256:
            first = await self.metadata.first_with_content(list(query.content_sha256.values()))
            for document_id, sha in query.content_sha256.items():
                other = first.get(sha)
                if other is not None and other != document_id:
                    answer.duplicate_of[document_id] = other
        if query.stored_vectors:
            answer.embeddings_key = await self.metadata.embeddings_keys(query.stored_vectors)
        if query.image_phash:
            similar = await self.metadata.similar_images(
                query.image_phash, query.max_image_distance
            )
            for document_id, (other, distance) in similar.items():
                answer.similar_image[document_id] = SimilarImage(other, distance)
        return answer

    # -- webhook ---------------------------------------------------------------------
    @activity.defn(name=steps.CALL_EXTERNAL_API)
    async def call_external_api(self, request: WebhookRequest) -> int:
        """POST each document's result to the webhook; returns how many were delivered."""
        secret = self.settings.webhook_secret
        async with heartbeating():
            deliveries = await asyncio.gather(
                *(
                    _timed_deliver(
                        self.http,
                        request.url,
                        outcome,
                        secret=secret.get_secret_value() if secret else None,
                        policy=self.webhook_policy,
                        attempts=self.settings.webhook_attempts,
                        timeout_s=self.settings.webhook_timeout_s,
                    )
                    for outcome in request.outcomes
                ),
                return_exceptions=True,
            )
        for item in deliveries:
            if isinstance(item, WebhookRejected):
                raise ApplicationError(str(item), type="WebhookRejected", non_retryable=True)
            if isinstance(item, BaseException):
                raise item
        return len(deliveries)

    # -- CSV -----------------------------------------------------------------------
    @activity.defn(name=steps.PARSE_CSV)
    async def parse_csv(self, request: CsvPageRequest) -> CsvPage:
        """Read one page of rows of a CSV held in the object store or at a source URL;
        bad rows come back as failing documents.

        The CSV follows the documents' source rules (DOWNLOAD_SCHEMES, the local
        root, the network guard) with its own size cap (CSV_MAX_BYTES); one in this
        worker's own bucket is read directly. Parsing runs off the event loop and
        once per file, not once per page.
        """
        location = request.location.strip()
        cap = self.settings.csv_max_bytes
        base_dir: Path | None = None
        try:
            bucket, _, key = location.removeprefix("s3://").partition("/")
            if location.startswith("s3://") and bucket == self.settings.s3_bucket:
                data = await self.store.get(key)
                if len(data) > cap:
                    raise DocumentError(
                        Stage.CSV, f"CSV {location} is larger than the {cap}-byte limit"
                    )
            else:
                got = await download(
                    location,
                    self.http,
                    max_bytes=cap,
                    local_roots=self.settings.local_source_roots,
                    schemes=self.schemes,
                    s3=self.s3_sources,
                )
                data = got.data
                if got.final_url.startswith("file:"):
                    base_dir = Path(url2pathname(urlsplit(got.final_url).path)).parent
        except ObjectNotFound:
            raise DocumentError(Stage.CSV, f"no CSV at {redact_url(location)}") from None
        except DocumentError as err:
            raise DocumentError(Stage.CSV, err.reason) from None
        if request.base_dir:
            # A copy of a CSV from elsewhere: its plain paths stay relative to the
            # folder it came from (whether that may be read is LOCAL_SOURCE_ROOT's call).
            base_dir = Path(request.base_dir)
        try:
            documents, next_offset, total = await asyncio.to_thread(
                csv_page,
                data.decode("utf-8-sig", errors="replace"),
                request.offset,
                request.limit,
                base_dir=base_dir,
                origin=location,
            )
        except CsvFormatError as err:
            raise DocumentError(Stage.CSV, str(err)) from None
        return CsvPage(documents=documents, next_offset=next_offset, total=total)


def _redacted(outcome: DocumentOutcome) -> DocumentOutcome:
    """``outcome`` with its source and failure reason free of credentials."""
    return dataclasses.replace(
        outcome,
        source=redact_url(outcome.source),
        failure_reason=redact_text(outcome.failure_reason) if outcome.failure_reason else None,
    )


def _read_vectors(data: bytes) -> Callable[[str], np.ndarray | None]:
    """A document id -> its vectors lookup over a stored object: a batch's bundle
    (.npz), or one document's matrix (.npy, written before bundles existed)."""
    if data[:6] == b"\x93NUMPY":
        matrix = from_npy(data)
        return lambda _document_id: matrix
    bundle = bundle_from_npz(data)
    return bundle.vectors.get


def _source_backend(source: str) -> str:
    """The backend a download uses, for its metrics: ``http``, ``s3`` or ``file`` (local paths)."""
    kind = source_kind(source)
    return "http" if kind in {"http", "https"} else "s3" if kind == "s3" else "file"
