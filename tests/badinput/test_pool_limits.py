"""Parsers bounded whatever the input: entity bombs in any encoding, huge texts, and
bombs inside a native library that only the pool process's memory limit can stop.

Hostile files are built here (small on disk) and their peak memory measured in a
process of their own, under an address-space cap so that a regression fails the
test instead of taking the machine's memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from periodic import PeriodicSampler
from temporalio.testing import ActivityEnvironment

from docpipe.activities.cpu.activities import CpuActivities
from docpipe.activities.cpu.chunking import default_model_dir
from docpipe.activities.cpu.docx import extract_docx
from docpipe.activities.cpu.limits import MEMORY_REASON, ProcessLimits
from docpipe.activities.cpu.pool import IsolatingProcessPool
from docpipe.activities.cpu.text_pipeline import TextOptions, prepare_text, warm_up
from docpipe.models import Stage, TextJob
from docpipe.storage.objects import LocalObjectStore

from .corpus import (
    CASES_BY_NAME,
    PROSE,
    docx_entity_bomb,
    docx_flat_text,
    docx_of,
    pdf_flate_bomb,
    word_document,
)

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
SAFETY_CAP_MB = 2048
"""Address space of the measuring process: a parser that regressed dies at this cap
(before the fix, the UTF-16 entity bomb reached it in 15 s) instead of swapping."""

MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    from docpipe.activities.cpu.chunking import default_model_dir
    from docpipe.activities.cpu.text_pipeline import TextOptions, prepare_text
    from docpipe.errors import DocumentError

    cap = int(sys.argv[2]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    data = open(sys.argv[1], "rb").read()
    options = TextOptions(tokenizer_dir=str(default_model_dir()))
    started = time.perf_counter()
    try:
        prepare_text(data, "", options, "", sys.argv[1])
        outcome = {"stage": None, "reason": ""}
    except DocumentError as err:
        outcome = {"stage": str(err.stage), "reason": err.reason}
    outcome["seconds"] = time.perf_counter() - started
    status = open("/proc/self/status").read()
    outcome["peak_rss_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
    print(json.dumps(outcome))
    """
)


def measure(data: bytes, tmp_path: Path, name: str) -> dict:
    """prepare_text on ``data`` in a fresh process: outcome, seconds, peak RSS (VmHWM;
    the interpreter, the imports and the file's bytes included)."""
    path = tmp_path / name
    path.write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), str(SAFETY_CAP_MB)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    print(f"\n{name}: {len(data):,} bytes -> {figures}")
    return figures


@pytest.mark.parametrize(
    ("codec", "bom"),
    [
        ("utf-8", b""),
        ("utf-16-le", b""),
        ("utf-16-be", b""),
        ("utf-16-le", b"\xff\xfe"),
        ("utf-16-be", b"\xfe\xff"),
    ],
    ids=["utf-8", "utf-16-le", "utf-16-be", "utf-16-le-bom", "utf-16-be-bom"],
)
def test_an_entity_bomb_docx_fails_fast_in_any_encoding_with_little_memory(codec, bom, tmp_path):
    figures = measure(docx_entity_bomb(codec, bom), tmp_path, f"laughs-{codec}.docx")
    assert figures["stage"] == Stage.EXTRACT
    assert figures["reason"].startswith("corrupt DOCX: word/document.xml declares a DTD")
    assert figures["seconds"] < 10  # ~0.2 s here; the UTF-16 bomb took 15 s and 3 GB before
    assert figures["peak_rss_mb"] < 300  # ~100 here: the interpreter, imports and 6 MB of XML


def test_a_docx_with_a_huge_flat_text_stops_at_the_text_limit_while_parsing(tmp_path):
    figures = measure(docx_flat_text(), tmp_path, "flat.docx")
    assert figures["stage"] == Stage.VALIDATE
    assert figures["reason"] == (
        "document is too long: word/document.xml holds more than 5,000,000 characters "
        "of text, the limit is 5,000,000"
    )
    assert figures["peak_rss_mb"] < 400  # the 60 MB of XML read, 5 M characters kept


def test_a_normal_utf16_docx_still_extracts():
    body = "".join(f"<w:p><w:r><w:t>{line}</w:t></w:r></w:p>" for line in ("Grüße", PROSE))
    for codec, bom in (("utf-16-le", b"\xff\xfe"), ("utf-16-be", b""), ("utf-16-le", b"")):
        xml = bom + word_document(body, encoding="UTF-16").encode(codec)
        assert extract_docx(docx_of(xml)).text == f"Grüße\n\n{PROSE.strip()}"


