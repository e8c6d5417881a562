"""One autoscaling round of a DocumentPipeline, minus kopf: read the queues, scale
each due pool (versioned pools through rollout.py, the others through
pool_scaling.py), recreate Deployments deleted by hand, and report.

It takes the API layers (:class:`~docpipe_operator.kube.Kube`,
:class:`~docpipe_operator.backlog.TemporalClients`) and the CR, and returns a
status patch plus the Events to post (round_report.py); the kopf timer applies them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

import docpipe_operator.rollout as rollouts
from docpipe_operator import (
    POOLS,
    drain,
    draining,
    metrics,
    resources,
    rollout_status,
    round_report,
    scaling,
    trust,
)
from docpipe_operator.backlog import BacklogReading, QueueRef, TemporalClients, queue_signal
from docpipe_operator.kube import DeploymentState, Kube
from docpipe_operator.pool_scaling import (
    PoolMemory,
    ScaledPool,
    decide_and_scale,
    rank_for_scale_down,
)
from docpipe_operator.reconcile import Result, describe_error, endpoint, trust_problems
from docpipe_operator.spec import PipelineSpec, is_paused
from docpipe_operator.status import NOT_ALLOWED, Notice
from docpipe_operator.worker_deployments import TemporalVersioning, VersioningApi

log = logging.getLogger(__name__)


async def autoscale(
    kube: Kube,
    temporal: TemporalClients,
    body: Mapping[str, Any],
    spec: PipelineSpec,
    memory: MutableMapping[str, PoolMemory],
    *,
    now: float,
    monotonic: float,
    policy: trust.TrustPolicy,
    seen: MutableMapping[str, Any] | None = None,
    in_flight: drain.InFlightReader | None = None,
) -> Result | None:
    """One round: read the due pools' queues, decide, scale, report.

    ``now`` is wall-clock time (decisions and status), ``monotonic`` decides
    which pools are due. ``seen`` (the object's memo) remembers whether
    Temporal answered last round: the body's condition can lag a round behind
    under load, and an outage must give one Warning, not one per stale body.
    ``in_flight`` reads the pods' in-flight work before a scale-down, so the
    idle ones go first (drain.py); None: the ReplicaSet chooses alone.
    Returns None when no pool is due.
    """
    due = [kind for kind in POOLS if memory.setdefault(kind, PoolMemory()).next_poll <= monotonic]
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    paused = is_paused(body["metadata"])
    reading: BacklogReading | None = None
    if not due and not paused:
        due, reading = await _wake_check(temporal, (namespace, name), spec, memory)
    if not due:
        return None
    if reading is None:
        reading = await _read_backlog(kube, temporal, (namespace, name), spec, due, policy)
    metrics.TEMPORAL_QUERY_SECONDS.labels(namespace, name).observe(reading.seconds)
    if not reading.reachable:
        metrics.TEMPORAL_ERRORS.labels(namespace, name).inc()

    deployments = dict(
        zip(
            POOLS,
            await asyncio.gather(
                *(
                    kube.deployment(namespace, resources.pool_deployment_name(name, spec, kind))
                    for kind in POOLS
                )
            ),
            strict=True,
        )
    )
    previous = (body.get("status") or {}).get("pools") or {}
    pools: dict[str, dict[str, Any]] = {}
    result = Result()
    missing = [kind for kind in POOLS if deployments[kind] is None]
    # Recreate only what ensure_workloads() already made once (it records
    # observedGeneration when done): a first round may race a create in flight,
    # and a pipeline being deleted must be left to the garbage collector.
    settled = (body.get("status") or {}).get("observedGeneration") is not None
    if missing and settled and not body["metadata"].get("deletionTimestamp"):
        deployments |= await _recreate(kube, body, spec, missing, result, policy)
    decisions: list[scaling.Decision] = []
    # Pre-scaling: every queue is read each round, so each pool also sees the work
    # queued upstream of it (scaling.pipeline_upstream).
    upstream = scaling.pipeline_upstream(
        {kind: queue_signal(reading.stats.get(kind)) for kind in POOLS},
        {kind: spec.pools[kind].knobs for kind in POOLS},
    )
    versioning_api, versioning_error = await _versioning_api(
        kube, temporal, namespace, spec, due, paused, policy
    )
    for kind in POOLS:
        found = deployments[kind]
        entry = dict(previous.get(kind) or {})
        entry["queue"] = spec.queues[kind]
        versioned = spec.pools[kind].versioning is not None
        # A versioned pool counts every version's pods; between its ticks, the last count.
        totals = {k: entry[k] for k in ("currentReplicas", "readyReplicas") if k in entry}
        if found is None:
            entry.pop("currentReplicas", None)
            pools[kind] = entry
            continue
        if kind in due and (hands_off := _hands_off(spec, kind, paused)):
            # Paused, or an HPA/KEDA owns replicas: read the queue for status, never
            # scale, and accept whatever count is there (no ReplicasOverridden). The
            # policy starts afresh on resume: a full window before any scale-down.
            pool_memory = memory[kind]
            pool_memory.owned = found.replicas
            pool_memory.state = scaling.ScalingState()
            pool_memory.next_poll = monotonic + spec.pools[kind].poll_interval_s
            pool_memory.asleep = False
            entry |= round_report.hands_off_status(kind, hands_off, found, reading.stats.get(kind))
        elif kind in due and versioned:
            ticked = await rollouts.tick(
                kube,
                versioning_api,
                body,
                spec,
                kind,
                found,
                memory[kind].versions,
                entry,
                now=now,
                unreachable=versioning_error,
                before_scale_down=(
                    None
                    if in_flight is None
                    else lambda ns, selector: rank_for_scale_down(kube, in_flight, ns, selector)
                ),
                drain=_version_drain(kube, in_flight, kind),
            )
            memory[kind].next_poll = monotonic + spec.pools[kind].poll_interval_s
            memory[kind].asleep = False  # its versions wake in their own rounds
            result.notices += ticked.notices
            if ticked.decision is not None:
                decisions.append(ticked.decision)
                entry |= round_report.decision_status(ticked.decision, ticked.stats, now)
                if ticked.decision.direction:
                    result.notices.append(round_report.scale_notice(kind, ticked.decision))
            entry |= ticked.entry
            entry["autoscaling"] = "operator"
            totals = {k: ticked.entry[k] for k in ("currentReplicas", "readyReplicas")}
        elif kind in due:
            pool_memory = memory[kind]
            if pool_memory.owned is None and isinstance(entry.get("desiredReplicas"), int):
                # A restarted operator: its last decision is in status (the serving
                # replicas, plus the cordoned pods still draining).
                draining_now = entry.get("drainingReplicas")
                pool_memory.owned = entry["desiredReplicas"] + (
                    draining_now if isinstance(draining_now, int) else 0
                )
            try:
                decision, found = await decide_and_scale(
                    ScaledPool(kube, namespace, name, kind, spec),
                    found,
                    reading,
                    pool_memory,
                    now,
                    result,
                    recreated=kind in missing,
                    upstream=upstream.get(kind),
                    in_flight=in_flight,
                )
            except Exception as exc:  # 409/500/timeouts: the next round tries again
                log.warning("%s/%s %s: scaling failed: %s", namespace, name, kind, exc)
                result.notices.append(
                    Notice("Warning", "ScaleFailed", f"{kind}: {describe_error(exc)}")
                )
                pools[kind] = entry | round_report.observed(found)
                continue
            pool_memory.next_poll = monotonic + spec.pools[kind].poll_interval_s
            pool_memory.asleep = found.replicas == 0
            decisions.append(decision)
            entry |= round_report.decision_status(decision, reading.stats.get(kind), now)
            # Replicas beyond the serving ones are cordoned pods finishing their work.
            entry["drainingReplicas"] = max(0, found.replicas - decision.replicas)
            entry["autoscaling"] = "operator"
            if decision.direction:
                result.notices.append(round_report.scale_notice(kind, decision))
        pools[kind] = entry = entry | round_report.observed(found) | (totals if versioned else {})
        _export_pool(namespace, name, kind, entry)

    result.status = round_report.round_status(body, pools, reading, decisions, paused=paused)
    result.status["conditions"] = rollout_status.condition(result.status["conditions"], pools, spec)
    result.notices += round_report.pause_notices(body, paused, seen)
    result.notices += round_report.stuck_notices(body, pools, seen)
    result.notices += round_report.missing_stats_notices(reading, seen)
    result.notices += round_report.reachability_notices(body, reading, seen)
    return result


def _version_drain(
    kube: Kube, reader: drain.InFlightReader | None, kind: str
) -> rollouts.DrainVersion | None:
    """Drain before remove for a versioned activity pool's versions (as for a pool)."""
    if reader is None or kind not in draining.DRAINING_POOLS:
        return None
    return functools.partial(draining.drain_step, kube, reader)


async def _wake_check(
    temporal: TemporalClients,
    pipeline: tuple[str, str],
    spec: PipelineSpec,
    memory: Mapping[str, PoolMemory],
) -> tuple[list[str], BacklogReading | None]:
    """Between its rounds, a pool at zero is woken by work: every tick (not every poll
    interval) the queues are read, through the endpoint of the last round, and the
    pools whose queue or upstream stages have work are due at once.

    Only Temporal is asked: no Deployment, pod or Secret is read, so an idle pool costs
    the API server one round per poll interval, and a GPU pool starts loading its model
    within a tick of the first task (bench/autoscale_sim.py, gpu-spike: p95 wait 0.95x
    KEDA's at a 15 s poll, 0.91x at 5 s, 0.89x at this 2 s tick). The reading is the
    round's: the queues are not read twice."""
    asleep = [kind for kind in POOLS if memory[kind].asleep]
    where = temporal.endpoint_of(pipeline)
    if not asleep or where is None:
        return [], None
    reading = await temporal.read(where, _queue_refs(spec), user=pipeline)
    signals = {kind: queue_signal(reading.stats.get(kind)) for kind in POOLS}
    upstream = scaling.pipeline_upstream(signals, {kind: spec.pools[kind].knobs for kind in POOLS})
    woken = [kind for kind in asleep if scaling.has_work(signals[kind], upstream.get(kind))]
    return woken, reading if woken else None


async def _versioning_api(
    kube: Kube,
    temporal: TemporalClients,
    namespace: str,
    spec: PipelineSpec,
    due: list[str],
    paused: bool,
    policy: trust.TrustPolicy,
) -> tuple[VersioningApi | None, str | None]:
    """Temporal's Worker Deployment API for the versioned pools due this round, or
    why it cannot be had (every version is then held). Not asked while paused."""
    if paused or not any(spec.pools[kind].versioning is not None for kind in due):
        return None, "paused" if paused else None
    try:
        where = await endpoint(kube, namespace, spec, policy=policy)
        client = await temporal.get(where)
    except Exception as exc:  # unreachable, or the credentials cannot be read
        return None, f"cannot reach Temporal: {describe_error(exc)}"
    return TemporalVersioning(client, temporal.timeout_s), None


def _queue_refs(spec: PipelineSpec) -> dict[str, QueueRef]:
    """Every pool's queue, not only the due pools': the others are upstream of some pool."""
    return {kind: QueueRef(spec.queues[kind], workflow=kind == "workflow") for kind in POOLS}


async def _read_backlog(
    kube: Kube,
    temporal: TemporalClients,
    pipeline: tuple[str, str],
    spec: PipelineSpec,
    due: list[str],
    policy: trust.TrustPolicy,
) -> BacklogReading:
    namespace = pipeline[0]
    try:
        where = await endpoint(kube, namespace, spec, policy=policy)
    except Exception as exc:  # the API-key or TLS Secret is missing or unreadable
        error = f"cannot read the Temporal credentials: {describe_error(exc)}"
        return BacklogReading({kind: None for kind in POOLS}, error, 0.0)
    return await temporal.read(where, _queue_refs(spec), user=pipeline)


def _hands_off(spec: PipelineSpec, kind: str, paused: bool) -> str | None:
    """Why the operator leaves a pool's replicas alone this round (None: it scales)."""
    if paused:
        return "paused"
    if spec.pools[kind].external:
        return "external"
    return None


async def _recreate(
    kube: Kube,
    body: Mapping[str, Any],
    spec: PipelineSpec,
    missing: list[str],
    result: Result,
    policy: trust.TrustPolicy,
) -> dict[str, DeploymentState]:
    """Deployments deleted by hand come back (at their initial size; the round then
    scales them to the operator's last decision), if the pipeline still passes
    ``policy``: a Secret unlabelled since is not rendered again."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    back: dict[str, DeploymentState] = {}
    try:
        problems = await trust_problems(kube, namespace, spec, policy)
    except Exception as exc:  # retried next round
        problems = [f"cannot check the referenced Secrets: {describe_error(exc)}"]
    if problems:
        message = f"not recreating {', '.join(missing)}: " + "; ".join(problems)
        result.notices.append(Notice("Warning", NOT_ALLOWED, message))
        log.warning("%s/%s: %s", namespace, name, message)
        return back
    for kind in missing:
        manifest = resources.pool_deployment(body, spec, kind)
        try:
            await kube.apply(manifest, body["metadata"]["uid"])
        except Exception as exc:  # retried next round
            log.warning("%s/%s: recreating %s failed: %s", namespace, name, kind, exc)
            result.notices.append(
                Notice("Warning", "RecreateFailed", f"{kind}: {describe_error(exc)}")
            )
            continue
        back[kind] = DeploymentState(manifest["spec"].get("replicas", 1), 0, 0)
        message = f"Deployment {manifest['metadata']['name']} was missing; recreated"
        result.notices.append(Notice("Warning", "DeploymentRecreated", message))
        log.warning("%s/%s: %s", namespace, name, message)
    return back


def _export_pool(namespace: str, name: str, kind: str, entry: Mapping[str, Any]) -> None:
    labels = (namespace, name, kind)
    if "desiredReplicas" in entry:
        metrics.DESIRED_REPLICAS.labels(*labels).set(entry["desiredReplicas"])
    metrics.CURRENT_REPLICAS.labels(*labels).set(entry["currentReplicas"])
    metrics.READY_REPLICAS.labels(*labels).set(entry["readyReplicas"])
    if "backlog" in entry:
        metrics.QUEUE_BACKLOG.labels(*labels, entry["queue"]).set(entry["backlog"])
        metrics.QUEUE_BACKLOG_AGE.labels(*labels, entry["queue"]).set(entry["backlogAgeSeconds"])
