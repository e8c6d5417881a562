"""Per-document overhead of ``docpipe run`` on short documents, and where its CPU goes.

``--documents`` generated English notes of about 100 tokens each (one chunk
per document; deterministic: same seed, same texts) go through the real
``docpipe run`` command with its default settings: the embedded stack
(Temporal, PostgreSQL, Chroma, a local object store) and the four workers as
separate processes, as a user runs it. The baseline is one bare batched
``SentenceTransformer.encode`` of the same texts (torch on all cores) in this
process, after the CLI has stopped.

While the command runs, the CPU time of every process under it is sampled
(psutil, every 0.5 s, the last reading of each process kept) and grouped by
role: the CLI itself, the workflow/cpu/gpu/io workers (the CPU worker's pool
processes count as cpu), temporal, postgres (all its backends), chroma.
"run" CPU is counted from the moment all four workers poll to the moment the
CLI prints its summary, so start-up (model loading, server start) and
shutdown are left out and reported apart.

    CPU ms/doc per role      run CPU of that role / documents
    non-model CPU ms/doc     (all run CPU - the bare encode's process CPU for
                             the same texts) / documents: the price of the
                             pipeline around the model
    ratio                    pipeline docs/s / bare encode texts/s   (1.0: only
                             the model costs anything)

``--profile DIR`` also records the gpu and io workers with py-spy (on-CPU
samples, collapsed stacks in DIR/<kind>.txt) during the run and prints their
hotspots (see bench/pyspy_top.py); profiling takes some CPU itself, so take
the throughput figures from a run without it.

Usage: python bench/overhead.py [--documents 1000] [--http] [--profile DIR]
The last line printed is ``ratio=<float>``.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import cli_run
from bench_args import bench_parser
from pyspy_top import summarise

SUBJECTS = ["The committee", "Our team", "The new release", "This report", "The city council",
            "A small startup", "The research group", "The museum", "Every operator", "The library",
            "The harbour office", "A volunteer network"]  # fmt: skip
VERBS = ["describes", "questions", "improves", "measures", "reviews", "explains", "documents",
         "funds", "schedules", "replaces", "publishes", "compares"]  # fmt: skip
OBJECTS = ["the quarterly budget", "a faster indexing strategy", "the water supply network",
           "the archive of historical maps", "an open data portal", "the night bus timetable",
           "a safer login flow", "the regional weather model", "the hiring process",
           "a cheaper storage tier", "the school lunch programme", "the bridge inspection plan"]  # fmt: skip
TAILS = ["after a long public consultation.", "with help from external reviewers.",
         "before the end of the year.", "despite several delays.", "using data from last winter.",
         "so that results can be reproduced.", "in close cooperation with the partners.",
         "while keeping costs under control."]  # fmt: skip


def make_texts(count: int, seed: int = 23) -> list[str]:
    """Distinct notes of six sentences (~75 words, ~100 MiniLM tokens) each."""
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        sentences = [
            f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}"
            for _ in range(6)
        ]
        texts.append(f"Note {i}: " + " ".join(sentences))
    return texts


def write_corpus(folder: Path, texts: list[str], base_url: str | None) -> Path:
    """One .txt file per text and the CSV (relative paths, or URLs under base_url)."""
    (folder / "docs").mkdir(parents=True)
    rows = ["url,title,tags"]
    for i, text in enumerate(texts):
        name = f"docs/note-{i:05d}.txt"
        (folder / name).write_text(text)
        url = f"{base_url}/{name}" if base_url else name
        rows.append(f"{url},Note {i},bench")
    csv_path = folder / "documents.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    return csv_path


class Profiler:
    """``py-spy record`` on some workers, from ready to the summary."""

    def __init__(self, folder: Path, kinds: list[str], rate: int) -> None:
        self.folder, self.kinds, self.rate = folder, kinds, rate
        self.spies: dict[str, subprocess.Popen[bytes]] = {}
        self.py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))

    def start(self, sampler: cli_run.ProcessTreeSampler) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        sampler.sample()
        for kind in self.kinds:
            pid = sampler.pid_of(kind)
            if pid is None:
                print(f"profile: no {kind} worker found", flush=True)
                continue
            argv = [self.py_spy, "record", "--pid", str(pid), "--rate", str(self.rate)]
            argv += ["--format", "raw", "--threads", "--nonblocking"]
            argv += ["-o", str(self.folder / f"{kind}.txt")]
            if kind == "cpu":
                argv.append("--subprocesses")  # the process pool does the work
            log = (self.folder / f"{kind}.py-spy.log").open("wb")
            self.spies[kind] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, _sampler: object = None) -> None:
        for spy in self.spies.values():
            with contextlib.suppress(ProcessLookupError):
                spy.send_signal(signal.SIGINT)
        for spy in self.spies.values():
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()

    def report(self, top: int) -> None:
        for kind in self.spies:
            path = self.folder / f"{kind}.txt"
            if path.is_file():
                print(f"--- py-spy, {kind} worker")
                print(summarise(path, top))
            else:
                print(f"--- py-spy, {kind} worker: no profile written (see {path}.py-spy.log)")


def main() -> None:
    parser = bench_parser(__doc__, documents=1000)
    parser.add_argument("--http", action="store_true", help="serve the files over local HTTP")
    parser.add_argument("--batch-size", type=int, help="docpipe run --batch-size")
    parser.add_argument("--max-in-flight", type=int, help="docpipe run --max-in-flight")
    parser.add_argument("--bare-batch-size", type=int, default=32)
    parser.add_argument("--profile", type=Path, help="py-spy the workers, profiles into DIR")
    parser.add_argument(
        "--profile-workers", default="gpu,io", help="which workers to profile (default gpu,io)"
    )
    parser.add_argument("--profile-rate", type=int, default=50, help="samples/s (default 50)")
    parser.add_argument("--top", type=int, default=15, help="hotspots printed per section")
    parser.add_argument("--keep", type=Path, help="keep the corpus and data dir here")
    args = parser.parse_args()

    options = cli_run.run_options(args.batch_size, args.max_in_flight)
    texts = make_texts(args.documents)
    profiler = None
    if args.profile:
        profiler = Profiler(
            args.profile.resolve(), args.profile_workers.split(","), args.profile_rate
        )

    with tempfile.TemporaryDirectory(prefix="docpipe-bench-overhead-") as tmp:
        root = args.keep.resolve() if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        data_dir = root / "data"
        with contextlib.ExitStack() as stack:
            base_url = None
            if args.http:
                base_url = stack.enter_context(cli_run.serve_directory(root / "corpus"))
            csv_path = write_corpus(root / "corpus", texts, base_url)
            print(f"docpipe run {csv_path} {' '.join(options)} ({len(texts)} documents)")
            try:
                run = cli_run.run_docpipe(
                    csv_path,
                    data_dir,
                    options,
                    env=cli_run.loopback_download_env() if args.http else None,
                    on_ready=[profiler.start] if profiler else (),
                    on_end=[profiler.stop] if profiler else (),
                )
            finally:
                if profiler:
                    profiler.stop()
                if not args.keep:
                    cli_run.remove_stack_data(data_dir)
        s = run.summary
        if run.returncode != 0 or not s.documents:
            tail = "\n".join(run.output.splitlines()[-30:])
            raise SystemExit(f"docpipe run failed (exit {run.returncode}):\n{tail}")

        print("CPU by role (run = from all workers polling to the summary):")
        run_cpu = cli_run.print_cpu_by_role(run, s.documents)
        bare = cli_run.bare_encode(texts, args.bare_batch_size)
        pipeline_rate = s.documents / s.elapsed_s
        print(
            f"documents={s.documents} succeeded={s.succeeded_count} failed={s.failed_count} "
            f"chunks={s.chunks} mean tokens/text={bare.mean_tokens:.0f}"
        )
        for failure in s.failed[:5]:
            print(
                f"  row {failure.row_number}: [{failure.failure_stage}] {failure.failure_reason[:200]}"
            )
        print(
            f"pipeline  docpipe run:      elapsed {s.elapsed_s:7.1f} s  {pipeline_rate:7.2f} docs/s"
            f"  (whole command {run.wall_s:.1f} s, workers ready after {run.ready_s or 0:.1f} s)"
        )
        print(
            f"bare      encode batch {args.bare_batch_size:<3}: elapsed {bare.wall_s:7.1f} s "
            f" {bare.rate:7.2f} texts/s  ({bare.threads} torch threads, "
            f"{1000 * bare.cpu_s / len(texts):.1f} CPU ms/text)"
        )
        print(
            f"pipeline run CPU {1000 * run_cpu / s.documents:.1f} ms/doc; "
            f"non-model CPU ms per document = {1000 * (run_cpu - bare.cpu_s) / s.documents:.1f}"
        )
        cli_run.print_load(run, bare)
        if profiler:
            profiler.report(args.top)
        print(f"ratio={pipeline_rate / bare.rate:.3f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
