"""Status conditions, phase and Events of a DocumentPipeline. Pure.

Conditions follow the Kubernetes convention (metav1.Condition): one entry per
type, ``lastTransitionTime`` moves only when ``status`` flips, so
``kubectl describe dp`` tells since when something has been true.

* ``Ready``: every pool's Deployment exists, runs its current template on all
  its pods (``updatedReplicas``, ``observedGeneration``) and has them ready.
  Ready pods alone are not enough: with ``maxUnavailable: 0`` the old pods stay
  ready while a bad image never starts.
* ``Progressing``: False with reason ``ProgressDeadlineExceeded`` when a
  Deployment says its rollout is stuck (its own ``Progressing`` condition);
  the phase is then ``Degraded``.
* ``TemporalReachable``: the last backlog reading succeeded.
* ``Scaling``: the autoscaler is acting on fresh statistics (False: it is
  holding replicas because it has none, or because the pipeline is paused).
* ``Paused``: the pipeline carries ``docpipe.io/paused: "true"``: replicas are
  frozen (phase ``Paused``). Written once a pipeline has been paused.
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
PROGRESSING = "Progressing"
PAUSED = "Paused"

NOT_ALLOWED = "NotAllowed"
"""Ready's reason and the Warning's reason when trust.py refuses a pipeline."""


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    PAUSED = "Paused"
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


_ORDER = {READY: 0, PROGRESSING: 1, TEMPORAL_REACHABLE: 2, SCALING: 3, PAUSED: 4}


class Rollout(StrEnum):
    """Where a pool's Deployment stands with its current template."""

    COMPLETE = "Complete"
    PROGRESSING = "Progressing"
    STUCK = "Stuck"


PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


def rollout(
    replicas: int,
    updated: int,
    generation: int | None,
    observed_generation: int | None,
    stuck: str | None,
) -> tuple[Rollout, str]:
    """A Deployment's rollout from what its controller reports.

    ``stuck`` is the message of its ``Progressing`` condition when the reason is
    ProgressDeadlineExceeded (``progressDeadlineSeconds`` passed without progress).
    """
    if stuck is not None:
        return Rollout.STUCK, stuck
    if generation is not None and (observed_generation or 0) < generation:
        return Rollout.PROGRESSING, "the Deployment controller has not seen the template yet"
    if updated < replicas:
        return Rollout.PROGRESSING, f"{updated}/{replicas} pods run the current template"
    return Rollout.COMPLETE, "every pod runs the current template"


def progressing_condition(pools: Mapping[str, Mapping[str, Any]]) -> tuple[bool, str, str]:
    """(ok, reason, message) of ``Progressing``: False only for a stuck rollout."""
    stuck = [
        f"{kind}: {pool.get('rolloutMessage', '')}"
        for kind, pool in pools.items()
        if pool.get("rollout") == Rollout.STUCK
    ]
    if stuck:
        return False, PROGRESS_DEADLINE_EXCEEDED, "; ".join(stuck)
    rolling = [
        f"{kind}: {pool.get('rolloutMessage', '')}"
        for kind, pool in pools.items()
        if pool.get("rollout") == Rollout.PROGRESSING
    ]
    if rolling:
        return True, "RollingOut", "; ".join(rolling)
    return True, "RolloutComplete", "every pool runs its current template"


def stuck_pools(pools: Mapping[str, Mapping[str, Any]]) -> set[str]:
    return {kind for kind, pool in pools.items() if pool.get("rollout") == Rollout.STUCK}


def ready_condition(pools: Mapping[str, Mapping[str, Any]]) -> tuple[bool, str, str]:
    """(ok, reason, message) of ``Ready`` from the pools' status entries."""
    missing = [kind for kind, pool in pools.items() if pool.get("currentReplicas") is None]
    if missing:
        return False, "DeploymentMissing", "no Deployment yet for: " + ", ".join(missing)
    if stuck := sorted(stuck_pools(pools)):
        return (
            False,
            "RolloutStuck",
            "rollout stuck (ProgressDeadlineExceeded): " + ", ".join(stuck),
        )
    lagging = [
        f"{kind} {pool.get('readyReplicas', 0)}/{pool['currentReplicas']}"
        for kind, pool in pools.items()
        if pool.get("readyReplicas", 0) < pool["currentReplicas"]
    ]
    if lagging:
        return False, "PodsNotReady", "ready/wanted: " + ", ".join(lagging)
    rolling = [
        f"{kind} ({pool.get('rolloutMessage', '')})"
        for kind, pool in pools.items()
        if pool.get("rollout") == Rollout.PROGRESSING
    ]
    if rolling:
        return (
            False,
            "RollingOut",
            "the current template is not on every pod: " + ", ".join(rolling),
        )
    return True, "AllPoolsReady", "every pool has the replicas it wants ready"


def phase(
    ready: bool, temporal_reachable: bool, *, stuck: bool = False, paused: bool = False
) -> Phase:
    """Paused wins: during an incident it is the first thing to know (the conditions
    still say whether Temporal answers and the rollouts progress)."""
    if paused:
        return Phase.PAUSED
    if not temporal_reachable or stuck:
        return Phase.DEGRADED
    return Phase.RUNNING if ready else Phase.PENDING
