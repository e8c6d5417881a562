"""What the handlers do, minus kopf: keep the owned objects in line with the
spec, and run one autoscaling round.

Each function takes the API layers (:class:`~docpipe_operator.kube.Kube`,
:class:`~docpipe_operator.backlog.TemporalClients`) and the CR, and returns a
status patch plus the Events to post; the kopf handlers apply them. The
policy itself is :func:`docpipe_operator.scaling.decide`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import docpipe_operator.rollout as rollouts
from docpipe_operator import (
    POOLS,
    cordon,
    drain,
    draining,
    metrics,
    resources,
    rollout_status,
    scaling,
    trust,
)
from docpipe_operator.backlog import BacklogReading, Endpoint, QueueRef, TemporalClients
from docpipe_operator.kube import DeploymentState, Kube, Outcome
from docpipe_operator.spec import (
    METRICS_PORT,
    PAUSED_ANNOTATION,
    TLS_CA_KEY,
    TLS_CERT_KEY,
    TLS_PRIVATE_KEY_KEY,
    PipelineSpec,
    is_paused,
)
from docpipe_operator.status import (
    NOT_ALLOWED,
    PAUSED,
    PROGRESSING,
    READY,
    SCALING,
    TEMPORAL_REACHABLE,
    Notice,
    Phase,
    condition_status,
    iso,
    phase,
    progressing_condition,
    ready_condition,
    rollout,
    set_condition,
    stuck_pools,
)
from docpipe_operator.worker_deployments import TemporalVersioning, VersioningApi

log = logging.getLogger(__name__)


@dataclass
class Result:
    """A status patch (merged into ``status``) and Events to post."""

    status: dict[str, Any] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    """Why nothing was rendered (trust.py), empty when the pipeline was accepted."""


@dataclass
class PoolMemory:
    """Per pool, between rounds: the policy's state and when to look again."""

    state: scaling.ScalingState = field(default_factory=scaling.ScalingState)
    next_poll: float = 0.0
    owned: int | None = None
    """Replicas the operator last set or accepted: anything else was changed by hand."""
    versions: dict[str, rollouts.VersionMemory] = field(default_factory=dict)
    """A versioned pool's: the same, per Build ID (rollout.py)."""


def invalid(body: Mapping[str, Any], error: str, *, notify: bool = True) -> Result:
    """Status and (with ``notify``) a Warning for a spec the operator cannot honour."""
    conditions = (body.get("status") or {}).get("conditions") or []
    generation = body["metadata"].get("generation")
    conditions = set_condition(
        conditions, READY, False, "InvalidSpec", error, generation=generation
    )
    return Result(
        status={"phase": Phase.INVALID.value, "conditions": conditions},
        notices=[Notice("Warning", "InvalidSpec", error)] if notify else [],
    )


def still_invalid(body: Mapping[str, Any], error: str) -> Result | None:
    """The Invalid status again if something overwrote it, else None.

    An autoscaling round that began before an invalid update lands writes its
    status (phase Pending/Running) after the update handler wrote Invalid; the
    next round restores it, without a second Warning.
    """
    status = body.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == READY), {})
    if status.get("phase") == Phase.INVALID.value and ready.get("reason") == "InvalidSpec":
        return None
    return invalid(body, error, notify=False)


def refused(body: Mapping[str, Any], problems: list[str]) -> Result:
    """Status and a Warning for a pipeline that asks for what its author may not have.

    Like :func:`invalid`, nothing is rendered, patched or scaled; unlike it, the
    cure may lie outside the spec (a Secret's owner labels it, an admin widens the
    allowlist), so the operator checks again from its timer.
    """
    message = "refused: " + "; ".join(problems)
    conditions = (body.get("status") or {}).get("conditions") or []
    generation = body["metadata"].get("generation")
    conditions = set_condition(
        conditions, READY, False, NOT_ALLOWED, message, generation=generation
    )
    return Result(
        status={"phase": Phase.INVALID.value, "conditions": conditions},
        notices=[Notice("Warning", NOT_ALLOWED, message)],
        refusals=list(problems),
    )


