"""Status conditions, phase and Events of a DocumentPipeline. Pure.

Conditions follow the Kubernetes convention (metav1.Condition): one entry per
type, ``lastTransitionTime`` moves only when ``status`` flips, so
``kubectl describe dp`` tells since when something has been true.

* ``Ready``: every pool's Deployment exists and has as many ready pods as it wants.
* ``TemporalReachable``: the last backlog reading succeeded.
* ``Scaling``: the autoscaler is acting on fresh statistics (False: it is
  holding replicas because it has none).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

READY = "Ready"
TEMPORAL_REACHABLE = "TemporalReachable"
SCALING = "Scaling"

NOT_ALLOWED = "NotAllowed"
"""Ready's reason and the Warning's reason when trust.py refuses a pipeline."""


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    DEGRADED = "Degraded"
    INVALID = "Invalid"


@dataclass(frozen=True)
class Notice:
    """A Kubernetes Event to post on the DocumentPipeline."""

    type: str  # "Normal" or "Warning"
    reason: str
    message: str


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition_status(conditions: Iterable[Mapping[str, Any]], kind: str) -> str | None:
    for item in conditions:
        if item.get("type") == kind:
            return item.get("status")
    return None


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    kind: str,
    ok: bool | None,
    reason: str,
    message: str,
    *,
    generation: int | None = None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """``conditions`` with ``kind`` replaced (its transition time kept if status did not flip)."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    previous = next((dict(c) for c in conditions if c.get("type") == kind), None)
    changed = previous is None or previous.get("status") != status
    entry: dict[str, Any] = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        # A condition written by someone else may lack the time: it starts now then.
        "lastTransitionTime": (
            (now or now_iso())
            if changed or not previous.get("lastTransitionTime")
            else previous["lastTransitionTime"]
        ),
    }
    if generation is not None:
        entry["observedGeneration"] = generation
    others = [dict(c) for c in conditions if c.get("type") != kind]
    return sorted([*others, entry], key=lambda c: _ORDER.get(c["type"], 99))


_ORDER = {READY: 0, TEMPORAL_REACHABLE: 1, SCALING: 2}


def ready_condition(pools: Mapping[str, Mapping[str, Any]]) -> tuple[bool, str, str]:
    """(ok, reason, message) of ``Ready`` from the pools' status entries."""
    missing = [kind for kind, pool in pools.items() if pool.get("currentReplicas") is None]
    if missing:
        return False, "DeploymentMissing", "no Deployment yet for: " + ", ".join(missing)
    lagging = [
        f"{kind} {pool.get('readyReplicas', 0)}/{pool['currentReplicas']}"
        for kind, pool in pools.items()
        if pool.get("readyReplicas", 0) < pool["currentReplicas"]
    ]
    if lagging:
        return False, "PodsNotReady", "ready/wanted: " + ", ".join(lagging)
    return True, "AllPoolsReady", "every pool has the replicas it wants ready"


def phase(ready: bool, temporal_reachable: bool) -> Phase:
    if not temporal_reachable:
        return Phase.DEGRADED
    return Phase.RUNNING if ready else Phase.PENDING
