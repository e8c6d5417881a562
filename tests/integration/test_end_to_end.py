"""testdata/documents.csv through all four workers, against real servers.

The workers run as separate processes (``python -m docpipe.workers.<kind>``),
exactly as their containers run them. Afterwards the test reads what landed:
rows in PostgreSQL, vectors in Chroma, objects in S3; then runs the CSV again
through the CLI and checks that nothing was duplicated.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cli_runs import docpipe_cli

from docpipe.activities.io.webhook import SIGNATURE_HEADER, verify_signature
from docpipe.client.starter import pipeline_options, run_documents
from docpipe.config import load_settings
from docpipe.csv_input import parse_documents_csv
from docpipe.local.workers import LocalWorkers, all_task_queues, wait_for_pollers
from docpipe.models import IngestInput, Stage, Status
from docpipe.storage.chunk_texts import ChunkTexts
from docpipe.storage.metadata import open_metadata_store
from docpipe.storage.objects import open_object_store
from docpipe.storage.vectors import open_vector_store
from docpipe.workers.common import connect
from docpipe.workflows import IngestCsvWorkflow

pytestmark = pytest.mark.integration

WEBHOOK_SECRET = "e2e-webhook-secret"
ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT / "testdata" / "documents.csv"

# Rows of testdata/documents.csv that must fail, by a piece of their source, with the
# stage they fail at (see testdata/README.md). Every other row must succeed.
EXPECTED_FAILURES = {
    "missing-file.txt": Stage.DOWNLOAD,
    "empty.txt": Stage.VALIDATE,
    "whitespace-only.txt": Stage.VALIDATE,
    "binary-posing-as-text.txt": Stage.EXTRACT,
    "ftp://": Stage.DOWNLOAD,
    "docpipe-test.invalid": Stage.DOWNLOAD,
    "": Stage.CSV,  # the row with an empty url
}


# Rows whose text can only come from OCR (a scanned PDF, images).
OCR_FILES = {"scanned_invoice.pdf", "invoice_scan.png", "invoice_photo.jpg"}
# Images and scans with no text at all: documents all the same, stored without chunks.
TEXTLESS_FILES = {"icon_no_text.png", "blank_scan.pdf"}


def expected_stage(source: str) -> Stage | None:
    if not source:
        return EXPECTED_FAILURES[""]
    for piece, stage in EXPECTED_FAILURES.items():
        if piece and piece in source:
            return stage
    return None


@pytest.fixture(scope="module")
def e2e_env(devstack) -> dict[str, str]:
    """The shared servers, with a bucket and collection of this test's own."""
    return {
        **devstack.env,
        "S3_BUCKET": "e2e-documents",
        "VECTOR_COLLECTION": "e2e_chunks",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


@pytest.fixture(scope="module")
def settings(e2e_env):
    return load_settings(**{k.lower(): v for k, v in e2e_env.items()})


@pytest.fixture(scope="module")
def workers(e2e_env, tmp_path_factory):
    with LocalWorkers(tmp_path_factory.mktemp("worker-logs"), e2e_env) as group:
        group.start(extra_env={"WORKER_CPU_THREADS": "2"})
        yield group


@pytest.fixture(scope="module")
def documents():
    return parse_documents_csv(
        CSV.read_text(encoding="utf-8"), base_dir=CSV.parent, origin=str(CSV)
    )


async def test_documents_csv_runs_end_to_end_through_all_four_workers(
    settings, e2e_env, workers, documents
):
    client = await connect(settings)
    await wait_for_pollers(
        client,
        all_task_queues(settings),
        workers,
    )
    summary = await run_documents(client, settings, documents, batch_size=5, timeout_s=300)

    # Every row has exactly one outcome; the bad ones fail where expected, with a reason.
    assert len(summary.outcomes) == len(documents)
    for outcome in summary.outcomes:
        stage = expected_stage(outcome.source)
        if Path(outcome.source).name in TEXTLESS_FILES:
            assert outcome.status == Status.SUCCEEDED, (outcome.source, outcome.failure_reason)
            assert (outcome.has_text, outcome.chunk_count) == (False, 0), outcome.source
            assert outcome.ocr_pages == 1 and outcome.embeddings_key is None
        elif stage is None:
            assert outcome.status == Status.SUCCEEDED, (outcome.source, outcome.failure_reason)
            assert outcome.has_text is True
            assert outcome.chunk_count and outcome.chunk_count >= 1
            assert outcome.label and 0 < outcome.label_score <= 1, "classified"
            assert 0 < outcome.quality_score <= 1
            assert outcome.duplicate_of is None, "testdata holds no two identical files"
            if Path(outcome.source).name in OCR_FILES:
                assert outcome.ocr_pages == 1 and outcome.ocr_confidence > 0.5, outcome.source
            else:
                assert outcome.language and outcome.language != "und"
                assert outcome.ocr_pages is None
        else:
            assert outcome.status == Status.FAILED, outcome.source
            assert outcome.failure_stage == stage, (outcome.source, outcome.failure_reason)
            assert outcome.failure_reason
    by_file = {Path(o.source).name: o for o in summary.succeeded}
    icon = by_file["icon_no_text.png"].image_info
    assert icon["format"] == "PNG" and len(icon["phash"]) == 16 and icon["dominant_colors"]
    assert by_file["blank_scan.pdf"].image_info is None, "a PDF is not an image"
    # From here on: the documents with text (the text-less ones have no text artifacts).
    succeeded = [o for o in summary.succeeded if o.has_text]
    assert len(succeeded) >= 15
    assert by_file["en_durable_workflows.txt"].label == "technology"
    # Every kind of document: PDF text layer, scanned PDF and images through OCR.
    assert by_file["text_layer_lighthouses.pdf"].title == "Lighthouse keeping notes"
    assert by_file["text_layer_lighthouses.pdf"].ocr_pages is None
    for name in OCR_FILES:
        assert by_file[name].word_count >= 4, name
    png = by_file["invoice_scan.png"].image_info
    assert png["format"] == "PNG" and len(png["phash"]) == 16 and png["text_area_ratio"] > 0
    assert by_file["scanned_invoice.pdf"].image_info is None, "a PDF is not an image"
    # The JPEG is the PNG's picture recompressed: a near duplicate, not a byte-identical one.
    photo = by_file["invoice_photo.jpg"]
    assert photo.near_duplicate_of == by_file["invoice_scan.png"].document_id
    assert photo.near_duplicate_distance is not None and photo.near_duplicate_distance <= 6
    assert by_file["invoice_scan.png"].near_duplicate_of is None, "the original is no copy"
    languages = {o.language for o in succeeded}
    assert {"en", "de", "fr", "es", "ja"} <= languages

    # PostgreSQL: one row per document, failures with their reasons.
    async with open_metadata_store(settings) as metadata:
        counts = await metadata.count_by_status(summary.run_id)
        assert counts == {"succeeded": len(summary.succeeded), "failed": len(summary.failed)}
        icon_row = await metadata.get(by_file["icon_no_text.png"].document_id)
        assert icon_row is not None and icon_row["has_text"] is False
        assert icon_row["image_info"]["phash"] == icon["phash"]
        failures = {f["document_id"]: f for f in await metadata.failures(run_id=summary.run_id)}
        for outcome in summary.failed:
            assert failures[outcome.document_id]["reason"] == outcome.failure_reason
        photo_row = await metadata.get(photo.document_id)
        assert photo_row is not None
        assert photo_row["near_duplicate_of"] == photo.near_duplicate_of
        row = await metadata.get(succeeded[0].document_id)
        assert row is not None and row["chunk_count"] == succeeded[0].chunk_count
        assert row["started_at"] is not None and row["started_at"] <= row["updated_at"]

    # Chroma: one vector per chunk; S3: every artifact of every stored document.
    async with open_vector_store(settings) as vectors:
        assert await vectors.count() == summary.chunks
        for outcome in succeeded:
            assert await vectors.count_for(outcome.document_id) == outcome.chunk_count
    async with open_object_store(settings) as store:
        for prefix in ("text/", "compressed/"):
            assert len(await store.list_keys(prefix)) == len(succeeded), prefix
        stored = set(await store.list_keys())
        for outcome in succeeded:
            assert {outcome.raw_key, outcome.chunks_key, outcome.embeddings_key} <= stored
        # Chunks and vectors travel in one bundle per batch, not one object per document.
        bundles = {o.embeddings_key for o in succeeded}
        assert len(bundles) < len(succeeded)

    # The same CSV again, through the CLI as a user runs it: nothing is duplicated.
    env = {**os.environ, **e2e_env, "METRICS_PORT": "0", "SDK_METRICS_PORT": "0"}
    cli = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "docpipe",
            "start",
            "--csv-file",
            str(CSV),
            "--batch-size",
            "10",
            "--timeout",
            "300",
            "-o",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cli.returncode == 1, (
        "documents failed, so the exit code says so\n" + cli.stdout + cli.stderr
    )
    # -o json: stdout is the summary alone (the progress bar went to stderr).
    again = json.loads(cli.stdout)
    assert again["documents"] == len(summary.outcomes)
    assert (again["succeeded"], again["failed"]) == (
        len(summary.succeeded),
        len(summary.failed),
    )
    assert again["without_text"] == len(summary.succeeded) - len(succeeded)
    assert any("empty" in (f["reason"] or "") for f in again["failures"])

    # What was ingested can be found: by words (PostgreSQL) and by meaning (Chroma).
    durable = next(o for o in succeeded if o.source.endswith("en_durable_workflows.txt"))
    for mode in ("text", "hybrid"):
        found = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "docpipe", "search", "why durable workflows matter",
             "--mode", mode, "-k", "5", "-o", "json"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert found.returncode == 0, found.stderr
        hits = json.loads(found.stdout)["results"]
        assert durable.document_id in [h["document_id"] for h in hits], (mode, hits)
    async with open_metadata_store(settings) as metadata:
        texts = ChunkTexts(metadata)
        for outcome in succeeded:
            assert await texts.count_for(outcome.document_id) == outcome.chunk_count

    async with open_metadata_store(settings) as metadata:
        for outcome in summary.outcomes:
            row = await metadata.get(outcome.document_id)
            assert row is not None and row["attempts"] == 2, outcome.source
            # A second run marks the same copies: the original stays the original.
            assert row["near_duplicate_of"] == outcome.near_duplicate_of, outcome.source
    async with open_vector_store(settings) as vectors:
        assert await vectors.count() == summary.chunks
    async with open_object_store(settings) as store:
        assert len(await store.list_keys("text/")) == len(succeeded)


async def test_a_csv_read_by_the_io_worker_fans_out_batches_and_continues_as_new(
    settings, workers, documents
):
    """IngestCsvWorkflow: parse_csv pages on the io queue, child batch workflows,
    continue-as-new after each page here so the hand-over is exercised."""
    client = await connect(settings)
    summary = await client.execute_workflow(
        IngestCsvWorkflow.run,
        IngestInput(
            location=str(CSV),
            run_id="ingest-test",
            batch_size=4,
            page_size=10,
            pages_per_run=1,
            options=pipeline_options(settings, 300),
        ),
        id=f"ingest-{uuid.uuid4().hex[:8]}",
        task_queue=settings.workflow_task_queue,
        execution_timeout=timedelta(minutes=10),
    )
    expected_failed = sum(1 for d in documents if expected_stage(d.source) is not None)
    assert summary.documents == len(documents)
    assert (summary.succeeded, summary.failed) == (
        len(documents) - expected_failed,
        expected_failed,
    )
    assert {f.stage for f in summary.failures} == {
        expected_stage(d.source) for d in documents if expected_stage(d.source)
    }


def test_docpipe_status_shows_backlog_and_live_pollers_per_queue(e2e_env, workers):
    env = {**os.environ, **e2e_env, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "docpipe", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for queue in (
        "document-pipeline-queue",
        "cpu-bound-queue",
        "gpu-bound-queue",
        "io-bound-queue",
    ):
        line = next(line for line in result.stdout.splitlines() if queue in line)
        assert int(line.split("│")[-2].strip()) >= 1, f"{queue} has a live poller: {line}"


def test_a_worker_stops_gracefully_on_sigterm(e2e_env, tmp_path):
    with LocalWorkers(tmp_path, e2e_env) as group:
        worker = group.start_one("io")
        deadline = time.monotonic() + 60
        while (
            "polling task queue" not in worker.log_path.read_text() and time.monotonic() < deadline
        ):
            group.check_alive()
            time.sleep(0.2)
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(45) == 0
        assert "io worker stopped" in worker.log_path.read_text()


async def test_a_failed_document_is_listed_and_redriven_once_its_source_is_fixed(
    settings, e2e_env, workers, tmp_path
):
    csv = tmp_path / "late.csv"
    csv.write_text("url,title\nlate.txt,Late arrival\n")
    documents = parse_documents_csv(csv.read_text(), base_dir=tmp_path, origin=str(csv))
    run_id = f"late-{uuid.uuid4().hex[:6]}"
    client = await connect(settings)
    first = await run_documents(client, settings, documents, run_id=run_id, timeout_s=120)
    [failed] = first.failed
    assert failed.failure_stage == Stage.DOWNLOAD

    listed = await asyncio.to_thread(docpipe_cli, e2e_env, "failures", "--run-id", run_id)
    assert listed.returncode == 0, listed.stderr
    assert "late.txt" in listed.stdout and "download" in listed.stdout

    (tmp_path / "late.txt").write_text(
        "This report arrived after the first run had finished. " * 12
    )
    redriven = await asyncio.to_thread(docpipe_cli, e2e_env, "redrive", "--run-id", run_id)
    assert redriven.returncode == 0, redriven.stdout + redriven.stderr

    async with open_metadata_store(settings) as metadata:
        row = await metadata.get(failed.document_id)
        assert row["status"] == "succeeded" and row["attempts"] == 2
        assert row["failure_reason"] is None
        assert not await metadata.failures(run_id=run_id)


async def test_each_document_result_is_posted_to_the_webhook_signed(settings, workers, tmp_path):
    received: list[tuple[str, bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers[SIGNATURE_HEADER], body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "a.txt").write_text(
            "Webhook receivers learn about every processed document. " * 5
        )
        documents = parse_documents_csv(
            "url\na.txt\nmissing.txt\n", base_dir=tmp_path, origin="hook"
        )
        client = await connect(settings)
        summary = await run_documents(
            client,
            settings,
            documents,
            webhook_url=f"http://127.0.0.1:{server.server_port}/hook",
            summarize=True,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 2
    events = sorted(json.loads(body)["type"] for _, body in received)
    assert events == ["document.failed", "document.succeeded"]
    assert all(verify_signature(WEBHOOK_SECRET, header, body) for header, body in received)
    [done] = summary.succeeded
    assert done.summary and "Webhook receivers" in done.summary, "the extractive summary is stored"
