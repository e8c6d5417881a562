"""Retrieval quality of ``docpipe search`` on REAL documents: MRR@10 and recall@10
of vector, text and hybrid search on known-item queries.

The corpus is the documentation installed on this machine (HTML pages and PDF
manuals under /usr/share/doc, /usr/share and the interpreter's site-packages;
see bench/corpus.py for how files are chosen, deterministically). It is ingested
exactly as a user would: ``docpipe run CSV`` (embedded stack, four workers,
default settings, files served over HTTP on 127.0.0.1); then the stack is
started again on the same data and searched through the read path the CLI and
the HTTP API use.

Known-item queries: each document's own title (HTML ``<title>``, else its first
``<h1>``/``<h2>``; a PDF's Title metadata) is the query, and that document is
the answer. The CSV gives no titles, so nothing but the text can match. Titles
that are generic ("Index", "Contents"), shorter than two words or shared by
several documents are skipped: they have no single right answer.

    MRR@10    = mean of 1 / rank of the answer among the first 10 distinct
                documents returned (0 if absent)
    recall@10 = share of queries whose answer is among those 10

Search asks for 50 chunks and ranks documents by their best chunk. The last line
printed is ``mrr_vector=… mrr_text=… mrr_hybrid=… recall_hybrid=…``.

Usage: python bench/retrieval.py [--html 120] [--pdf 6] [--keep DIR]
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench_args import bench_parser
from cli_run import loopback_download_env, remove_stack_data, run_docpipe, serve_directory
from corpus import candidates, pick

from docpipe.csv_input import document_id_for
from docpipe.retrieval.filters import SearchMode, search_request

TOP = 10
CHUNKS_ASKED = 50
GENERIC = re.compile(
    r"^(index|contents|table of contents|search|search results|untitled|home|"
    r"overview|introduction|readme|changelog|changes|news|license|copying)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class KnownItem:
    document_id: str
    query: str
    path: Path


def html_title(path: Path) -> str:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(path.read_bytes().decode("utf-8", errors="replace"))
    for selector in ("title", "h1", "h2"):
        node = tree.css_first(selector)
        text = " ".join(node.text().split()) if node is not None else ""
        if text:
            return text
    return ""


def pdf_title(path: Path) -> str:
    import pypdfium2

    try:
        pdf = pypdfium2.PdfDocument(str(path))
    except pypdfium2.PdfiumError:
        return ""
    try:
        return " ".join(str(pdf.get_metadata_dict().get("Title", "")).split())
    finally:
        pdf.close()


def usable(title: str) -> bool:
    words = title.split()
    return 2 <= len(words) <= 20 and not GENERIC.match(title)


def build_corpus(folder: Path, html: int, pdf: int) -> list[tuple[str, Path, str]]:
    """Copy the chosen files into ``folder``; returns (kind, original, relative url)."""
    chosen = []
    for kind, count in (("html", html), ("pdf", pdf)):
        (folder / kind).mkdir(parents=True)
        max_bytes = 120 * 1024 if kind == "html" else 3 * 1024 * 1024
        for i, path in enumerate(pick(candidates(kind, max_bytes), count)):
            relative = f"{kind}/{i:03d}-{path.name}"
            (folder / relative).write_bytes(path.read_bytes())
            chosen.append((kind, path, relative))
    return chosen


def known_items(chosen: list[tuple[str, Path, str]], base_url: str) -> list[KnownItem]:
    titled = []
    for kind, original, relative in chosen:
        title = html_title(original) if kind == "html" else pdf_title(original)
        if usable(title):
            titled.append(KnownItem(document_id_for(f"{base_url}/{relative}"), title, original))
    counts = Counter(item.query.lower() for item in titled)
    return [item for item in titled if counts[item.query.lower()] == 1]


def rank_of(answer: str, document_ids: list[str]) -> int | None:
    """1-based rank of ``answer`` among the first TOP distinct documents, else None."""
    distinct = list(dict.fromkeys(document_ids))[:TOP]
    return distinct.index(answer) + 1 if answer in distinct else None


async def evaluate(data_dir: Path, items: list[KnownItem]) -> dict[SearchMode, list[int | None]]:
    from docpipe.local.devstack import DevStack
    from docpipe.retrieval.service import open_read_path

    ranks: dict[SearchMode, list[int | None]] = {mode: [] for mode in SearchMode}
    async with DevStack(data_dir, persistent=True, object_store="local") as stack:
        async with open_read_path(stack.settings()) as read_path:
            stored = await read_path.metadata.rows(item.document_id for item in items)
            searchable = [
                item
                for item in items
                if stored.get(item.document_id, {}).get("status") == "succeeded"
                and (stored[item.document_id].get("chunk_count") or 0) > 0
            ]
            print(f"known-item queries: {len(searchable)} (of {len(items)} titled documents)")
            for item in searchable:
                for mode in SearchMode:
                    hits = await read_path.search(
                        search_request(item.query, k=CHUNKS_ASKED, mode=mode)
                    )
                    ranks[mode].append(rank_of(item.document_id, [h.document_id for h in hits]))
    return ranks


def mrr(ranks: list[int | None]) -> float:
    return sum(1 / r for r in ranks if r) / len(ranks) if ranks else 0.0


def recall(ranks: list[int | None]) -> float:
    return sum(1 for r in ranks if r) / len(ranks) if ranks else 0.0


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--html", type=int, default=120, help="HTML pages (default 120)")
    parser.add_argument("--pdf", type=int, default=6, help="PDF files, at most (default 6)")
    parser.add_argument("--keep", type=Path, help="keep the corpus and data here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="docpipe-bench-retrieval-") as tmp:
        root = args.keep.resolve() if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        chosen = build_corpus(root / "corpus", args.html, args.pdf)
        data_dir = root / "data"
        with serve_directory(root / "corpus") as base_url:
            items = known_items(chosen, base_url)
            csv_path = root / "documents.csv"
            rows = ["url,title,tags"] + [
                f"{base_url}/{rel},,real;{kind}" for kind, _, rel in chosen
            ]
            csv_path.write_text("\n".join(rows) + "\n")
            print(f"corpus: {Counter(k for k, _, _ in chosen)}; docpipe run {csv_path}")
            run = run_docpipe(
                csv_path, data_dir, env=loopback_download_env(), echo=False, timeout_s=3000
            )
        try:
            if run.returncode != 0 or run.summary.documents == 0:
                tail = "\n".join(run.output.splitlines()[-30:])
                raise SystemExit(f"docpipe run failed (exit {run.returncode}):\n{tail}")
            s = run.summary
            print(
                f"ingested: {s.succeeded_count} succeeded, {s.failed_count} failed, {s.chunks} chunks"
            )
            ranks = asyncio.run(evaluate(data_dir, items))
        finally:
            if not args.keep:
                remove_stack_data(data_dir)

    print(f"{'mode':<8} {'MRR@10':>7} {'recall@10':>9} {'first':>6}")
    for mode, found in ranks.items():
        first = sum(1 for r in found if r == 1)
        print(f"{mode.value:<8} {mrr(found):7.3f} {recall(found):9.3f} {first:>6}")
    print(
        f"mrr_vector={mrr(ranks[SearchMode.VECTOR]):.3f} mrr_text={mrr(ranks[SearchMode.TEXT]):.3f} "
        f"mrr_hybrid={mrr(ranks[SearchMode.HYBRID]):.3f} "
        f"recall_hybrid={recall(ranks[SearchMode.HYBRID]):.3f}"
    )


if __name__ == "__main__":
    main()