async def trust_problems(
    kube: Kube, namespace: str, spec: PipelineSpec, policy: trust.TrustPolicy
) -> list[str]:
    """Everything in ``spec`` its author may not make the operator do (trust.py).

    Images and ServiceAccounts are judged from the spec alone; each Secret the
    pipeline names is read by name for its labels (the operator's own namespace
    needs none, so nothing is read there).
    """
    problems = trust.workload_problems(spec, policy)
    uses = trust.secret_uses(spec)
    if uses and namespace != policy.operator_namespace:
        names = sorted({use.name for use in uses})
        found = await asyncio.gather(*(kube.secret_labels(namespace, name) for name in names))
        labels = dict(zip(names, found, strict=True))
        problems += trust.secret_problems(uses, labels, namespace, policy)
    return problems


async def ensure_workloads(
    kube: Kube, body: Mapping[str, Any], spec: PipelineSpec, *, policy: trust.TrustPolicy
) -> Result:
    """Create or update every owned Deployment and Service (idempotent), unless
    ``policy`` refuses the pipeline: then nothing is rendered."""
    if problems := await trust_problems(kube, body["metadata"]["namespace"], spec, policy):
        log.warning(
            "%s/%s refused: %s",
            body["metadata"]["namespace"],
            body["metadata"]["name"],
            "; ".join(problems),
        )
        return refused(body, problems)
    owner_uid = body["metadata"]["uid"]
    outcomes: dict[str, Outcome] = {}
    for manifest in resources.manifests(body, spec):
        key = f"{manifest['kind']}/{manifest['metadata']['name']}"
        outcomes[key] = await kube.apply(manifest, owner_uid)
    for kind, name in resources.unwanted(body, spec):  # a budget turned off
        if await kube.delete_owned(kind, body["metadata"]["namespace"], name, owner_uid):
            outcomes[f"{kind}/{name}"] = Outcome.DELETED
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


