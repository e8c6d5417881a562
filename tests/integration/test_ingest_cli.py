"""`docpipe ingest` and `docpipe watch`: durable, server-side ingestion from the CLI.

The four workers run as separate processes, as their containers do; the CLI runs
as a user runs it. A local CSV is uploaded to the workers' bucket and its rows
still mean the files next to it; `--detach` leaves the ingestion running and
`watch` reattaches to it, while it runs or after it ended.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path

import pytest
from cli_runs import docpipe_cli
from own_workers import own_worker_fixtures

from docpipe.client.starter import pipeline_options
from docpipe.models import IngestInput, IngestSummary
from docpipe.storage.objects import open_object_store
from docpipe.workers.common import connect

pytestmark = pytest.mark.integration

TESTDATA = Path(__file__).resolve().parents[2] / "testdata" / "docs"
GOOD = ["en_durable_workflows.txt", "fr_boulangerie.txt", "guide_backups.md"]


# The four workers as processes, with the bucket and collection "ingest-cli".
env, settings, workers = own_worker_fixtures("ingest-cli")


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A folder with a few documents and a CSV naming them by relative path, plus a
    row whose file does not exist."""
    (tmp_path / "docs").mkdir()
    for name in GOOD:
        shutil.copy(TESTDATA / name, tmp_path / "docs" / name)
    rows = [f"docs/{name},{name}," for name in GOOD] + ["docs/not-there.txt,missing,"]
    (tmp_path / "documents.csv").write_text("url,title,tags\n" + "\n".join(rows) + "\n")
    return tmp_path / "documents.csv"


async def test_a_detached_ingestion_is_watched_to_its_end_and_after_it(
    env, settings, workers, corpus
):
    started = await asyncio.to_thread(
        docpipe_cli, env, "ingest", str(corpus), "--detach", "-o", "json"
    )
    assert started.returncode == 0, started.stdout + started.stderr
    detached = json.loads(started.stdout)
    run_id = detached["run_id"]
    assert detached["watch"] == f"docpipe watch {run_id}"
    # The CSV went to the workers' bucket, named by its content.
    bucket, _, key = detached["location"].removeprefix("s3://").partition("/")
    assert bucket == "ingest-cli" and key.startswith("ingest/")
    async with open_object_store(settings) as store:
        assert await store.get(key) == corpus.read_bytes()

    watched = await asyncio.to_thread(docpipe_cli, env, "watch", run_id)
    assert watched.returncode == 1, "a document failed, so watch says so\n" + watched.stdout
    assert run_id in watched.stdout and "failed documents" in watched.stdout

    # After the end, watch answers from the stored result, with the same figures.
    again = await asyncio.to_thread(docpipe_cli, env, "watch", run_id, "-o", "json")
    assert again.returncode == 1, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["documents"], summary["succeeded"], summary["failed"]) == (4, 3, 1)
    assert summary["chunks"] >= 3 and summary["elapsed_s"] > 0
    (failure,) = summary["failures"]
    assert failure["stage"] == "download"
    # Relative rows resolved against the CSV's own folder, as `docpipe start` does.
    listed = await asyncio.to_thread(docpipe_cli, env, "failures", "--run-id", run_id, "-o", "json")
    (row,) = json.loads(listed.stdout)
    assert row["source"] == str(corpus.parent / "docs" / "not-there.txt")

    # --no-strict: failed documents are reported, not an error.
    lenient = await asyncio.to_thread(docpipe_cli, env, "watch", run_id, "--no-strict")
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr


async def test_ingest_waits_by_default_and_reads_a_csv_already_in_the_bucket(
    env, settings, workers
):
    sources = [str(TESTDATA / name) for name in GOOD]
    key = f"uploads/{uuid.uuid4().hex[:8]}.csv"
    async with open_object_store(settings) as store:
        await store.ensure_bucket()
        await store.put(key, ("url\n" + "\n".join(sources) + "\n").encode())

    result = await asyncio.to_thread(docpipe_cli, env, "ingest", f"s3://{settings.s3_bucket}/{key}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "docpipe ingestion" in result.stdout
    summary = next(line for line in result.stdout.splitlines() if "succeeded" in line)
    assert summary.split("│")[-2].strip() == str(len(GOOD)), result.stdout


async def test_watch_carries_the_totals_across_continue_as_new(env, settings, workers, corpus):
    """A page per run: the totals `watch` reports (and the progress query answers)
    add up over every run of the ingestion."""
    client = await connect(settings)
    run_id = f"run-can-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(
        "IngestCsvWorkflow",
        IngestInput(
            location=str(corpus),
            run_id=run_id,
            batch_size=1,
            page_size=2,
            pages_per_run=1,
            options=pipeline_options(settings, 300),
        ),
        id=run_id,
        task_queue=settings.workflow_task_queue,
        result_type=IngestSummary,
    )
    watched = await asyncio.to_thread(docpipe_cli, env, "watch", run_id, "-o", "json")
    summary = json.loads(watched.stdout)
    assert (summary["documents"], summary["succeeded"], summary["failed"]) == (4, 3, 1)
    result = await handle.result()
    assert result.total == 4 and result.chunks == summary["chunks"] >= 3
    assert result.started_at is not None and result.finished_at >= result.started_at
    # The query replays the finished workflow on a worker: the same totals.
    assert await handle.query("summary", result_type=IngestSummary) == result


def test_watching_an_unknown_run_is_one_line_and_exit_2(env):
    result = docpipe_cli(env, "watch", "run-that-never-was")
    assert result.returncode == 2
    assert "no ingestion 'run-that-never-was'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_local_csv_that_cannot_be_used_is_refused_before_anything_starts(env, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("title,tags\nno url column,x\n")
    result = docpipe_cli(env, "ingest", str(bad), "--detach")
    assert result.returncode == 2 and "no url column" in result.stderr
    missing = docpipe_cli(env, "ingest", str(tmp_path / "nope.csv"), "--detach")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
