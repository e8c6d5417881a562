"""The cpu-like pool knobs the policy and simulator tests start from (one copy)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from docpipe_operator.scaling import ScalingKnobs

KNOBS = ScalingKnobs(
    min_replicas=1,
    max_replicas=20,
    concurrency=4,
    target_backlog_per_replica=4,
    task_seconds=10,
    target_backlog_age_s=30,
    scale_up_horizon_s=30,
    scale_down_stabilization_s=120,
    max_scale_down_step=2,
)


def knobs(**changes: Any) -> ScalingKnobs:
    """:data:`KNOBS` with some fields changed."""
    return replace(KNOBS, **changes)