async def endpoint(
    kube: Kube,
    namespace: str,
    spec: PipelineSpec,
    *,
    policy: trust.TrustPolicy = trust.TrustPolicy(),  # noqa: B008  (frozen, never mutated)
) -> Endpoint:
    """Where this pipeline's Temporal is, with its API key and TLS material read from Secrets.

    The same connection the workers make from their env and mounted files
    (``docpipe.config.TemporalConnection``), so what works for one works for the other.
    Each Secret must pass ``policy`` (its docpipe.io/allow-reference label) before a
    byte of it is decoded: the operator never reads a Secret on a pipeline author's word.
    """
    t = spec.temporal

    def permit(labels: Mapping[str, str]) -> bool:
        return trust.secret_allowed(labels, namespace, policy)

    api_key = None
    if t.api_key is not None:
        api_key = await kube.secret_value(namespace, t.api_key.name, t.api_key.key, permit=permit)
    tls: dict[str, bytes] = {}
    if t.tls_secret is not None:
        keys = [TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY] + ([TLS_CA_KEY] if t.tls_secret.ca else [])
        tls = await kube.secret_data(namespace, t.tls_secret.name, keys, permit=permit)
    return Endpoint(
        t.address,
        t.namespace,
        t.uses_tls,
        api_key,
        server_root_ca_cert=tls.get(TLS_CA_KEY),
        client_cert=tls.get(TLS_CERT_KEY),
        client_private_key=tls.get(TLS_PRIVATE_KEY_KEY),
        server_name=t.server_name,
    )


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
    if not due:
        return None
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    paused = is_paused(body["metadata"])
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
        {kind: _signal(reading.stats.get(kind)) for kind in POOLS},
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
            entry |= _hands_off_status(kind, hands_off, found, reading.stats.get(kind))
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
            )
            memory[kind].next_poll = monotonic + spec.pools[kind].poll_interval_s
            result.notices += ticked.notices
            if ticked.decision is not None:
                decisions.append(ticked.decision)
                entry |= _decision_status(ticked.decision, ticked.stats, now)
                if ticked.decision.direction:
                    result.notices.append(_scale_notice(kind, ticked.decision))
            entry |= ticked.entry
            entry["autoscaling"] = "operator"
            totals = {k: ticked.entry[k] for k in ("currentReplicas", "readyReplicas")}
        elif kind in due:
            pool_memory = memory[kind]
            if pool_memory.owned is None and isinstance(entry.get("desiredReplicas"), int):
                # A restarted operator: its last decision is in status.
                pool_memory.owned = entry["desiredReplicas"]
            try:
                decision, found = await _decide_and_scale(
                    kube,
                    namespace,
                    name,
                    kind,
                    spec,
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
                    Notice("Warning", "ScaleFailed", f"{kind}: {_describe_error(exc)}")
                )
                pools[kind] = entry | _observed(found)
                continue
            pool_memory.next_poll = monotonic + spec.pools[kind].poll_interval_s
            decisions.append(decision)
            entry |= _decision_status(decision, reading.stats.get(kind), now)
            entry["autoscaling"] = "operator"
            if decision.direction:
                result.notices.append(_scale_notice(kind, decision))
        pools[kind] = entry = entry | _observed(found) | (totals if versioned else {})
        _export_pool(namespace, name, kind, entry)

    result.status = _round_status(body, pools, reading, decisions, paused=paused)
    result.status["conditions"] = rollout_status.condition(result.status["conditions"], pools, spec)
    result.notices += _pause_notices(body, paused, seen)
    result.notices += _stuck_notices(body, pools, seen)
    result.notices += _missing_stats_notices(reading, seen)
    was = condition_status((body.get("status") or {}).get("conditions") or [], TEMPORAL_REACHABLE)
    if seen is not None:
        if "temporal_reachable" in seen:
            was = "True" if seen["temporal_reachable"] else "False"
        seen["temporal_reachable"] = reading.reachable
    if not reading.reachable and was != "False":
        result.notices.append(
            Notice("Warning", "TemporalUnreachable", f"holding replicas: {reading.error}")
        )
    elif reading.reachable and was == "False":
        result.notices.append(Notice("Normal", "TemporalReachable", "queue statistics are back"))
    return result


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
        return None, f"cannot reach Temporal: {_describe_error(exc)}"
    return TemporalVersioning(client, temporal.timeout_s), None


async def _read_backlog(
    kube: Kube,
    temporal: TemporalClients,
    pipeline: tuple[str, str],
    spec: PipelineSpec,
    due: list[str],
    policy: trust.TrustPolicy,
) -> BacklogReading:
    namespace = pipeline[0]
    # Every queue, not only the due pools': the others are upstream of some pool.
    queues = {kind: QueueRef(spec.queues[kind], workflow=kind == "workflow") for kind in POOLS}
    try:
        where = await endpoint(kube, namespace, spec, policy=policy)
    except Exception as exc:  # the API-key or TLS Secret is missing or unreadable
        error = f"cannot read the Temporal credentials: {_describe_error(exc)}"
        return BacklogReading({kind: None for kind in POOLS}, error, 0.0)
    return await temporal.read(where, queues, user=pipeline)


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
    result: Result,
    *,
    recreated: bool = False,
    upstream: scaling.Upstream | None = None,
    in_flight: drain.InFlightReader | None = None,
) -> tuple[scaling.Decision, DeploymentState]:
    stats = reading.stats.get(kind)
    # The autoscaler owns replicas: a count someone else set (kubectl scale, a
    # recreated Deployment) is not the starting point; the operator's own is.
    current = found.replicas
    if memory.owned is not None and memory.owned != found.replicas:
        current = memory.owned
    signal = _signal(stats)
    if in_flight is not None and kind in draining.DRAINING_POOLS and signal is not None:
        drained = await _drain_and_scale(
            kube,
            namespace,
            name,
            kind,
            spec,
            found,
            current,
            signal,
            memory,
            now,
            upstream,
            in_flight,
        )
        if drained is not None:
            decision, replicas = drained
            if replicas != found.replicas:
                await kube.scale(namespace, resources.deployment_name(name, kind), replicas)
                if found.replicas != current and not recreated:
                    _overridden(namespace, name, kind, found.replicas, replicas, result)
                found = dataclasses.replace(found, replicas=replicas)
            _log_decision(namespace, name, kind, decision)
            memory.state = decision.state
            memory.owned = replicas
            return decision, found
    decision = scaling.decide(current, signal, spec.pools[kind].knobs, memory.state, now, upstream)
    if decision.replicas != found.replicas:
        if decision.replicas < found.replicas and in_flight is not None:
            # Before the ReplicaSet picks its victims: the idle pods must be the cheapest.
            await rank_for_scale_down(
                kube, in_flight, namespace, resources.selector_labels(name, kind)
            )
        # State is committed only after the patch succeeded: a failed one is retried
        # next round instead of starting a cooldown for a scale-down that never happened.
        await kube.scale(namespace, resources.deployment_name(name, kind), decision.replicas)
        if found.replicas != current and not recreated:
            _overridden(namespace, name, kind, found.replicas, decision.replicas, result)
        found = dataclasses.replace(found, replicas=decision.replicas)
    _log_decision(namespace, name, kind, decision)
    memory.state = decision.state
    memory.owned = decision.replicas
    return decision, found


