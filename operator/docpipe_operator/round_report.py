"""What one autoscaling round reports: each pool's status entry, the pipeline's
conditions and phase, and its Events. Pure.

Events are posted once per change, not once per round: ``seen`` (the pipeline's
memo) remembers what the last round said, since the body's own status can lag a
round behind under load.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from docpipe.queue_stats import QueueStats
from docpipe_operator import POOLS, scaling
from docpipe_operator.backlog import BacklogReading
from docpipe_operator.kube import DeploymentState
from docpipe_operator.spec import PAUSED_ANNOTATION
from docpipe_operator.status import (
    PAUSED,
    PROGRESSING,
    READY,
    SCALING,
    TEMPORAL_REACHABLE,
    Notice,
    condition_status,
    iso,
    phase,
    progressing_condition,
    ready_condition,
    rollout,
    set_condition,
    stuck_pools,
)


def hands_off_status(
    kind: str, why: str, found: DeploymentState, stats: QueueStats | None
) -> dict[str, Any]:
    """A pool's status entry when its replicas are not the operator's to set."""
    if why == "paused":
        reason = "Paused"
        message = (
            f'replicas frozen at {found.replicas} ({PAUSED_ANNOTATION}: "true"); '
            "remove the annotation to resume autoscaling"
        )
    else:
        reason = "External"
        message = (
            f"{found.replicas} replicas, set by an external autoscaler (autoscaling: "
            "external); the operator never writes them"
        )
    entry: dict[str, Any] = {
        "desiredReplicas": found.replicas,
        "lastDecision": reason,
        "lastDecisionMessage": message,
        "autoscaling": why,
    }
    entry |= _queue_status(stats)
    return entry


def pause_notices(
    body: Mapping[str, Any], paused: bool, seen: MutableMapping[str, Any] | None
) -> list[Notice]:
    """One Event when a pause begins and one when it ends (not one per round)."""
    conditions = (body.get("status") or {}).get("conditions") or []
    was = condition_status(conditions, PAUSED) == "True"
    if seen is not None:
        was = seen.get("paused", was)
        seen["paused"] = paused
    if paused and not was:
        return [
            Notice(
                "Normal",
                "Paused",
                f'{PAUSED_ANNOTATION}: "true": replicas are frozen; kubectl scale sticks',
            )
        ]
    if was and not paused:
        return [Notice("Normal", "Resumed", "autoscaling resumed from the current replicas")]
    return []


def missing_stats_notices(
    reading: BacklogReading, seen: MutableMapping[str, Any] | None
) -> list[Notice]:
    """One Warning when queues start answering without statistics."""
    before = set() if seen is None else seen.get("stats_missing", set())
    now = set(reading.missing) | (before - set(reading.stats))  # pools not read keep theirs
    if seen is not None:
        seen["stats_missing"] = now
    new = sorted(now - before)
    if not new:
        return []
    message = "holding replicas: " + "; ".join(reading.missing[kind] for kind in new)
    return [Notice("Warning", "QueueStatsMissing", message)]


def observed(found: DeploymentState) -> dict[str, Any]:
    """A pool's status entry from its Deployment: replicas and where its rollout stands."""
    state, message = rollout(
        found.replicas,
        found.updated_replicas,
        found.generation,
        found.observed_generation,
        found.stuck,
    )
    return {
        "currentReplicas": found.replicas,
        "readyReplicas": found.ready_replicas,
        "updatedReplicas": found.updated_replicas,
        "rollout": state.value,
        "rolloutMessage": message,
    }


def stuck_notices(
    body: Mapping[str, Any],
    pools: Mapping[str, Mapping[str, Any]],
    seen: MutableMapping[str, Any] | None,
) -> list[Notice]:
    """One Warning per pool whose rollout got stuck (not one per round)."""
    previous = (body.get("status") or {}).get("pools") or {}
    before = stuck_pools(previous)
    if seen is not None:
        before = seen.get("stuck_rollouts", before)
        seen["stuck_rollouts"] = stuck_pools(pools)
    return [
        Notice(
            "Warning",
            "RolloutStuck",
            f"{kind}: {pools[kind].get('rolloutMessage')} (the old pods keep serving; "
            "check the image and the pods' events)",
        )
        for kind in sorted(stuck_pools(pools) - before)
    ]


