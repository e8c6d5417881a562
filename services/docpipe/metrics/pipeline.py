"""Document outcomes and end-to-end latency, recorded where every outcome is known.

Each batch workflow ends by storing one metadata row per document
(``store_metadata`` on the IO worker), succeeded or failed, so that activity
is where the pipeline's result is counted: completed documents, failed ones by
the stage they failed at (the reason is free text, far too many values for a
label; it is in PostgreSQL and ``docpipe failures``), and the time from the
batch workflow's start (carried in the outcome) to its outcome being stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram

from docpipe.models import DocumentOutcome, Stage, Status

log = logging.getLogger(__name__)

COMPLETED = Counter(
    "docpipe_pipeline_documents_completed",
    "Documents that went through every step and were stored.",
)
FAILED = Counter(
    "docpipe_pipeline_documents_failed",
    "Documents that failed, by the stage they failed at.",
    ["stage"],
)
LATENCY = Histogram(
    "docpipe_pipeline_document_duration_seconds",
    "From the start of a document's batch workflow to its outcome being stored.",
    ["status"],
    buckets=(0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
for _stage in Stage:  # every stage reports 0 from the start: ratios and alerts need the series
    FAILED.labels(_stage.value)
for _status in Status:
    LATENCY.labels(_status.value)


def record_outcomes(outcomes: Sequence[DocumentOutcome]) -> None:
    """Count stored outcomes and observe their end-to-end latency."""
    for outcome in outcomes:
        if outcome.status == Status.SUCCEEDED:
            COMPLETED.inc()
        else:
            FAILED.labels(str(outcome.failure_stage or "unknown")).inc()
    now = datetime.now(UTC)
    for outcome in outcomes:
        if outcome.started_at is not None:  # set by the batch workflow
            elapsed = max((now - outcome.started_at).total_seconds(), 0.0)
            LATENCY.labels(str(outcome.status)).observe(elapsed)
