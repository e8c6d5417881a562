"""The activity contract: activity names, retry policies and attempt budgets.

Workflows and the workers that run their activities both import it, so it sits
at the package root beside queues.py and models.py and imports nothing heavy.
Workflows call activities by name, so importing a workflow never pulls in
torch, psycopg or boto (the workflow sandbox re-imports modules per run), and
an activity worker never imports the workflows package.

Each step family gets its own retry policy. Bad input never reaches
Temporal's retry at all: activities return it as a per-document failure, so
what does reach it is infrastructure: a server down, a worker killed (its
attempt ends at the heartbeat timeout). CPU and GPU steps read and write the
object store too, so every policy must outlast the same outage of a server:
OUTAGE_TOLERANCE_S of backoff alone, before the last attempt. Network steps
retry longest, as they meet flaky remote servers as well.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Activity names: the contract between workflows and workers. Running workflows'
# histories hold these strings, so they never change; each constant is named after
# its string.
PARSE_CSV = "parse_csv"
DOWNLOAD_DOCUMENT = "download_document"
PREPARE_TEXT = "prepare_text"
GENERATE_EMBEDDINGS = "generate_embeddings"
STORE_VECTOR_EMBEDDINGS = "store_vector_embeddings"
STORE_METADATA = "store_metadata"
CALL_EXTERNAL_API = "call_external_api"
RUN_LLM_INFERENCE = "run_llm_inference"
PERFORM_OCR = "perform_ocr"
QUERY_METADATA_DATABASE = "query_metadata_database"

NON_RETRYABLE = ["DocumentError", "ConfigError", "WebhookRejected"]

OUTAGE_TOLERANCE_S = 30.0
"""Every step's backoff adds up to at least this before its last attempt."""

IO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
    non_retryable_error_types=NON_RETRYABLE,
)
CPU_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=7,  # 1+2+4+8+10+10 = 35 s of backoff
    non_retryable_error_types=NON_RETRYABLE,
)
GPU_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,  # 2+4+8+16 = 30 s of backoff
    non_retryable_error_types=NON_RETRYABLE,
)


def retry_window_s(policy: RetryPolicy) -> float:
    """Seconds of backoff between the first and the last attempt: the longest
    outage a step is sure to survive (attempts themselves take time too)."""
    if not policy.maximum_attempts:
        return float("inf")
    interval = policy.initial_interval.total_seconds()
    cap = policy.maximum_interval.total_seconds() if policy.maximum_interval else float("inf")
    total = 0.0
    for _ in range(policy.maximum_attempts - 1):
        total += min(interval, cap)
        interval *= policy.backoff_coefficient
    return total


def attempt_budget(base_s: float, work: float = 0.0, per_unit_s: float = 0.0) -> timedelta:
    """Start-to-close of one attempt: the step's base budget plus an allowance for
    the work it carries (chunks, pages, megabytes). Queue time is never part of it:
    what this bounds is running, so a long queue fails nothing and a hung attempt
    is still caught and retried."""
    return timedelta(seconds=base_s + max(work, 0.0) * per_unit_s)
