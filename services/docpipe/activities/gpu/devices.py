"""Which devices the GPU worker places model replicas on.

GPU_COUNT says how many GPUs a pod was given; fewer visible means use those,
none means the worker still runs, on the CPU, so the same image and code path
serve a laptop, CI and a GPU node.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def plan_devices(requested: int, available: int) -> list[str]:
    """Pure placement policy: the first min(requested, available) GPUs, else the CPU."""
    count = min(max(requested, 0), max(available, 0))
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]


def visible_devices(requested: int) -> list[str]:
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    devices = plan_devices(requested, available)
    if devices == ["cpu"] and requested > 0:
        log.warning("GPU_COUNT=%d but no CUDA device is visible: running on the CPU", requested)
    return devices


def slots_for(devices: list[str], per_device: int) -> int:
    """Concurrent activity slots: per_device for each GPU (the CPU counts as one)."""
    return max(1, len(devices)) * per_device
