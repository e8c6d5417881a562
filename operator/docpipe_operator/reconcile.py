"""What the handlers do, minus kopf: keep the owned objects in line with the
spec, and run one autoscaling round.

Each function takes the API layers (:class:`~docpipe_operator.kube.Kube`,
:class:`~docpipe_operator.backlog.TemporalClients`) and the CR, and returns a
status patch plus the Events to post; the kopf handlers apply them. The
policy itself is :func:`docpipe_operator.scaling.decide`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from docpipe_operator import POOLS, metrics, resources, scaling
from docpipe_operator.backlog import BacklogReading, Endpoint, QueueRef, TemporalClients
from docpipe_operator.kube import DeploymentState, Kube, Outcome
from docpipe_operator.spec import PipelineSpec
from docpipe_operator.status import (
    READY,
    SCALING,
    TEMPORAL_REACHABLE,
    Notice,
    Phase,
    condition_status,
    iso,
    phase,
    ready_condition,
    set_condition,
)

log = logging.getLogger(__name__)


@dataclass
class Result:
    """A status patch (merged into ``status``) and Events to post."""

    status: dict[str, Any] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)


@dataclass
class PoolMemory:
    """Per pool, between rounds: the policy's state and when to look again."""

    state: scaling.ScalingState = field(default_factory=scaling.ScalingState)
    next_poll: float = 0.0


def invalid(body: Mapping[str, Any], error: str) -> Result:
    """Status and a Warning for a spec the operator cannot honour."""
    conditions = (body.get("status") or {}).get("conditions") or []
    generation = body["metadata"].get("generation")
    conditions = set_condition(
        conditions, READY, False, "InvalidSpec", error, generation=generation
    )
    return Result(
        status={"phase": Phase.INVALID.value, "conditions": conditions},
        notices=[Notice("Warning", "InvalidSpec", error)],
    )


async def ensure_workloads(kube: Kube, body: Mapping[str, Any], spec: PipelineSpec) -> Result:
    """Create or update every owned Deployment and Service (idempotent)."""
    owner_uid = body["metadata"]["uid"]
    outcomes: dict[str, Outcome] = {}
    for manifest in resources.manifests(body, spec):
        key = f"{manifest['kind']}/{manifest['metadata']['name']}"
        outcomes[key] = await kube.apply(manifest, owner_uid)
    changed = {
        key: outcome for key, outcome in outcomes.items() if outcome is not Outcome.UNCHANGED
    }
    result = Result(status={"observedGeneration": body["metadata"].get("generation")})
    status = body.get("status") or {}
    if status.get("phase") in (None, Phase.INVALID.value):
        result.status["phase"] = Phase.PENDING.value
        conditions = status.get("conditions") or []
        result.status["conditions"] = set_condition(
            conditions, READY, False, "Reconciling", "worker Deployments are being rolled out"
        )
    if changed:
        verbs = sorted({outcome.value for outcome in changed.values()})
        message = f"{' and '.join(verbs)}: " + ", ".join(sorted(changed))
        reason = "WorkloadsCreated" if Outcome.CREATED in changed.values() else "WorkloadsUpdated"
        result.notices.append(Notice("Normal", reason, message))
        log.info("%s/%s: %s", body["metadata"]["namespace"], body["metadata"]["name"], message)
    return result


async def endpoint(kube: Kube, namespace: str, spec: PipelineSpec) -> Endpoint:
    """Where this pipeline's Temporal is, with its API key read from the Secret."""
    api_key = None
    if spec.temporal.api_key is not None:
        ref = spec.temporal.api_key
        api_key = await kube.secret_value(namespace, ref.name, ref.key)
    return Endpoint(spec.temporal.address, spec.temporal.namespace, spec.temporal.tls, api_key)


async def autoscale(
    kube: Kube,
    temporal: TemporalClients,
    body: Mapping[str, Any],
    spec: PipelineSpec,
    memory: MutableMapping[str, PoolMemory],
    *,
    now: float,
    monotonic: float,
) -> Result | None:
    """One round: read the due pools' queues, decide, scale, report.

    ``now`` is wall-clock time (decisions and status), ``monotonic`` decides
    which pools are due. Returns None when no pool is due.
    """
    due = [kind for kind in POOLS if memory.setdefault(kind, PoolMemory()).next_poll <= monotonic]
    if not due:
        return None
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    reading = await _read_backlog(kube, temporal, namespace, spec, due)
    metrics.TEMPORAL_QUERY_SECONDS.labels(namespace, name).observe(reading.seconds)
    if not reading.reachable:
        metrics.TEMPORAL_ERRORS.labels(namespace, name).inc()

    deployments = dict(
        zip(
            POOLS,
            await asyncio.gather(
                *(
                    kube.deployment(namespace, resources.deployment_name(name, kind))
                    for kind in POOLS
                )
            ),
            strict=True,
        )
    )
    previous = (body.get("status") or {}).get("pools") or {}
    pools: dict[str, dict[str, Any]] = {}
    result = Result()
    decisions: list[scaling.Decision] = []
    for kind in POOLS:
        found = deployments[kind]
        entry = dict(previous.get(kind) or {})
        entry["queue"] = spec.queues[kind]
        if found is None:
            entry.pop("currentReplicas", None)
            pools[kind] = entry
            continue
        if kind in due:
            decision, found = await _decide_and_scale(
                kube, namespace, name, kind, spec, found, reading, memory[kind], now
            )
            memory[kind].next_poll = monotonic + spec.pools[kind].poll_interval_s
            decisions.append(decision)
            entry |= _decision_status(decision, reading.stats.get(kind), now)
            if decision.direction:
                result.notices.append(_scale_notice(kind, decision))
        entry["currentReplicas"] = found.replicas
        entry["readyReplicas"] = found.ready_replicas
        pools[kind] = entry
        _export_pool(namespace, name, kind, entry)

    result.status = _round_status(body, pools, reading, decisions)
    was = condition_status((body.get("status") or {}).get("conditions") or [], TEMPORAL_REACHABLE)
    if not reading.reachable and was != "False":
        result.notices.append(
            Notice("Warning", "TemporalUnreachable", f"holding replicas: {reading.error}")
        )
    elif reading.reachable and was == "False":
        result.notices.append(Notice("Normal", "TemporalReachable", "queue statistics are back"))
    return result


