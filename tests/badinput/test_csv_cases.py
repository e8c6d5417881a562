"""Malformed CSV files: every row is accounted for, a bad one fails alone with a reason.

A document list is user input like the documents themselves. Whatever is
wrong with a row (an unclosed quote, a 10 MB cell, a missing url) it becomes a
document that fails at the ``csv`` stage with the line it came from; the rows
around it are read as usual, and nothing is ever dropped without a trace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from docpipe.csv_input import CsvFormatError, documents_page, parse_documents_csv

BASE = Path("/data")


def parse(text: str) -> list:
    return parse_documents_csv(text, base_dir=BASE, origin="bad.csv")


def summary(text: str) -> list[tuple[int, str, str | None]]:
    """(line, file name, reason) per document, for assertions that read like the CSV."""
    return [
        (d.row_number, Path(d.source).name if d.source else "", d.invalid_reason)
        for d in parse(text)
    ]


def test_a_header_without_any_url_column_rejects_the_file_naming_what_it_found():
    with pytest.raises(CsvFormatError) as err:
        parse("title,tags\nA report,x\n")
    assert "no url column" in str(err.value) and "found title, tags" in str(err.value)


def test_a_file_with_only_a_bom_and_blank_lines_is_empty():
    with pytest.raises(CsvFormatError, match="empty"):
        parse("\ufeff\n\n  \n")


def test_a_utf8_bom_does_not_hide_the_url_column():
    assert summary("\ufeffurl,title\na.txt,A\n") == [(2, "a.txt", None)]


def test_an_unclosed_quote_fails_its_row_and_the_rows_after_it_are_still_read():
    rows = summary('url,title\na.txt,"Unclosed title\nb.txt,B\nc.txt,C\n')
    assert rows[1:] == [(3, "b.txt", None), (4, "c.txt", None)]
    line, name, reason = rows[0]
    assert (line, name) == (2, "")
    assert "quote opened on line 2 is never closed" in reason


def test_a_stray_quote_inside_a_field_is_kept_as_text():
    [doc] = parse('url,title\na.txt,The "best" guide\n')
    assert doc.title == 'The "best" guide' and doc.invalid_reason is None


def test_a_quoted_field_may_span_lines_and_the_next_row_keeps_its_line_number():
    assert summary('url,title\na.txt,"two\nlines"\nb.txt,B\n') == [
        (2, "a.txt", None),
        (4, "b.txt", None),
    ]


def test_a_10_mb_cell_fails_only_its_row_with_the_limit_in_the_reason():
    rows = summary("url,title\na.txt," + "x" * (10 * 1024 * 1024) + "\nb.txt,B\n")
    assert rows[0][:2] == (2, "") and "larger than the 1024 KB limit" in rows[0][2]
    assert rows[1] == (3, "b.txt", None)


def test_a_quoted_10_mb_cell_over_many_lines_is_skipped_whole_not_read_as_rows():
    cell = ("x" * 1000 + "\n") * 10_000
    rows = summary(f'url,title\na.txt,"{cell}"\nb.txt,B\n')
    assert len(rows) == 2
    assert rows[0][:2] == (2, "") and "lines 2-10002" in rows[0][2]
    assert rows[1] == (10003, "b.txt", None)


def test_rows_with_missing_or_extra_fields_fail_with_their_reason():
    rows = summary("url,title,tags\n,No URL\na.txt,A,t,extra\nb.txt\n")
    assert rows == [
        (2, "", "row has no url"),
        (3, "", "row has 4 fields but the header has 3"),
        (4, "b.txt", None),
    ]


def test_control_characters_are_removed_from_titles_and_tags_so_postgresql_can_store_them():
    [doc] = parse("url,title,tags\na.txt,Tide\x00 tables\x07,har\x00bour;x\n")
    assert (doc.title, doc.tags, doc.invalid_reason) == ("Tide tables", ["harbour", "x"], None)


def test_a_url_with_a_nul_byte_fails_its_row_instead_of_the_download_step():
    rows = summary("url\nnotes\x00.txt\nb.txt\n")
    assert rows == [
        (2, "", "the url contains control characters (a NUL, a line break ...)"),
        (3, "b.txt", None),
    ]


def test_a_cell_too_long_for_the_workflow_payload_fails_its_row():
    rows = summary("url,title\na.txt," + "t" * 9000 + "\nb.txt,B\n")
    assert rows == [
        (2, "", "the title cell is 9,000 characters long; the limit is 8,192"),
        (3, "b.txt", None),
    ]


def test_paging_a_csv_parses_it_once_and_pages_are_slices():
    text = "url\n" + "".join(f"f{i}.txt\n" for i in range(2500))
    first, next_offset = documents_page(text, 0, 1000, base_dir=BASE, origin="p.csv")
    assert len(first) == 1000 and next_offset == 1000
    last, done = documents_page(text, 2000, 1000, base_dir=BASE, origin="p.csv")
    assert [Path(d.source).name for d in last[:2]] == ["f2000.txt", "f2001.txt"]
    assert done is None and len(last) == 500


MEASURE_100K = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from docpipe.csv_input import documents_page

    def peak_rss_mb():
        # VmHWM, not ru_maxrss: that one keeps the forking parent's peak across exec.
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        return int(status.split()[0]) / 1024

    rows = "".join(f"docs/report-{i:06d}.txt,Quarterly report {i},finance;q{i % 4}\\n"
                   for i in range(100_000))
    text = "url,title,tags\\n" + rows
    started = time.perf_counter()
    offset, documents, pages = 0, 0, 0
    while offset is not None:
        page, offset = documents_page(text, offset, 500, base_dir=Path("/data"), origin="big.csv")
        documents += len(page)
        pages += 1
    print(json.dumps({
        "documents": documents, "pages": pages, "csv_mb": len(text) / 1e6,
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
    }))
    """
)


def test_a_100k_row_csv_is_read_page_by_page_in_bounded_time_and_memory():
    """In its own process, so the peak RSS is the parser's alone."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE_100K], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    print(f"\n100k-row CSV: {figures}")
    assert figures["documents"] == 100_000 and figures["pages"] == 200
    # One parse (~2 s here), then slices; parsing per page took minutes.
    assert figures["seconds"] < 30
    assert figures["peak_rss_mb"] < 300, "about 1 KB per row plus the interpreter"
