"""Which dead-letter rows a re-drive runs again."""

from docpipe.client.redrive import plan_redrive


def row(document_id: str, source: str, stage: str) -> dict:
    return {"document_id": document_id, "source": source, "stage": stage, "row_number": 4,
            "title": "T", "tags": ["a"], "reason": "x"}  # fmt: skip


def test_failed_documents_are_rerun_under_their_own_id():
    plan = plan_redrive([row("doc-1", "https://x.test/a", "download")])
    [doc] = plan.documents
    assert (doc.document_id, doc.source, doc.row_number, doc.title, doc.tags) == (
        "doc-1", "https://x.test/a", 4, "T", ["a"],
    )  # fmt: skip


def test_csv_stage_failures_are_reported_not_rerun():
    plan = plan_redrive([row("row-1", "", "csv"), row("doc-2", "/data/b.txt", "validate")])
    assert [d.document_id for d in plan.documents] == ["doc-2"]
    assert [r["document_id"] for r in plan.not_redrivable] == ["row-1"]


def test_a_source_stored_without_its_credentials_is_not_redriven() -> None:
    rows = [
        {"document_id": "d1", "source": "https://***@h.example/a.pdf", "stage": "download"},
        {
            "document_id": "d2",
            "source": "https://h.example/b.pdf?X-Amz-Signature=REDACTED",
            "stage": "download",
        },
        {"document_id": "d3", "source": "https://h.example/c.pdf?page=2", "stage": "download"},
    ]
    plan = plan_redrive(rows)
    assert [d.document_id for d in plan.documents] == ["d3"]
    assert [r["document_id"] for r in plan.not_redrivable] == ["d1", "d2"]
    assert all("credentials" in r["reason"] for r in plan.not_redrivable)
