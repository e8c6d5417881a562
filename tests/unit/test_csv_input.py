"""Reading the documents CSV: every data row becomes a document, bad rows included."""

from pathlib import Path

import pytest

from docpipe.client.starter import batched
from docpipe.csv_input import CsvFormatError, document_id_for, parse_documents_csv


def parse(text: str, base: Path = Path("/data")) -> list:
    return parse_documents_csv(text, base_dir=base, origin="test.csv")


def test_a_relative_path_is_resolved_against_the_csv_folder():
    [doc] = parse("url,title\ndocs/a.txt,A\n")
    assert doc.source == "/data/docs/a.txt"
    assert doc.title == "A"
    assert doc.invalid_reason is None


def test_urls_are_kept_as_written_and_columns_are_read():
    [doc] = parse(
        "url,title,content_type,tags,language\nhttps://x.test/a.html,A,text/html,a; b,de\n"
    )
    assert doc.source == "https://x.test/a.html"
    assert doc.declared_type == "text/html"
    assert doc.tags == ["a", "b"]
    assert doc.language_hint == "de"


def test_the_document_id_depends_only_on_the_source_so_reruns_upsert():
    first = parse("url\nhttps://x.test/a\n")[0].document_id
    again = parse("url,title\nhttps://x.test/a,other title\n")[0].document_id
    assert first == again == document_id_for("https://x.test/a")


def test_a_row_without_url_fails_at_the_csv_stage_with_a_reason():
    docs = parse("url,title\n,No URL\nhttps://x.test/b,B\n")
    assert docs[0].invalid_reason == "row has no url"
    assert docs[0].row_number == 2
    assert docs[1].invalid_reason is None


def test_a_row_with_too_many_fields_is_reported_not_dropped():
    docs = parse("url,title\na.txt,A,extra,fields\n")
    assert docs[0].invalid_reason == "row has 4 fields but the header has 2"


def test_a_duplicate_source_is_reported_with_the_row_it_repeats():
    docs = parse("url\na.txt\nb.txt\na.txt\n")
    assert docs[2].invalid_reason == "duplicate of row 2 (same source)"
    assert docs[2].document_id != docs[0].document_id, (
        "the failure must not overwrite the first row"
    )


def test_blank_lines_are_not_rows_and_a_bom_is_ignored():
    docs = parse("\ufeffurl\n\na.txt\n\n")
    assert [d.source for d in docs] == ["/data/a.txt"]


def test_a_file_without_a_url_column_is_rejected_as_a_whole():
    with pytest.raises(CsvFormatError, match="no url column"):
        parse("name,title\na,b\n")
    with pytest.raises(CsvFormatError, match="empty"):
        parse("")


def test_an_oversized_cell_fails_only_its_row():
    big = "x" * (2 * 1024 * 1024)
    docs = parse(f'url,title\na.txt,"{big}"\nb.txt,B\n')
    assert docs[0].invalid_reason and "unreadable CSV row" in docs[0].invalid_reason
    assert docs[-1].source == "/data/b.txt" and docs[-1].invalid_reason is None


def test_batches_keep_order_and_size():
    assert batched(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError):
        batched([1], 0)
