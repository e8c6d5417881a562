"""Pipeline throughput against a sequential in-process loop, in the same run.

Both sides process the same generated corpus against the same real servers
(Temporal dev server, PostgreSQL, moto S3, Chroma) and call the same step
functions; the baseline simply runs them one document after another in this
process, with no Temporal, no queues and no worker processes. The pipeline
runs the four workers as separate processes, as they run in production.

    ratio = pipeline documents/s / baseline documents/s     (goal >= 0.9)

Usage: python bench/pipeline.py [--documents 200] [--batch-size 10]
The last line printed is ``ratio=<float>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path

from bench_args import bench_parser

from docpipe.activities.cpu.text_pipeline import prepare_text
from docpipe.activities.gpu.embedder import Embedder
from docpipe.activities.io.download import download, make_http_client
from docpipe.chunks import chunks_to_json
from docpipe.client.starter import run_documents
from docpipe.csv_input import parse_documents_csv
from docpipe.local.devstack import DevStack
from docpipe.local.workers import LocalWorkers, all_task_queues, wait_for_pollers
from docpipe.models import DocumentOutcome, DocumentRef, Status
from docpipe.storage import keys
from docpipe.storage.arrays import to_npy
from docpipe.storage.metadata import open_metadata_store
from docpipe.storage.objects import open_object_store
from docpipe.storage.vectors import open_vector_store
from docpipe.workers.common import connect
from docpipe.workers.cpu import text_options

SUBJECTS = ["The committee", "Our team", "The new release", "This report", "The city council",
            "A small startup", "The research group", "The museum", "Every operator", "The library"]  # fmt: skip
VERBS = ["describes", "questions", "improves", "measures", "reviews", "explains", "documents",
         "funds", "schedules", "replaces"]  # fmt: skip
OBJECTS = ["the quarterly budget", "a faster indexing strategy", "the water supply network",
           "the archive of historical maps", "an open data portal", "the night bus timetable",
           "a safer login flow", "the regional weather model", "the hiring process",
           "a cheaper storage tier"]  # fmt: skip
TAILS = ["after a long public consultation.", "with help from external reviewers.",
         "before the end of the year.", "despite several delays.", "using data from last winter.",
         "so that results can be reproduced.", "in close cooperation with the partners."]  # fmt: skip


def make_corpus(folder: Path, count: int, seed: int = 7) -> Path:
    """Plain-text documents of 150-900 words (1-5 chunks each) and their CSV."""
    rng = random.Random(seed)
    docs = folder / "docs"
    docs.mkdir(parents=True)
    rows = ["url,title,tags"]
    for i in range(count):
        paragraphs = []
        for _ in range(rng.randint(2, 9)):
            sentences = [
                f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}"
                for _ in range(rng.randint(4, 9))
            ]
            paragraphs.append(" ".join(sentences))
        (docs / f"doc-{i:04d}.txt").write_text(f"Report {i}\n\n" + "\n\n".join(paragraphs))
        rows.append(f"docs/doc-{i:04d}.txt,Report {i},bench")
    csv_path = folder / "documents.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    return csv_path


async def baseline(stack: DevStack, documents: list[DocumentRef], embedder: Embedder) -> float:
    """The same steps, one document at a time, in this process. Returns seconds."""
    settings = stack.settings()
    options = text_options(settings)
    async with (
        make_http_client(settings) as http,
        open_object_store(settings) as store,
        open_metadata_store(settings) as metadata,
        open_vector_store(settings) as vectors,
    ):
        await store.ensure_bucket()
        await metadata.migrate()
        started = time.perf_counter()
        for ref in documents:
            got = await download(
                ref.source,
                http,
                max_bytes=settings.download_max_bytes,
                local_roots=settings.local_source_roots,
            )
            await store.put(keys.raw(ref.document_id), got.data)
            prepared = prepare_text(got.data, "text/plain", options)
            await store.put(keys.text(ref.document_id), prepared.text.encode())
            await store.put(keys.chunks(ref.document_id), chunks_to_json(prepared.chunks))
            await store.put(keys.compressed(ref.document_id), prepared.compressed)
            matrix = embedder.encode([c.text for c in prepared.chunks])
            await store.put(keys.embeddings(ref.document_id), to_npy(matrix))
            await vectors.upsert_document(
                ref.document_id, [c.text for c in prepared.chunks], matrix, {"source": ref.source}
            )
            await metadata.upsert_outcomes(
                [
                    DocumentOutcome(
                        document_id=ref.document_id,
                        source=ref.source,
                        row_number=ref.row_number,
                        status=Status.SUCCEEDED,
                        run_id="baseline",
                        content_sha256=hashlib.sha256(got.data).hexdigest(),
                        chunk_count=len(prepared.chunks),
                    )
                ]
            )
        return time.perf_counter() - started


async def pipeline(
    stack: DevStack, workers: LocalWorkers, documents: list[DocumentRef], batch_size: int
) -> float:
    settings = stack.settings()
    client = await connect(settings)
    await wait_for_pollers(
        client,
        all_task_queues(settings),
        workers,
    )
    # Warm-up: spawn the CPU pool processes and run the model once, outside the clock.
    await run_documents(
        client, settings, documents[:batch_size], batch_size=batch_size, run_id="warmup"
    )
    started = time.perf_counter()
    summary = await run_documents(client, settings, documents, batch_size=batch_size, timeout_s=600)
    elapsed = time.perf_counter() - started
    if summary.failed:
        first = summary.failed[0]
        raise SystemExit(
            f"{len(summary.failed)} documents failed, e.g. {first.failure_stage}: {first.failure_reason}"
        )
    return elapsed


def main() -> None:
    args = bench_parser(__doc__, documents=200, batch_size=10).parse_args()

    with tempfile.TemporaryDirectory(prefix="docpipe-bench-") as tmp:
        root = Path(tmp)
        csv_path = make_corpus(root / "corpus", args.documents)
        documents = parse_documents_csv(
            csv_path.read_text(), base_dir=csv_path.parent, origin="bench"
        )
        with DevStack(
            root / "stack", object_store="s3", local_source_roots=[csv_path.parent]
        ) as stack:
            settings = stack.settings()
            with LocalWorkers(root / "logs", stack.env) as workers:
                workers.start()
                embedder = Embedder(
                    settings.resolved_embedding_model_path,
                    ["cpu"],
                    batch_size=settings.embedding_batch_size,
                )
                embedder.encode(["warm up"])
                prepare_text(
                    b"warm up the tokenizer and the language model",
                    "text/plain",
                    text_options(settings),
                )
                pipeline_s = asyncio.run(pipeline(stack, workers, documents, args.batch_size))
                # Same documents again in the baseline: both sides upsert, neither skips work.
                baseline_s = asyncio.run(baseline(stack, documents, embedder))
        pipeline_rate = len(documents) / pipeline_s
        baseline_rate = len(documents) / baseline_s
        print(f"documents={len(documents)} batch_size={args.batch_size}")
        print(f"baseline  sequential in-process: {baseline_s:7.2f} s  {baseline_rate:7.2f} docs/s")
        print(f"pipeline  4 workers via Temporal: {pipeline_s:7.2f} s  {pipeline_rate:7.2f} docs/s")
        print(f"ratio={pipeline_rate / baseline_rate:.3f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
