"""Task-queue names (the workers' concurrency defaults are in config.py).

Work is split by the resource it needs, so each queue has its own worker type
and its own scaling signal. The names are defaults; Settings can rename them.
"""

from __future__ import annotations

WORKFLOW_QUEUE = "document-pipeline-queue"
CPU_QUEUE = "cpu-bound-queue"
GPU_QUEUE = "gpu-bound-queue"
IO_QUEUE = "io-bound-queue"
