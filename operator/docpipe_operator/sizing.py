"""Pod sizes that contradict what the worker will do with them. Pure.

The CPU worker extracts each document in a lane of its own under an address-space
limit (``CPU_EXTRACT_MEMORY_LIMIT_MB``, 1024 by default): a document that needs
more fails alone, with a reason. That promise holds only if the pod may hold every
lane at its limit at once; below that, a few large documents together reach the
pod's memory limit first, and the kernel kills the whole worker (every document in
flight is retried, and the one that caused it is not named). Such a spec is not
refused (lanes seldom all peak together, and a user may accept the risk), but it
is said, as a Warning on the pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from docpipe_operator.spec import PipelineSpec, PoolSpec

EXTRACT_LIMIT_ENV = "CPU_EXTRACT_MEMORY_LIMIT_MB"
DEFAULT_EXTRACT_LIMIT_MB = 1024
"""The worker's default (docpipe.config.Settings.cpu_extract_memory_limit_mb)."""
WORKER_BASE_MB = 512
"""The worker process itself: the Temporal SDK, the tokenizer, the metrics server."""

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)([KMGTPE]i?|[kmu]|n)?$")
_FACTORS = {
    None: 1,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    **{f"{unit}i": 1024 ** (power + 1) for power, unit in enumerate("KMGTPE")},
}


def quantity_bytes(value: Any) -> float | None:
    """A Kubernetes memory quantity in bytes ("6Gi", "512M", "1e9", 1073741824);
    None for anything else (the API server has already refused real nonsense)."""
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        return None
    return float(match.group(1)) * _FACTORS[match.group(2)]


def _env_int(pool: PoolSpec, name: str) -> int | None:
    for item in pool.env:
        if item.get("name") == name and "value" in item:
            try:
                return int(str(item["value"]))
            except ValueError:
                return None
    return None


def memory_needed_mb(pool: PoolSpec) -> int:
    """What a CPU pod may use with every extraction lane at its limit."""
    limit = _env_int(pool, EXTRACT_LIMIT_ENV)
    per_lane = DEFAULT_EXTRACT_LIMIT_MB if limit is None else limit
    return pool.knobs.concurrency * per_lane + WORKER_BASE_MB


def sizing_problems(spec: PipelineSpec) -> list[str]:
    """One line per pool whose memory limit is below what its worker may use."""
    pool = spec.pools.get("cpu")
    if pool is None:
        return []
    limits: Mapping[str, Any] = pool.resources.get("limits") or {}
    have = quantity_bytes(limits.get("memory")) if "memory" in limits else None
    if have is None:
        return []
    needed = memory_needed_mb(pool)
    if have >= needed * 1024**2:
        return []
    return [
        f"cpu: memory limit {limits['memory']} is below {needed} Mi "
        f"(concurrency {pool.knobs.concurrency} x {EXTRACT_LIMIT_ENV} + {WORKER_BASE_MB} Mi "
        "for the worker): large documents together can get the pod OOM-killed instead of "
        "failing alone; raise the limit, lower concurrency, or set "
        f"{EXTRACT_LIMIT_ENV} in the pool's env"
    ]