def _overridden(
    namespace: str, name: str, kind: str, found: int, replicas: int, result: Result
) -> None:
    message = (
        f"{kind}: replicas were set to {found} outside the operator; "
        f"back to {replicas} (the autoscaler owns replicas: change "
        "minReplicas/maxReplicas instead)"
    )
    result.notices.append(Notice("Warning", "ReplicasOverridden", message))
    log.warning("%s/%s %s", namespace, name, message)


def _log_decision(namespace: str, name: str, kind: str, decision: scaling.Decision) -> None:
    if decision.direction:
        direction = "up" if decision.direction > 0 else "down"
        metrics.SCALE_EVENTS.labels(namespace, name, kind, direction, decision.reason.value).inc()
        log.info("%s/%s %s: %s (%s)", namespace, name, kind, decision.message, decision.reason)


async def _drain_and_scale(
    kube: Kube,
    namespace: str,
    name: str,
    kind: str,
    spec: PipelineSpec,
    found: DeploymentState,
    current: int,
    signal: scaling.QueueSignal,
    memory: PoolMemory,
    now: float,
    upstream: scaling.Upstream | None,
    reader: drain.InFlightReader,
) -> tuple[scaling.Decision, int] | None:
    """Drain before remove (cordon.py): decide on the serving pods and their counted work,
    then cordon, un-cordon and remove pods. Returns the decision and the Deployment's
    replicas, or None when the pods could not be read (the caller scales the old way)."""
    try:
        pool = await draining.read_pool(
            kube,
            reader,
            namespace,
            resources.selector_labels(name, kind),
            resources.CONTAINER_NAME,
            METRICS_PORT,
        )
    except Exception as exc:  # never hold scaling back: the old path still works
        log.warning(
            "%s/%s %s: could not read the pool's pods, scaling without draining: %s",
            namespace,
            name,
            kind,
            _describe_error(exc),
        )
        return None
    serving = cordon.serving(current, pool.pods)
    knobs = spec.pools[kind].knobs
    decision = scaling.decide(
        serving, signal, knobs, memory.state, now, upstream, pool.counted_in_flight
    )
    plan = cordon.plan_scale(
        current, decision.replicas, pool.pods, now=now, give_up_s=cordon.GIVE_UP_S
    )
    await draining.apply(kube, namespace, pool, plan, now)
    if done := draining.summary(plan):
        log.info("%s/%s %s: %s", namespace, name, kind, done)
        decision = dataclasses.replace(decision, message=f"{decision.message}; {done}")
    return decision, plan.replicas


