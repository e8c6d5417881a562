"""Activity names, queues and retry policies, shared by workflows and workers.

Workflows call activities by name so that importing a workflow never pulls in
torch, psycopg or boto (the workflow sandbox re-imports modules per run).
Each step family gets its own retry policy: network steps retry longer with
backoff, CPU steps retry little because a deterministic step that failed once
will fail again. Bad input never reaches Temporal's retry at all: activities
return it as a per-document failure.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from docpipe.models import PipelineOptions, StepTimeouts, TaskQueues

__all__ = ["PipelineOptions", "StepTimeouts", "TaskQueues"]

# Activity names (the contract between workflows and workers).
PARSE_CSV = "parse_csv"
DOWNLOAD_DOCUMENTS = "download_document"
PREPARE_DOCUMENTS = "prepare_text"
GENERATE_EMBEDDINGS = "generate_embeddings"
STORE_VECTORS = "store_vector_embeddings"
STORE_METADATA = "store_metadata"
CALL_EXTERNAL_API = "call_external_api"
RUN_LLM_INFERENCE = "run_llm_inference"
PERFORM_OCR = "perform_ocr"
QUERY_METADATA = "query_metadata_database"

NON_RETRYABLE = ["DocumentError", "ConfigError", "WebhookRejected"]

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
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE,
)
GPU_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=4,
    non_retryable_error_types=NON_RETRYABLE,
)