def decision_status(
    decision: scaling.Decision, stats: QueueStats | None, now: float
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "desiredReplicas": decision.replicas,
        "lastDecision": decision.reason.value,
        "lastDecisionMessage": decision.message,
    }
    entry |= _queue_status(stats)
    if decision.load is not None:
        entry["inFlightEstimate"] = round(decision.load.in_flight, 3)
    if decision.direction:
        entry["lastScaleTime"] = iso(now)
        entry["lastScaleReason"] = decision.reason.value
    return entry


def scale_notice(kind: str, decision: scaling.Decision) -> Notice:
    reason = "ScaledUp" if decision.direction > 0 else "ScaledDown"
    return Notice("Normal", reason, f"{kind}: {decision.message} [{decision.reason.value}]")


def round_status(
    body: Mapping[str, Any],
    pools: dict[str, dict[str, Any]],
    reading: BacklogReading,
    decisions: list[scaling.Decision],
    *,
    paused: bool = False,
) -> dict[str, Any]:
    conditions = (body.get("status") or {}).get("conditions") or []
    if paused:
        conditions = set_condition(
            conditions,
            PAUSED,
            True,
            "Annotation",
            f'{PAUSED_ANNOTATION}: "true": replicas are frozen; remove it to resume',
        )
    elif condition_status(conditions, PAUSED) is not None:
        conditions = set_condition(
            conditions, PAUSED, False, "Resumed", "the autoscaler sets replicas again"
        )
    ready, reason, message = ready_condition(pools)
    conditions = set_condition(conditions, READY, ready, reason, message)
    progressing, reason, message = progressing_condition(pools)
    conditions = set_condition(conditions, PROGRESSING, progressing, reason, message)
    if reading.reachable:
        conditions = set_condition(
            conditions, TEMPORAL_REACHABLE, True, "Connected", "queue statistics are being read"
        )
    else:
        conditions = set_condition(
            conditions, TEMPORAL_REACHABLE, False, "Unreachable", reading.error or "unknown error"
        )
    holding = [d for d in decisions if d.reason is scaling.Reason.NO_DATA]
    summary = "; ".join(
        f"{kind} {pools[kind].get('desiredReplicas')} ({pools[kind].get('lastDecision')})"
        for kind in POOLS
        if pools[kind].get("lastDecision")
    )
    if paused:
        conditions = set_condition(
            conditions, SCALING, False, "Paused", "replicas frozen: " + summary
        )
    elif reading.missing:
        conditions = set_condition(
            conditions,
            SCALING,
            False,
            "NoQueueStatistics",
            "; ".join(reading.missing.values()) + "; holding: " + summary,
        )
    elif holding:
        conditions = set_condition(
            conditions, SCALING, False, "HoldingReplicas", "no queue statistics: " + summary
        )
    else:
        conditions = set_condition(
            conditions, SCALING, True, "Active", summary or "waiting for data"
        )
    total = sum(int(pool.get("backlog") or 0) for pool in pools.values())
    return {
        "phase": phase(ready, reading.reachable, stuck=not progressing, paused=paused).value,
        "totalBacklog": total,
        "pools": pools,
        "conditions": conditions,
    }


def reachability_notices(
    body: Mapping[str, Any], reading: BacklogReading, seen: MutableMapping[str, Any] | None
) -> list[Notice]:
    """One Warning when Temporal stops answering and one Event when it is back."""
    was = condition_status((body.get("status") or {}).get("conditions") or [], TEMPORAL_REACHABLE)
    if seen is not None:
        if "temporal_reachable" in seen:
            was = "True" if seen["temporal_reachable"] else "False"
        seen["temporal_reachable"] = reading.reachable
    if not reading.reachable and was != "False":
        return [Notice("Warning", "TemporalUnreachable", f"holding replicas: {reading.error}")]
    if reading.reachable and was == "False":
        return [Notice("Normal", "TemporalReachable", "queue statistics are back")]
    return []


def _queue_status(stats: QueueStats | None) -> dict[str, Any]:
    """A pool's queue statistics as status fields (none when they could not be read)."""
    if stats is None:
        return {}
    return {
        "backlog": stats.backlog_count,
        "backlogAgeSeconds": round(stats.backlog_age_s, 3),
        "addRate": round(stats.add_rate, 4),
        "dispatchRate": round(stats.dispatch_rate, 4),
    }
