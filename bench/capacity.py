"""The measured inputs of docs/capacity.md: what one batch costs each component.

Runs a corpus of short (~100 tokens) and long (~2,000 tokens) documents through
the embedded stack and the four workers (separate processes, as in production),
then reads back, per batch of ``--batch-size`` documents:

* Temporal: workflow tasks, activity tasks (the billable "actions" of a batch),
  history events and history bytes (from the batch workflows' histories);
* CPU seconds of each worker process, per document and per chunk (psutil, from
  the moment the workers poll to the end of the run);
* PostgreSQL and Chroma calls (the IO worker's own request counters).

The baseline, in the same run, is a bare batched ``encode`` of the same chunk
texts: the model's cost per chunk on this machine, against which the
pipeline's own (non-model) CPU is set.

Usage: python bench/capacity.py [--short 400] [--long 20] [--batch-size 10]
The last line printed is ``ratio=<float>``: pipeline docs/s / bare encode docs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
from bench_args import bench_parser

WORDS = (
    "harbour ledger meadow signal archive compass orchard granite weaver copper violin "
    "canyon beacon glacier market pepper saddle timber falcon quarry thistle anchor prism "
    "cobalt tundra lagoon marble river lantern engine budget council museum library"
).split()


def write_corpus(folder: Path, short: int, long: int, seed: int = 5) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    rows = ["url,title"]
    for i in range(short + long):
        words = 70 if i < short else 1500
        sentences = []
        while sum(len(s.split()) for s in sentences) < words:
            sentences.append(" ".join(rng.choices(WORDS, k=rng.randint(8, 16))).capitalize() + ".")
        (folder / f"doc-{i:05d}.txt").write_text(f"Note {i}. " + " ".join(sentences))
        rows.append(f"doc-{i:05d}.txt,Note {i}")
    csv = folder / "documents.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def cpu_by_worker(workers) -> dict[str, float]:
    """CPU seconds per worker kind (its pool processes included)."""
    totals: Counter[str] = Counter()
    for kind in ("workflow", "cpu", "gpu", "io"):
        for worker in workers.replicas(kind):
            process = psutil.Process(worker.pid)
            for p in [process, *process.children(recursive=True)]:
                try:
                    times = p.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                totals[kind] += times.user + times.system
    return dict(totals)


def backend_calls(workers) -> Counter[tuple[str, str]]:
    """Requests per (backend, operation), from every worker's own /metrics."""
    import urllib.request

    calls: Counter[tuple[str, str]] = Counter()
    for kind in ("cpu", "gpu", "io"):
        for worker in workers.replicas(kind):
            url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            for line in text.splitlines():
                if line.startswith("docpipe_io_request_duration_seconds_count{"):
                    labels = dict(
                        part.split("=", 1)
                        for part in line[line.index("{") + 1 : line.index("}")].split(",")
                    )
                    key = (labels["backend"].strip('"'), labels["operation"].strip('"'))
                    calls[key] += int(float(line.rsplit(" ", 1)[1]))
    return calls


async def history_costs(client, run_id: str) -> tuple[int, Counter[str], int, int]:
    """Batches, event counts by type, history events and bytes over the run's batches."""
    batches = 0
    kinds: Counter[str] = Counter()
    events = size = 0
    query = f'WorkflowId STARTS_WITH "{run_id}-batch-"'
    async for execution in client.list_workflows(query):
        batches += 1
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        async for event in handle.fetch_history_events():
            events += 1
            size += event.ByteSize()
            kinds[event.WhichOneof("attributes") or "?"] += 1
    return batches, kinds, events, size


async def run(args: argparse.Namespace, stack, workers, documents) -> None:
    from docpipe.client.starter import run_documents
    from docpipe.local.workers import all_task_queues, wait_for_pollers
    from docpipe.workers.common import connect

    settings = stack.settings()
    client = await connect(settings)
    await wait_for_pollers(client, all_task_queues(settings), workers, timeout_s=300)
    await run_documents(client, settings, documents[:4], batch_size=4, run_id="warm-up")
    before, calls_before = cpu_by_worker(workers), backend_calls(workers)
    started = time.perf_counter()
    summary = await run_documents(
        client, settings, documents, batch_size=args.batch_size, run_id=f"cap-{int(started)}"
    )
    elapsed = time.perf_counter() - started
    after, calls = cpu_by_worker(workers), backend_calls(workers)
    docs, chunks = summary.documents, summary.chunks
    print(f"{docs} documents ({summary.failed_count} failed), {chunks} chunks in {elapsed:.1f} s")
    for kind in ("workflow", "cpu", "gpu", "io"):
        cpu = after.get(kind, 0) - before.get(kind, 0)
        print(
            f"  {kind:<8} worker CPU {cpu:7.1f} s = {1000 * cpu / docs:6.2f} ms/document, "
            f"{1000 * cpu / max(chunks, 1):6.2f} ms/chunk"
        )
    batches, kinds, events, size = await history_costs(client, summary.run_id)
    print(
        f"Temporal per batch of {args.batch_size}: "
        f"{kinds['activity_task_scheduled_event_attributes'] / batches:.1f} activity tasks, "
        f"{kinds['workflow_task_scheduled_event_attributes'] / batches:.1f} workflow tasks, "
        f"{events / batches:.0f} history events, {size / batches / 1024:.1f} KiB of history"
    )
    for (backend, operation), count in sorted(calls.items()):
        count -= calls_before.get((backend, operation), 0)
        if count and backend in {"postgres", "chroma", "s3", "file", "local"}:
            print(f"  {backend}/{operation}: {count / batches:.1f} calls per batch")
    print(f"throughput: {docs / elapsed:.2f} documents/s, {chunks / elapsed:.1f} chunks/s")
    return docs / elapsed, chunks


def main() -> None:
    args = bench_parser(__doc__, short=400, long=20, batch_size=10).parse_args()

    from docpipe.csv_input import parse_documents_csv
    from docpipe.local.devstack import DevStack
    from docpipe.local.workers import LocalWorkers

    with tempfile.TemporaryDirectory(prefix="docpipe-capacity-") as tmp:
        root = Path(tmp)
        csv = write_corpus(root / "corpus", args.short, args.long)
        documents = parse_documents_csv(csv.read_text(), base_dir=csv.parent, origin="capacity")
        with DevStack(
            root / "stack", object_store="local", local_source_roots=[csv.parent]
        ) as stack:
            with LocalWorkers(root / "logs", stack.env) as workers:
                workers.start()
                docs_per_s, _ = asyncio.run(run(args, stack, workers, documents))
        bare = bare_docs_per_s(csv.parent, args.short + args.long)
    print(f"bare encode of the same documents' texts: {bare:.2f} documents/s")
    print(f"ratio={docs_per_s / bare:.3f}")
    sys.stdout.flush()


def bare_docs_per_s(folder: Path, count: int) -> float:
    """Documents/s of a bare batched encode of the same texts, 256-token chunks."""
    from docpipe.activities.cpu.text_pipeline import prepare_text
    from docpipe.activities.gpu.embedder import Embedder
    from docpipe.config import load_settings
    from docpipe.workers.cpu import text_options

    settings = load_settings()
    options = text_options(settings)
    texts = []
    for i in range(count):
        prepared = prepare_text((folder / f"doc-{i:05d}.txt").read_bytes(), "text/plain", options)
        texts.extend(c.text for c in prepared.chunks)
    embedder = Embedder(settings.resolved_embedding_model_path, ["cpu"])
    embedder.encode(texts[:32])
    started = time.perf_counter()
    embedder.encode(texts)
    return count / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
