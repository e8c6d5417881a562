"""One unversioned pool's scaling step: decide, drain or rank its pods, set its replicas.

The policy is :func:`docpipe_operator.scaling.decide`; this module feeds it the
replicas the operator owns (not a count someone else set), drains before it
removes (cordon.py, draining.py) or, where the pods cannot be read, ranks them
by in-flight work (drain.py), then patches the Deployment. The policy's state is
committed only after the patch succeeded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import docpipe_operator.rollout as rollouts
from docpipe_operator import drain, draining, metrics, names, scaling, worker_pod
from docpipe_operator.backlog import BacklogReading, queue_signal
from docpipe_operator.kube import DeploymentState, Kube
from docpipe_operator.reconcile import Result, describe_error
from docpipe_operator.spec import METRICS_PORT, PipelineSpec
from docpipe_operator.status import Notice

log = logging.getLogger(__name__)


@dataclass
class PoolMemory:
    """Per pool, between rounds: the policy's state and when to look again."""

    state: scaling.ScalingState = field(default_factory=scaling.ScalingState)
    next_poll: float = 0.0
    asleep: bool = False
    """The operator left it at zero replicas: a wake check looks at its queue every tick."""
    owned: int | None = None
    """Replicas the operator last set or accepted: anything else was changed by hand."""
    versions: dict[str, rollouts.VersionMemory] = field(default_factory=dict)
    """A versioned pool's: the same, per Build ID (rollout.py)."""


@dataclass(frozen=True)
class ScaledPool:
    """The unversioned pool a step scales: the API, its Deployment's place, its spec."""

    kube: Kube
    namespace: str
    pipeline: str
    kind: str
    spec: PipelineSpec

    @property
    def deployment(self) -> str:
        return names.deployment_name(self.pipeline, self.kind)

    @property
    def selector(self) -> dict[str, str]:
        return names.selector_labels(self.pipeline, self.kind)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pipeline} {self.kind}"


async def decide_and_scale(
    pool: ScaledPool,
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
    # The autoscaler owns replicas: a count someone else set (kubectl scale, a
    # recreated Deployment) is not the starting point; the operator's own is.
    current = found.replicas
    if memory.owned is not None and memory.owned != found.replicas:
        current = memory.owned
    signal = queue_signal(reading.stats.get(pool.kind))
    drained = None
    if in_flight is not None and pool.kind in draining.DRAINING_POOLS and signal is not None:
        drained = await _drain_and_scale(pool, current, signal, memory, now, upstream, in_flight)
    if drained is not None:
        decision, replicas = drained
    else:
        knobs = pool.spec.pools[pool.kind].knobs
        decision = scaling.decide(current, signal, knobs, memory.state, now, upstream)
        replicas = decision.replicas
        if replicas < found.replicas and in_flight is not None:
            # Before the ReplicaSet picks its victims: the idle pods must be the cheapest.
            await rank_for_scale_down(pool.kube, in_flight, pool.namespace, pool.selector)
    if replicas != found.replicas:
        # State is committed only after the patch succeeded: a failed one is retried
        # next round instead of starting a cooldown for a scale-down that never happened.
        await pool.kube.scale(pool.namespace, pool.deployment, replicas)
        if found.replicas != current and not recreated:
            _overridden(pool, found.replicas, replicas, result)
        found = dataclasses.replace(found, replicas=replicas)
    if decision.direction:
        direction = "up" if decision.direction > 0 else "down"
        labels = (pool.namespace, pool.pipeline, pool.kind, direction, decision.reason.value)
        metrics.SCALE_EVENTS.labels(*labels).inc()
        log.info("%s: %s (%s)", pool, decision.message, decision.reason)
    memory.state = decision.state
    memory.owned = replicas
    return decision, found


def _overridden(pool: ScaledPool, found: int, replicas: int, result: Result) -> None:
    message = (
        f"{pool.kind}: replicas were set to {found} outside the operator; "
        f"back to {replicas} (the autoscaler owns replicas: change "
        "minReplicas/maxReplicas instead)"
    )
    result.notices.append(Notice("Warning", "ReplicasOverridden", message))
    log.warning("%s/%s %s", pool.namespace, pool.pipeline, message)


async def _drain_and_scale(
    pool: ScaledPool,
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
    knobs = pool.spec.pools[pool.kind].knobs

    def decide(serving: int, counted: float | None) -> scaling.Decision:
        return scaling.decide(serving, signal, knobs, memory.state, now, upstream, counted)

    try:
        return await draining.drain_step(
            pool.kube, reader, pool.namespace, pool.selector, current, decide, now
        )
    except Exception as exc:  # never hold scaling back: the old path still works
        log.warning(
            "%s: could not drain the pool's pods, scaling without draining: %s",
            pool,
            describe_error(exc),
        )
        return None


async def rank_for_scale_down(
    kube: Kube, in_flight: drain.InFlightReader, namespace: str, selector: Mapping[str, str]
) -> dict[str, int] | None:
    """Write each pod's deletion cost from its in-flight work (drain.py), before replicas
    go down. Best effort: any failure is logged and the scale-down goes ahead (the
    workers' graceful shutdown still finishes what a deleted pod was running).
    Returns the costs, or None if the pods could not be ranked."""
    try:
        pods = await kube.pods(namespace, selector, worker_pod.CONTAINER_NAME, METRICS_PORT)
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
            describe_error(exc),
        )
        return None
    log.info("%s: deletion costs before scaling down: %s", namespace, costs)
    return costs