async def rank_for_scale_down(
    kube: Kube, in_flight: drain.InFlightReader, namespace: str, selector: Mapping[str, str]
) -> dict[str, int] | None:
    """Write each pod's deletion cost from its in-flight work (drain.py), before replicas
    go down. Best effort: any failure is logged and the scale-down goes ahead (the
    workers' graceful shutdown still finishes what a deleted pod was running).
    Returns the costs, or None if the pods could not be ranked."""
    try:
        pods = await kube.pods(namespace, selector, resources.CONTAINER_NAME, METRICS_PORT)
        counts = await in_flight.read(pods)
        costs = drain.deletion_costs([pod.name for pod in pods], counts)
        changes = drain.cost_changes(pods, costs)
        await asyncio.gather(
            *(
                kube.annotate_pod(namespace, pod, {drain.DELETION_COST_ANNOTATION: cost})
                for pod, cost in changes.items()
            )
        )
    except Exception as exc:  # never hold a scale-down back
        log.warning(
            "%s %s: could not rank pods before scaling down: %s",
            namespace,
            selector,
            _describe_error(exc),
        )
        return None
    log.info("%s: deletion costs before scaling down: %s", namespace, costs)
    return costs


def _hands_off(spec: PipelineSpec, kind: str, paused: bool) -> str | None:
    """Why the operator leaves a pool's replicas alone this round (None: it scales)."""
    if paused:
        return "paused"
    if spec.pools[kind].external:
        return "external"
    return None


def _hands_off_status(kind: str, why: str, found: DeploymentState, stats: Any) -> dict[str, Any]:
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
    if stats is not None:
        entry |= {
            "backlog": stats.backlog_count,
            "backlogAgeSeconds": round(stats.backlog_age_s, 3),
            "addRate": round(stats.add_rate, 4),
            "dispatchRate": round(stats.dispatch_rate, 4),
        }
    return entry


def _pause_notices(
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


def _signal(stats: Any) -> scaling.QueueSignal | None:
    """The policy's view of one queue's statistics (``None``: could not be read)."""
    if stats is None:
        return None
    return scaling.QueueSignal(
        backlog_count=stats.backlog_count,
        backlog_age_s=stats.backlog_age_s,
        add_rate=stats.add_rate,
        dispatch_rate=stats.dispatch_rate,
    )


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
        problems = [f"cannot check the referenced Secrets: {_describe_error(exc)}"]
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
                Notice("Warning", "RecreateFailed", f"{kind}: {_describe_error(exc)}")
            )
            continue
        back[kind] = DeploymentState(manifest["spec"].get("replicas", 1), 0, 0)
        message = f"Deployment {manifest['metadata']['name']} was missing; recreated"
        result.notices.append(Notice("Warning", "DeploymentRecreated", message))
        log.warning("%s/%s: %s", namespace, name, message)
    return back


def _missing_stats_notices(
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


def _observed(found: DeploymentState) -> dict[str, Any]:
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


def _stuck_notices(
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


def _describe_error(exc: BaseException) -> str:
    """A short, value-free account of a failure (an ApiException's body may echo a request)."""
    from kubernetes_asyncio.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return str(exc) or type(exc).__name__


def _export_pool(namespace: str, name: str, kind: str, entry: Mapping[str, Any]) -> None:
    labels = (namespace, name, kind)
    if "desiredReplicas" in entry:
        metrics.DESIRED_REPLICAS.labels(*labels).set(entry["desiredReplicas"])
    metrics.CURRENT_REPLICAS.labels(*labels).set(entry["currentReplicas"])
    metrics.READY_REPLICAS.labels(*labels).set(entry["readyReplicas"])
    if "backlog" in entry:
        metrics.QUEUE_BACKLOG.labels(*labels, entry["queue"]).set(entry["backlog"])
        metrics.QUEUE_BACKLOG_AGE.labels(*labels, entry["queue"]).set(entry["backlogAgeSeconds"])
