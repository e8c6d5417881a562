"""Re-driving the dead letter: failed documents, run again from their source.

A failed document keeps its id (a hash of its source), so a re-drive updates
its row, objects and vectors in place. Rows that failed at the CSV stage have
no usable source: they are reported, not re-run, because only fixing the CSV
row can help them. Neither can a row whose source carried credentials: it is
stored redacted (:func:`docpipe.redact.redact_url`), so only its CSV row, run
again, has the URL that can be fetched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from docpipe.models import DocumentRef, Stage
from docpipe.redact import is_redacted


@dataclass
class RedrivePlan:
    documents: list[DocumentRef] = field(default_factory=list)
    not_redrivable: list[dict[str, Any]] = field(default_factory=list)


def plan_redrive(failed_rows: list[dict[str, Any]]) -> RedrivePlan:
    """Pure: dead-letter rows in, documents to re-run (and the rest, with why) out."""
    plan = RedrivePlan()
    for row in failed_rows:
        if row.get("stage") == Stage.CSV or not row.get("source"):
            plan.not_redrivable.append(row)
            continue
        if is_redacted(row["source"]):
            reason = "its source carried credentials, which are not stored: run its CSV row again"
            plan.not_redrivable.append({**row, "reason": reason})
            continue
        plan.documents.append(
            DocumentRef(
                document_id=row["document_id"],
                source=row["source"],
                row_number=int(row.get("row_number") or 0),
                title=row.get("title") or "",
                tags=list(row.get("tags") or []),
            )
        )
    return plan
