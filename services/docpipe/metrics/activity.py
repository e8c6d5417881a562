"""Per-activity metrics for every worker, recorded by one interceptor.

Counting in an interceptor rather than in each activity means a new activity
is measured without anyone remembering to add a line, and failures that
escape the activity body are counted too.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from docpipe.metrics.gpu import INFERENCE_ITEMS
from docpipe.steps import PERFORM_OCR

ACTIVITY_SECONDS = Histogram(
    "docpipe_activity_duration_seconds",
    "Wall time of one activity execution (a batch of documents).",
    ["worker", "activity", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
ACTIVITIES_IN_FLIGHT = Gauge(
    "docpipe_activities_in_flight", "Activities executing now.", ["worker", "activity"]
)
DOCUMENTS = Counter(
    "docpipe_documents_total",
    "Documents handled by an activity, by result (succeeded, failed, needs_ocr).",
    ["worker", "activity", "result"],
)


def count_documents(worker: str, result: Any) -> None:
    """Count per-document successes/failures of a batch result, if it has them."""
    name = activity.info().activity_type
    succeeded = getattr(result, "succeeded", None)
    failed = getattr(result, "failed", None)
    needs_ocr = getattr(result, "needs_ocr", None)
    if isinstance(succeeded, list):
        DOCUMENTS.labels(worker, name, "succeeded").inc(len(succeeded))
    if isinstance(failed, list):
        DOCUMENTS.labels(worker, name, "failed").inc(len(failed))
    if isinstance(needs_ocr, list):
        # prepare_text hands images and scanned PDFs to OCR: neither done nor failed.
        DOCUMENTS.labels(worker, name, "needs_ocr").inc(len(needs_ocr))
    if name == PERFORM_OCR and isinstance(succeeded, list):
        pages = sum(getattr(item, "pages", 0) for item in succeeded)
        INFERENCE_ITEMS.labels("ocr", "easyocr").inc(pages)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, worker: str) -> None:
        super().__init__(next)
        self._worker = worker

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        in_flight = ACTIVITIES_IN_FLIGHT.labels(self._worker, name)
        in_flight.inc()
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await super().execute_activity(input)
            outcome = "ok"
            count_documents(self._worker, result)
            return result
        finally:
            in_flight.dec()
            ACTIVITY_SECONDS.labels(self._worker, name, outcome).observe(
                time.perf_counter() - started
            )


class ActivityMetricsInterceptor(Interceptor):
    def __init__(self, worker: str) -> None:
        self._worker = worker

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self._worker)