# --------------------------------------------------------------------------- the pool


class TreeRss(PeriodicSampler):
    """Peak RSS of this process and, separately, of its largest child, sampled."""

    interval_s = 0.02

    def __init__(self) -> None:
        super().__init__()
        self.me = psutil.Process()
        self.parent_peak_mb = self.parent_mb()
        self.child_peak_mb = 0.0

    def parent_mb(self) -> float:
        return self.me.memory_info().rss / 2**20

    def sample(self) -> None:
        self.parent_peak_mb = max(self.parent_peak_mb, self.parent_mb())
        for child in self.me.children(recursive=True):
            try:
                self.child_peak_mb = max(self.child_peak_mb, child.memory_info().rss / 2**20)
            except psutil.Error:
                pass  # it just died: that is the point


@pytest.fixture(scope="module")
def options() -> TextOptions:
    return TextOptions(tokenizer_dir=str(default_model_dir()))


@pytest.fixture(scope="module")
def worker_pool(options):
    """The CPU worker's pool as the worker builds it: its defaults, warm processes."""
    pool = IsolatingProcessPool(
        2, limits=ProcessLimits(), initializer=warm_up, initargs=(options.tokenizer_dir,)
    )
    pool.wait_started()
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


async def test_a_pdf_stream_bomb_fails_alone_at_the_memory_limit_and_the_batch_goes_on(
    worker_pool, options, tmp_path
):
    assert ProcessLimits().memory_mb == 1024
    store = LocalObjectStore(tmp_path)
    documents = {
        "bomb": ("inflates.pdf", pdf_flate_bomb()),  # 1.5 MB that inflates to 1.5 GB
        "good": ("harbour.txt", (PROSE * 20).encode()),
        "laughs": ("laughs.docx", docx_entity_bomb()),
        "also-good": ("notes.txt", (PROSE * 5).encode()),
    }
    jobs = []
    for doc_id, (name, data) in documents.items():
        await store.put(f"raw/{doc_id}", data)
        jobs.append(TextJob(doc_id, f"raw/{doc_id}", "", source=f"/data/{name}", filename=name))
    activities = CpuActivities(store, worker_pool, options)

    with TreeRss() as rss:
        before_mb = rss.parent_mb()
        result = await ActivityEnvironment().run(activities.prepare_text, jobs)
    print(
        f"\nparent {before_mb:.0f} -> {rss.parent_peak_mb:.0f} MB, "
        f"largest pool process {rss.child_peak_mb:.0f} MB (sampled every 20 ms)"
    )

    failed = {f.document_id: f for f in result.failed}
    assert sorted(d.document_id for d in result.succeeded) == ["also-good", "good"]
    assert set(failed) == {"bomb", "laughs"}
    assert failed["bomb"].stage == Stage.EXTRACT
    assert failed["bomb"].reason.startswith(MEMORY_REASON), failed["bomb"].reason
    assert failed["bomb"].content_type == "application/pdf"  # sniffed by the parent
    assert "declares a DTD" in failed["laughs"].reason
    assert failed["laughs"].content_type == DOCX_TYPE
    # No process passed its limit; the worker itself only held the raw bytes.
    assert rss.child_peak_mb < 1024
    assert rss.parent_peak_mb - before_mb < 150

    # The bomb's process was replaced: the pool still has two working processes.
    again = await ActivityEnvironment().run(activities.prepare_text, [jobs[1], jobs[3]])
    assert len(again.succeeded) == 2


def test_the_corpus_marks_the_pdf_bomb_as_one_only_the_pool_may_run():
    assert CASES_BY_NAME["pdf content stream bomb"].pool_only


def test_the_pool_processes_leave_room_for_the_largest_accepted_document(worker_pool, options):
    """A warm pool process reserves ~380 MB of address space here; a document of
    MAX_TEXT_CHARS (5 M) characters peaks at ~700 MB: both under the 1024 MB limit."""
    text = (PROSE * (options.max_chars // len(PROSE)))[: options.max_chars - 10]
    prepared = worker_pool.submit(prepare_text, text.encode(), "text/plain", options).result(300)
    assert prepared.char_count > 4_000_000
