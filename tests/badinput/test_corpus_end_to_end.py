"""The whole bad-input corpus as ONE batch through the four real workers.

Every hostile document of :mod:`.corpus`, plus broken CSV rows, goes through
the real stack (Temporal, PostgreSQL, S3, Chroma) and the worker processes as
containers run them. The batch must complete; each document must end as its
case says, in the workflow result and in PostgreSQL, with the type sniffed
from its bytes recorded; no worker may die; the workers' memory must stay
under a ceiling while they chew on bombs; and text that talks to the summary
model must come out as data. The figures (outcome per case, peak RSS per
worker, time) are printed for docs/reliability.md.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from own_workers import own_worker_fixtures
from periodic import PeriodicSampler

from docpipe.activities.gpu.classify import DEFAULT_TAXONOMY
from docpipe.activities.gpu.extractive import split_sentences
from docpipe.activities.gpu.llm import SYSTEM_PROMPT
from docpipe.client.starter import pipeline_options, run_documents
from docpipe.csv_input import parse_documents_csv
from docpipe.local.workers import LocalWorkers
from docpipe.models import DocumentOutcome, IngestInput, Stage, Status
from docpipe.storage.metadata import open_metadata_store
from docpipe.workers.common import connect
from docpipe.workflows import IngestCsvWorkflow

from .corpus import CASES, INJECTION, PROSE, Case

pytestmark = pytest.mark.integration

# Peak resident memory of each worker's process tree (the CPU worker's pool
# included), and of its largest single process, in MB. Measured here (the figures
# are printed): ~90 / 600 / 1250 / 230 for the trees, the largest CPU pool process
# ~230. The GPU worker holds torch, MiniLM and easyocr. Before the caps, the 20 MB
# line alone took one pool process to ~540 MB, and 100 000 nested divs kept it busy
# for over a minute.
# The PDF stream bomb takes its pool process to the CPU worker's memory limit
# (CPU_EXTRACT_MEMORY_LIMIT_MB, 1024) before it dies there: the CPU tree may hold
# that process next to the worker and the other pool process for a moment, and
# no process of any worker may pass 1 GiB. High-water marks are of the processes
# still alive at the end (the bomb's is gone), sampled peaks of every process.
TREE_CEILING_MB = {"workflow": 300, "cpu": 1700, "gpu": 2000, "io": 500}
PROCESS_CEILING_MB = {"workflow": 300, "cpu": 450, "gpu": 2000, "io": 500}
SAMPLED_PROCESS_CEILING_MB = {"workflow": 300, "cpu": 1024, "gpu": 2000, "io": 500}

SQL_TITLE = "Robert'); DROP TABLE documents;--"
HTML_TITLE = "<script>alert('x')</script> harbour notes"
NUL_TITLE = "Tide\x00 tables\x07 for May"  # PostgreSQL refuses NUL in text

# Rows whose problem is in the CSV itself: (line text, reason piece). The unclosed
# quote comes first: the rows it would swallow must still be read.
CSV_ROW_CASES = (
    ('unclosed.txt,"A title whose quote is never closed', "never closed"),
    ("big-cell.txt," + "t" * (10 * 1024 * 1024), "larger than the 1024 KB limit"),
    (",A row without a url", "row has no url"),
    ("nul\x00.txt,A NUL byte in the url", "contains control characters"),
)


# The four workers as processes, with the bucket and collection "badinput".
env, settings, workers = own_worker_fixtures("badinput")


class RssSampler(PeriodicSampler):
    """Peak RSS of each worker process tree (the CPU worker's pool included),
    sampled every 100 ms from a thread while the batch runs."""

    interval_s = 0.1

    def __init__(self, workers: LocalWorkers) -> None:
        super().__init__()
        self.pids = {kind: w.process.pid for kind, w in workers.processes.items()}
        self.peak_mb = dict.fromkeys(self.pids, 0.0)
        self.process_peak_mb = dict.fromkeys(self.pids, 0.0)

    def tree_rss_mb(self, pid: int, kind: str = "") -> float:
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0
        for process in processes:
            try:
                rss = process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            total += rss
            if kind:
                self.process_peak_mb[kind] = max(self.process_peak_mb[kind], rss / 2**20)
        return total / 2**20

    def high_water_mb(self, pid: int) -> float:
        """The largest VmHWM (the kernel's exact peak RSS) of a process in the tree:
        catches a spike shorter than the sampling interval."""
        try:
            root = psutil.Process(pid)
            pids = [pid, *(child.pid for child in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return 0.0
        peaks = [0.0]
        for each in pids:
            try:
                status = Path(f"/proc/{each}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return max(peaks)

    def sample(self) -> dict[str, float]:
        now = {kind: self.tree_rss_mb(pid, kind) for kind, pid in self.pids.items()}
        for kind, mb in now.items():
            self.peak_mb[kind] = max(self.peak_mb[kind], mb)
        return now

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.sample()


class Webhook:
    """A receiver that keeps every posted body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        received = self.bodies

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_corpus(folder: Path) -> Path:
    """Every case as a file, plus two plain documents with hostile titles, and a
    CSV listing them with the broken rows in between."""
    lines = ["url,title,tags"]
    for case in CASES:
        (folder / case.filename).write_bytes(case.build())
        lines.append(f"{case.filename},{case.name},badinput")
        if case.name == "empty":
            lines += [line for line, _ in CSV_ROW_CASES]
    (folder / "sql-title.txt").write_text("Bakers in the old town rise before dawn. " * 20)
    (folder / "html-title.txt").write_text("Lighthouse keepers logged the weather. " * 20)
    (folder / "nul-title.txt").write_text("High water at the harbour came at noon. " * 20)
    sql_title = SQL_TITLE.replace('"', '""')
    lines += [
        f'sql-title.txt,"{sql_title}",x',
        f'html-title.txt,"{HTML_TITLE}",x',
        f"nul-title.txt,{NUL_TITLE},x",
    ]
    csv = folder / "badinput.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv


def expected(outcome: DocumentOutcome) -> tuple[Stage | None, str, Case | None]:
    """(stage or None for success, reason piece, case) for the row of ``outcome``."""
    if not outcome.source:  # a CSV row that could not be read has no source
        reason = next(r for _, r in CSV_ROW_CASES if r in (outcome.failure_reason or ""))
        return Stage.CSV, reason, None
    name = Path(outcome.source).name
    for case in CASES:
        if case.filename == name:
            return case.stage, case.reason, case
    assert name in {"sql-title.txt", "html-title.txt", "nul-title.txt"}, outcome
    return None, "", None


async def test_the_whole_corpus_runs_as_one_batch_and_every_document_ends_as_its_case_says(
    settings, workers, tmp_path
):
    csv = write_corpus(tmp_path)
    documents = parse_documents_csv(csv.read_text(), base_dir=tmp_path, origin=str(csv))
    client = await connect(settings)

    hook = Webhook()
    sampler = RssSampler(workers)
    before = sampler.sample()
    started = time.perf_counter()
    try:
        with sampler:
            summary = await run_documents(
                client,
                settings,
                documents,
                batch_size=len(documents),  # one batch: one bad document must not sink it
                timeout_s=240,
                webhook_url=hook.url,
                summarize=True,
            )
    finally:
        hook.close()
    elapsed = time.perf_counter() - started
    workers.check_alive()  # no worker crashed on any of it

    # The figures for docs/reliability.md.
    print(f"\nbad-input corpus: {len(documents)} documents in one batch, {elapsed:.1f} s")
    for outcome in summary.outcomes:
        what = outcome.status if outcome.status == Status.SUCCEEDED else outcome.failure_stage
        name = Path(outcome.source).name if outcome.source else f"(csv line {outcome.row_number})"
        detail = outcome.failure_reason or f"{outcome.chunk_count} chunks, label {outcome.label}"
        print(f"  {name:<16} {outcome.content_type or '-':<26} {what:<10} {detail[:110]}")
    print(
        "  RSS per worker, MB: process tree before -> peak during the run "
        "(largest high-water mark of a live process; largest process sampled)"
    )
    for kind, pid in sampler.pids.items():
        print(
            f"    {kind:<9} {before[kind]:7.0f} -> {sampler.peak_mb[kind]:7.0f}"
            f"   ({sampler.high_water_mb(pid):.0f}; {sampler.process_peak_mb[kind]:.0f})"
        )

    # Every row has exactly one outcome, as its case says, with the sniffed type.
    assert len(summary.outcomes) == len(documents) == len(CASES) + len(CSV_ROW_CASES) + 3
    for outcome in summary.outcomes:
        stage, reason, case = expected(outcome)
        if stage is None:
            assert outcome.status == Status.SUCCEEDED, (outcome.source, outcome.failure_reason)
            assert outcome.chunk_count and outcome.chunk_count >= 1
            assert outcome.summary, "every stored document has a summary"
        else:
            assert outcome.status == Status.FAILED, outcome.source
            assert outcome.failure_stage == stage, (outcome.source, outcome.failure_reason)
            assert reason in outcome.failure_reason, (outcome.source, outcome.failure_reason)
        if case is not None:
            assert outcome.content_type == case.sniffed, (outcome.source, outcome.content_type)

    # PostgreSQL holds the same: one row per document, status, stage, reason, type,
    # and the hostile titles and injected text as plain values.
    async with open_metadata_store(settings) as metadata:
        for outcome in summary.outcomes:
            row = await metadata.get(outcome.document_id)
            assert row is not None, outcome.source
            assert row["status"] == outcome.status.value
            assert row["failure_stage"] == (outcome.failure_stage and outcome.failure_stage.value)
            assert row["failure_reason"] == outcome.failure_reason
            assert row["content_type"] == outcome.content_type
            assert (row["title"], row["summary"]) == (outcome.title, outcome.summary)
        counts = await metadata.count_by_status(summary.run_id)
        assert counts == {"succeeded": len(summary.succeeded), "failed": len(summary.failed)}

    by_name = {Path(o.source).name: o for o in summary.outcomes if o.source}
    # Hostile titles are stored as written; the table they name is still there.
    assert by_name["sql-title.txt"].title == SQL_TITLE
    assert by_name["html-title.txt"].title == HTML_TITLE
    assert by_name["nul-title.txt"].title == "Tide tables for May"

    # Prompt injection is data: the summary is sentences of the document, the label is
    # one of the taxonomy's, and nothing the text asked for happened.
    injected = by_name["injection.txt"]
    document_text = " ".join((PROSE + INJECTION + " " + PROSE).split())
    for sentence in split_sentences(injected.summary):
        assert sentence in document_text, f"not from the document: {sentence!r}"
    assert injected.label in {*DEFAULT_TAXONOMY, "other"} and injected.label != "malware"
    assert not injected.summary.startswith("PWNED") and SYSTEM_PROMPT not in injected.summary

    # The webhook carried each outcome as one JSON object of the outcome's fields.
    events = [json.loads(body) for body in hook.bodies]
    assert len(events) == len(documents)
    [event] = [e for e in events if e["document"]["document_id"] == injected.document_id]
    assert event["type"] == "document.succeeded"
    assert set(event["document"]) == set(DocumentOutcome.__dataclass_fields__)
    assert event["document"]["summary"] == injected.summary

    # Memory stayed bounded while the bombs went through.
    for kind, pid in sampler.pids.items():
        peak, largest = sampler.peak_mb[kind], sampler.high_water_mb(pid)
        assert peak < TREE_CEILING_MB[kind], f"{kind} worker peaked at {peak:.0f} MB"
        assert largest < PROCESS_CEILING_MB[kind], f"a {kind} process peaked at {largest:.0f} MB"
        sampled = sampler.process_peak_mb[kind]
        assert sampled < SAMPLED_PROCESS_CEILING_MB[kind], f"a {kind} process reached {sampled:.0f}"


async def test_a_csv_read_by_the_io_worker_reports_bad_rows_and_an_unusable_file(
    settings, workers, tmp_path
):
    """The server-side path (IngestCsvWorkflow, parse_csv on the io worker): bad rows
    fail at the csv stage and the rest go on; a file without a url column ends the
    ingestion with that reason instead of failing it blindly."""
    client = await connect(settings)
    broken = tmp_path / "broken.csv"
    broken.write_text(
        "\ufeffurl,title\n"
        + "\n".join(line for line, _ in CSV_ROW_CASES)
        + "\nmissing-after-the-bad-rows.txt,Still read\n",
        encoding="utf-8",
    )
    unusable = tmp_path / "unusable.csv"
    unusable.write_text("title,tags\nA report,finance\n")

    async def ingest(location: Path):
        return await client.execute_workflow(
            IngestCsvWorkflow.run,
            IngestInput(
                location=str(location),
                run_id=f"badinput-{uuid.uuid4().hex[:6]}",
                options=pipeline_options(settings, 120),
            ),
            id=f"badinput-ingest-{uuid.uuid4().hex[:8]}",
            task_queue=settings.workflow_task_queue,
            execution_timeout=timedelta(minutes=3),
        )

    summary = await ingest(broken)
    rows = len(CSV_ROW_CASES) + 1
    assert (summary.documents, summary.succeeded, summary.failed) == (rows, 0, rows)
    stages = sorted(f.stage for f in summary.failures)
    assert stages == [Stage.CSV] * len(CSV_ROW_CASES) + [Stage.DOWNLOAD]
    for _, reason in CSV_ROW_CASES:
        assert any(reason in f.reason for f in summary.failures), reason
    assert summary.error is None

    refused = await ingest(unusable)
    assert refused.documents == 0 and refused.error and "no url column" in refused.error
    workers.check_alive()
