"""The whole pipeline on REAL documents, through ``docpipe run``, against a bare encode.

The corpus is documentation that other people wrote and that is installed on
this machine: HTML pages and PDF manuals of installed packages (/usr/share/doc,
the interpreter's site-packages) and a few text-less PNG icons (/usr/share/icons,
idlelib's icons). Candidates are listed in sorted path order, byte-identical
files dropped, and ``--html/--pdf/--png`` of each kind picked evenly spaced over
that list, so the same machine always gets the same corpus (the digest printed
says which one). The files are served over HTTP on 127.0.0.1 by a thread of
this process, so downloads take the HTTP path, and ``docpipe run CSV`` runs them
with its default settings: it starts the embedded stack (Temporal, PostgreSQL,
Chroma, a local object store) and the four workers, exactly as a user would.

After the run, the chunk texts the pipeline stored (``<data-dir>/objects/``) are
embedded again with one bare batched ``SentenceTransformer.encode`` (torch on
all cores) in this process, the CLI's stack already stopped.

    pipeline chunks/s = chunks embedded / the CLI's elapsed (stack start-up and
                        model loading excluded, as the CLI reports it)
    ratio             = pipeline chunks/s / bare encode chunks/s

A ratio near 1 means the model is the limit and everything around it is hidden
behind it; failures are listed with their stage and reason (icons have no
text, so they are expected to fail validation unless the pipeline keeps text-less
images). ``--with-summary`` runs the corpus a second time with ``--summarize``
and prints ``summary_cost=<elapsed with summaries / elapsed without>``.

Usage: python bench/corpus.py [--html 60] [--pdf 4] [--png 8] [--with-summary]
The last line printed is ``ratio=<float>``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import sysconfig
import tempfile
from collections import Counter
from pathlib import Path

import cli_run
from bench_args import bench_parser

from docpipe.csv_input import document_id_for


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


# kind -> (roots searched in this order, suffixes, smallest size in bytes)
KINDS: dict[str, tuple[list[Path], tuple[str, ...], int]] = {
    "html": ([Path("/usr/share/doc"), _site_packages()], (".html", ".htm"), 2_000),
    "pdf": ([Path("/usr/share"), Path("/usr/local/share"), _site_packages()], (".pdf",), 20_000),
    "png": ([Path("/usr/share/icons"), _stdlib() / "idlelib" / "Icons"], (".png",), 500),
}


def candidates(kind: str, max_bytes: int | None = None) -> list[Path]:
    """Every file of ``kind`` under its roots, in sorted order, duplicates dropped."""
    roots, suffixes, min_bytes = KINDS[kind]
    found: list[Path] = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                if not name.lower().endswith(suffixes) or path.is_symlink():
                    continue
                size = path.stat().st_size
                if min_bytes <= size <= (max_bytes or size):
                    found.append(path)
    seen: set[str] = set()
    unique = []
    for path in found:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(path)
    return unique


def pick(paths: list[Path], count: int) -> list[Path]:
    """``count`` paths evenly spaced over the sorted list (all of them if fewer)."""
    if count >= len(paths):
        return paths
    return [paths[i * len(paths) // count] for i in range(count)]


def make_corpus(
    folder: Path, counts: dict[str, int], html_max_kb: int
) -> list[tuple[str, Path, str]]:
    """Copy the chosen files into ``folder/<kind>/``; returns (kind, original, relative url)."""
    chosen = []
    for kind, count in counts.items():
        (folder / kind).mkdir(parents=True)
        max_bytes = html_max_kb * 1024 if kind == "html" else None
        for i, path in enumerate(pick(candidates(kind, max_bytes), count)):
            relative = f"{kind}/{i:03d}-{path.name}"
            shutil.copyfile(path, folder / relative)
            chosen.append((kind, path, relative))
    return chosen


def write_csv(path: Path, base_url: str, chosen: list[tuple[str, Path, str]]) -> list[str]:
    """The CSV ``docpipe run`` reads; returns the document id of each row, in order."""
    rows = ["url,title,tags"]
    ids = []
    for kind, original, relative in chosen:
        url = f"{base_url}/{relative}"
        title = original.name.replace(",", " ")
        rows.append(f"{url},{title},real;{kind}")
        ids.append(document_id_for(url))
    path.write_text("\n".join(rows) + "\n")
    return ids


def report(
    run: cli_run.CliRun, chosen: list[tuple[str, Path, str]], ids: list[str], data_dir: Path
):
    """Per-kind results; returns the stored chunk texts of the succeeded documents."""
    summary = run.summary
    failed_rows = {f.row_number for f in summary.failed}
    chunks = cli_run.stored_chunk_texts(data_dir, ids)
    print(f"{'kind':<5} {'docs':>5} {'ok':>4} {'failed':>6} {'chunks':>7} {'chars/chunk':>11}")
    texts: list[str] = []
    for kind in KINDS:
        # Row numbers count the header as line 1, as the CLI reports them.
        rows = [i + 2 for i, (k, _, _) in enumerate(chosen) if k == kind]
        ok = [row - 2 for row in rows if row not in failed_rows]
        kind_texts = [t for i in ok for t in chunks.get(ids[i], [])]
        for i in ok:
            text = " ".join(chunks.get(ids[i], []))
            if len(text) < 40:  # e.g. an icon's OCR: show what was read
                print(f"  short text, row {i + 2} {chosen[i][1].name}: {text!r}")
        texts += kind_texts
        mean = sum(map(len, kind_texts)) / len(kind_texts) if kind_texts else 0
        print(
            f"{kind:<5} {len(rows):>5} {len(ok):>4} {len(rows) - len(ok):>6} "
            f"{len(kind_texts):>7} {mean:>11.0f}"
        )
    if summary.failed:
        print("failures by stage:", dict(Counter(str(f.failure_stage) for f in summary.failed)))
        for f in summary.failed:
            kind, original, _ = chosen[f.row_number - 2]
            print(
                f"  row {f.row_number} {kind} {original}: [{f.failure_stage}] {f.failure_reason[:200]}"
            )
    return texts


def run_once(
    root: Path, name: str, csv_path: Path, options: list[str], keep: bool
) -> tuple[cli_run.CliRun, Path]:
    data_dir = root / name
    run = cli_run.run_docpipe(csv_path, data_dir, options, env=cli_run.loopback_download_env())
    if run.returncode != 0 or run.summary.documents == 0:
        tail = "\n".join(run.output.splitlines()[-30:])
        if not keep:
            cli_run.remove_stack_data(data_dir)
        raise SystemExit(f"docpipe run failed (exit {run.returncode}):\n{tail}")
    return run, data_dir


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--html", type=int, default=60, help="HTML pages (default 60)")
    parser.add_argument("--pdf", type=int, default=4, help="PDF files, at most (default 4)")
    parser.add_argument("--png", type=int, default=8, help="PNG icons (default 8)")
    parser.add_argument(
        "--html-max-kb", type=int, default=120, help="skip larger HTML pages (default 120)"
    )
    parser.add_argument("--batch-size", type=int, help="docpipe run --batch-size")
    parser.add_argument("--max-in-flight", type=int, help="docpipe run --max-in-flight")
    parser.add_argument("--bare-batch-size", type=int, default=32)
    parser.add_argument("--with-summary", action="store_true", help="a second run with --summarize")
    parser.add_argument("--list", action="store_true", help="print every chosen file")
    parser.add_argument("--keep", type=Path, help="keep the corpus and data dirs here")
    args = parser.parse_args()

    options = cli_run.run_options(args.batch_size, args.max_in_flight)

    with tempfile.TemporaryDirectory(prefix="docpipe-bench-corpus-") as tmp:
        root = args.keep.resolve() if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        counts = {"html": args.html, "pdf": args.pdf, "png": args.png}
        chosen = make_corpus(root / "corpus", counts, args.html_max_kb)
        digest = hashlib.sha256()
        for _, original, relative in chosen:
            digest.update(f"{original}\n".encode() + (root / "corpus" / relative).read_bytes())
        total_kb = sum((root / "corpus" / r).stat().st_size for _, _, r in chosen) / 1024
        print(
            f"corpus: {dict(Counter(k for k, _, _ in chosen))} {total_kb:.0f} KB "
            f"sha256 {digest.hexdigest()[:16]}"
        )
        if args.list:
            for _, original, relative in chosen:
                print(f"  {relative:<60} {original}")
        with cli_run.serve_directory(root / "corpus") as base_url:
            csv_path = root / "documents.csv"
            ids = write_csv(csv_path, base_url, chosen)
            print(f"docpipe run {csv_path} {' '.join(options)} (served from {base_url})")
            run, data_dir = run_once(root, "data", csv_path, options, bool(args.keep))
            try:
                texts = report(run, chosen, ids, data_dir)
                documents = run.summary.documents
                print("CPU by role (run = from all workers polling to the summary):")
                cli_run.print_cpu_by_role(run, documents)
            finally:
                if not args.keep:
                    cli_run.remove_stack_data(data_dir)
            summary_run = None
            if args.with_summary:
                print(f"docpipe run {csv_path} {' '.join(options)} --summarize")
                summary_run, summary_dir = run_once(
                    root, "data-summary", csv_path, [*options, "--summarize"], bool(args.keep)
                )
                if not args.keep:
                    cli_run.remove_stack_data(summary_dir)

        s = run.summary
        pipeline_rate = s.chunks / s.elapsed_s
        bare = cli_run.bare_encode(texts, args.bare_batch_size) if texts else None
        print(
            f"documents={s.documents} succeeded={s.succeeded_count} failed={s.failed_count} "
            f"chunks={s.chunks} (stored for succeeded documents: {len(texts)})"
        )
        print(
            f"pipeline  docpipe run:        elapsed {s.elapsed_s:7.1f} s  "
            f"{s.documents / s.elapsed_s:6.2f} docs/s  {pipeline_rate:6.2f} chunks/s  "
            f"(whole command {run.wall_s:.1f} s, workers ready after {run.ready_s or 0:.1f} s)"
        )
        if bare is None:
            raise SystemExit("no chunks were stored: nothing to compare with")
        print(
            f"bare      encode batch {args.bare_batch_size:<3}:   elapsed {bare.wall_s:7.1f} s"
            f"  {'':>13}  {bare.rate:6.2f} chunks/s  ({bare.threads} torch threads, "
            f"{bare.mean_tokens:.0f} tokens/chunk, {1000 * bare.cpu_s / bare.texts:.0f} CPU ms/chunk)"
        )
        cli_run.print_load(run, bare)
        if summary_run is not None:
            t = summary_run.summary
            print(
                f"with --summarize:              elapsed {t.elapsed_s:7.1f} s  "
                f"{t.documents / t.elapsed_s:6.2f} docs/s  {t.chunks / t.elapsed_s:6.2f} chunks/s"
                f"  failed={t.failed_count}"
            )
            if t.failed:
                reasons = Counter(f"[{f.failure_stage}] {f.failure_reason[:80]}" for f in t.failed)
                for reason, count in reasons.most_common():
                    print(f"  {count:3d} x {reason}")
            # With failures (e.g. deadline timeouts) this is a lower bound.
            print(f"summary_cost={t.elapsed_s / s.elapsed_s:.3f}")
        print(f"ratio={pipeline_rate / bare.rate:.3f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