async def _read_backlog(
    kube: Kube, temporal: TemporalClients, namespace: str, spec: PipelineSpec, due: list[str]
) -> BacklogReading:
    queues = {kind: QueueRef(spec.queues[kind], workflow=kind == "workflow") for kind in due}
    try:
        where = await endpoint(kube, namespace, spec)
    except Exception as exc:  # the API-key Secret is missing or unreadable
        error = f"cannot read the Temporal API key: {exc}"
        return BacklogReading({kind: None for kind in due}, error, 0.0)
    return await temporal.read(where, queues)


async def _decide_and_scale(
    kube: Kube,
    namespace: str,
    name: str,
    kind: str,
    spec: PipelineSpec,
    found: DeploymentState,
    reading: BacklogReading,
    memory: PoolMemory,
    now: float,
) -> tuple[scaling.Decision, DeploymentState]:
    stats = reading.stats.get(kind)
    signal = (
        None
        if stats is None
        else scaling.QueueSignal(
            backlog_count=stats.backlog_count,
            backlog_age_s=stats.backlog_age_s,
            add_rate=stats.add_rate,
            dispatch_rate=stats.dispatch_rate,
        )
    )
    decision = scaling.decide(found.replicas, signal, spec.pools[kind].knobs, memory.state, now)
    memory.state = decision.state
    if decision.direction:
        await kube.scale(namespace, resources.deployment_name(name, kind), decision.replicas)
        direction = "up" if decision.direction > 0 else "down"
        metrics.SCALE_EVENTS.labels(namespace, name, kind, direction, decision.reason.value).inc()
        log.info("%s/%s %s: %s (%s)", namespace, name, kind, decision.message, decision.reason)
        found = DeploymentState(decision.replicas, found.ready_replicas, found.updated_replicas)
    return decision, found


def _decision_status(decision: scaling.Decision, stats: Any, now: float) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "desiredReplicas": decision.replicas,
        "lastDecision": decision.reason.value,
        "lastDecisionMessage": decision.message,
    }
    if stats is not None:
        entry |= {
            "backlog": stats.backlog_count,
            "backlogAgeSeconds": round(stats.backlog_age_s, 3),
            "addRate": round(stats.add_rate, 4),
            "dispatchRate": round(stats.dispatch_rate, 4),
        }
    if decision.load is not None:
        entry["inFlightEstimate"] = round(decision.load.in_flight, 3)
    if decision.direction:
        entry["lastScaleTime"] = iso(now)
        entry["lastScaleReason"] = decision.reason.value
    return entry


def _scale_notice(kind: str, decision: scaling.Decision) -> Notice:
    reason = "ScaledUp" if decision.direction > 0 else "ScaledDown"
    return Notice("Normal", reason, f"{kind}: {decision.message} [{decision.reason.value}]")


def _round_status(
    body: Mapping[str, Any],
    pools: dict[str, dict[str, Any]],
    reading: BacklogReading,
    decisions: list[scaling.Decision],
) -> dict[str, Any]:
    conditions = (body.get("status") or {}).get("conditions") or []
    ready, reason, message = ready_condition(pools)
    conditions = set_condition(conditions, READY, ready, reason, message)
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
    if holding:
        conditions = set_condition(
            conditions, SCALING, False, "HoldingReplicas", "no queue statistics: " + summary
        )
    else:
        conditions = set_condition(
            conditions, SCALING, True, "Active", summary or "waiting for data"
        )
    total = sum(int(pool.get("backlog") or 0) for pool in pools.values())
    return {
        "phase": phase(ready, reading.reachable).value,
        "totalBacklog": total,
        "pools": pools,
        "conditions": conditions,
    }


def _export_pool(namespace: str, name: str, kind: str, entry: Mapping[str, Any]) -> None:
    labels = (namespace, name, kind)
    if "desiredReplicas" in entry:
        metrics.DESIRED_REPLICAS.labels(*labels).set(entry["desiredReplicas"])
    metrics.CURRENT_REPLICAS.labels(*labels).set(entry["currentReplicas"])
    metrics.READY_REPLICAS.labels(*labels).set(entry["readyReplicas"])
    if "backlog" in entry:
        metrics.QUEUE_BACKLOG.labels(*labels, entry["queue"]).set(entry["backlog"])
        metrics.QUEUE_BACKLOG_AGE.labels(*labels, entry["queue"]).set(entry["backlogAgeSeconds"])
