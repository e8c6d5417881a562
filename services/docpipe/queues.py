"""Task-queue names and the default concurrency of the worker that polls each.

Work is split by the resource it needs, so each queue has its own worker type
and its own scaling signal. The names are defaults; Settings can rename them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

WORKFLOW_QUEUE = "document-pipeline-queue"
CPU_QUEUE = "cpu-bound-queue"
GPU_QUEUE = "gpu-bound-queue"
IO_QUEUE = "io-bound-queue"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    resource: str
    default_concurrency: int
    description: str


def default_specs() -> tuple[QueueSpec, ...]:
    cores = os.cpu_count() or 1
    return (
        QueueSpec(WORKFLOW_QUEUE, "workflow", 1000, "workflow tasks only"),
        QueueSpec(CPU_QUEUE, "cpu", cores * 2, "text extraction and processing, process pool"),
        QueueSpec(GPU_QUEUE, "gpu", 4, "batched model inference, 4 slots per GPU"),
        QueueSpec(IO_QUEUE, "io", 200, "network and storage, async"),
    )
