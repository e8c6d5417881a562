"""A source URL's credentials never reach what is shown or stored.

A real download from a local HTTP server fails (404); the IO activity's
failure, the workflow's outcome (what Temporal records and the CLI shows), the
row handed to PostgreSQL and the Chroma metadata are checked for the password
and the signature. The document id still hashes the full source, and the
download used it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from docpipe.activities.io.activities import IoActivities
from docpipe.activities.io.download import make_http_client
from docpipe.config import load_settings
from docpipe.csv_input import document_id_for
from docpipe.models import DocumentOutcome, DocumentRef, Stage, Status, VectorJob
from docpipe.storage.vectors import DocumentVectors
from docpipe.workflows.document_pipeline import _BatchState

pytestmark = pytest.mark.integration


class NotFound(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        type(self).requests.append((self.path, self.headers.get("Authorization")))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class RecordingMetadata:
    """Stands in for PostgreSQL: keeps the rows it was asked to upsert."""

    def __init__(self) -> None:
        self.rows: list[DocumentOutcome] = []

    async def upsert_outcomes(self, outcomes: list[DocumentOutcome]) -> None:
        self.rows.extend(outcomes)


async def test_a_failing_presigned_source_leaves_no_credential_in_reason_outcome_or_row(
    port: int,
) -> None:
    source = f"http://user:secret@127.0.0.1:{port}/missing?X-Amz-Signature=abc&page=2"
    shown = f"http://***@127.0.0.1:{port}/missing?X-Amz-Signature=REDACTED&page=2"
    ref = DocumentRef(document_id_for(source), source, row_number=1)
    settings = load_settings(download_allowed_networks="127.0.0.0/8")
    metadata = RecordingMetadata()
    async with make_http_client(settings) as http:
        io = IoActivities(settings, http, object(), metadata, object())  # type: ignore[arg-type]
        failure = await io._fetch_one(ref)
    # The download itself used the full source (path, query and credentials).
    assert NotFound.requests[-1][0] == "/missing?X-Amz-Signature=abc&page=2"
    assert NotFound.requests[-1][1] is not None  # basic auth from the userinfo

    state = _BatchState("run-1", [ref], datetime.now(UTC))
    state.record([failure])  # type: ignore[list-item]
    [outcome] = state.outcomes()
    await io.store_metadata([outcome])
    [row] = metadata.rows

    assert outcome.status == Status.FAILED and outcome.failure_stage == Stage.DOWNLOAD
    for what in (outcome, row):
        assert what.source == shown
        assert what.failure_reason == f"HTTP 404 Not Found from {shown}"
        assert "secret" not in repr(what) and "abc" not in repr(what)
    assert outcome.document_id == document_id_for(source)  # the id still hashes it all


async def test_rows_stored_by_any_caller_and_vector_metadata_are_redacted() -> None:
    metadata = RecordingMetadata()
    io = IoActivities(load_settings(), object(), object(), metadata, object())  # type: ignore[arg-type]
    leaky = DocumentOutcome(
        "doc-1",
        "https://a:pw@h.example/x?sig=s1",
        1,
        Status.FAILED,
        "run-1",
        failure_reason="gave up: cannot connect to https://a:pw@h.example/x?sig=s1",
    )
    await io.store_metadata([leaky])
    [row] = metadata.rows
    assert row.source == "https://***@h.example/x?sig=REDACTED"
    assert "pw" not in (row.failure_reason or "") and "s1" not in (row.failure_reason or "")

    job = VectorJob("doc-1", "", "", 0, "https://a:pw@h.example/x?sig=s1", "t", "en")
    [vectors] = await io._vectors_of([job])
    assert isinstance(vectors, DocumentVectors)
    assert vectors.metadata["source"] == "https://***@h.example/x?sig=REDACTED"


async def test_the_http_library_logs_the_url_without_its_credentials(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    source = f"http://user:secret@127.0.0.1:{port}/missing?X-Amz-Signature=abc"
    settings = load_settings(download_allowed_networks="127.0.0.0/8")
    with caplog.at_level(logging.DEBUG):
        async with make_http_client(settings) as http:
            io = IoActivities(settings, http, object(), RecordingMetadata(), object())  # type: ignore[arg-type]
            await io._fetch_one(DocumentRef("doc-1", source, row_number=1))
    assert f"127.0.0.1:{port}/missing" in caplog.text  # the request was logged...
    assert "secret" not in caplog.text and "abc" not in caplog.text  # ...redacted
