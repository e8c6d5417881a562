"""The operator's side of drain-before-remove (cordon.py): read a pool's pods, apply a plan.

Each round the operator lists the pool's pods and reads every worker's
``/metrics`` (in-flight activities, and whether it stopped polling for a drain),
so the policy decides on counted work and :func:`cordon.plan_scale` on real pods.
Applying a plan only writes pod annotations; the Deployment's replicas are the
caller's to set, after the annotations are in place (the ReplicaSet reads the
deletion cost when it picks the pods to delete).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from docpipe_operator import cordon, drain, scaling
from docpipe_operator.kube import Kube
from docpipe_operator.spec import METRICS_PORT
from docpipe_operator.worker_pod import CONTAINER_NAME

log = logging.getLogger(__name__)

DRAINING_POOLS = ("cpu", "gpu", "io")
"""Pools that drain before they lose a pod; the workflow pool's tasks last milliseconds."""


@dataclass(frozen=True)
class PoolPods:
    pods: tuple[cordon.PodDrain, ...]
    refs: tuple[drain.PodRef, ...] = ()
    """The same pods as the API gave them (their current deletion cost)."""

    @property
    def counted_in_flight(self) -> float | None:
        """Activities running on the serving pods, or None if any of them could not be read."""
        total = 0.0
        for pod in self.pods:
            if pod.cordoned:
                continue
            if pod.in_flight is None:
                return None
            total += pod.in_flight
        return total


def _requested_at(annotations: Mapping[str, str]) -> float | None:
    try:
        value = float(annotations[cordon.DRAIN_REQUESTED_AT_ANNOTATION])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


def pod_drain(ref: drain.PodRef, load: drain.PodLoad | None) -> cordon.PodDrain:
    """One pod as the plan sees it: readiness and cordon from the API, load from /metrics.

    A pod without an IP yet (scheduling, pulling its image) runs nothing: it counts as
    idle rather than unreadable, so a pool whose new pods are on their way still
    decides on counted work."""
    annotations = ref.annotations
    in_flight = None if load is None else load.in_flight
    if load is None and not ref.ip and not ref.ready:
        in_flight = 0.0
    return cordon.PodDrain(
        name=ref.name,
        ready=ref.ready,
        cordoned=annotations.get(cordon.DRAIN_ANNOTATION) == "true",
        cordoned_at=_requested_at(annotations),
        in_flight=in_flight,
        draining=None if load is None else load.draining,
    )


async def read_pool(
    kube: Kube, reader: drain.InFlightReader, namespace: str, selector: Mapping[str, str]
) -> PoolPods:
    """The pool's live pods with their load (a reader without drain gauges gives in-flight only)."""
    refs = await kube.pods(namespace, selector, CONTAINER_NAME, METRICS_PORT)
    read_loads = getattr(reader, "read_loads", None)
    if read_loads is not None:
        loads: dict[str, drain.PodLoad | None] = await read_loads(refs)
    else:
        counts = await reader.read(refs)
        loads = {name: drain.PodLoad(count, None) for name, count in counts.items()}
    return PoolPods(tuple(pod_drain(ref, loads.get(ref.name)) for ref in refs), tuple(refs))


def costs(pool: PoolPods, plan: cordon.DrainPlan) -> dict[str, str]:
    """Deletion costs to write: the lowest for the pods the plan removes, in-flight work
    for the rest (drain.py), so the ReplicaSet takes exactly the planned pods. Only
    changed values, and only when the plan removes pods: a pool that keeps its pods
    is not written to every round."""
    if not plan.remove:
        return {}
    wanted = drain.deletion_costs(
        [pod.name for pod in pool.pods], {pod.name: pod.in_flight for pod in pool.pods}
    )
    wanted |= {name: cordon.REMOVE_COST for name in plan.remove}
    return drain.cost_changes(pool.refs, wanted)


async def apply(
    kube: Kube, namespace: str, pool: PoolPods, plan: cordon.DrainPlan, now: float
) -> None:
    """Write the plan's annotations: cordon, un-cordon, and the deletion costs."""
    writes: list[tuple[str, dict[str, str | None]]] = []
    for name in plan.cordon:
        writes.append(
            (
                name,
                {
                    cordon.DRAIN_ANNOTATION: "true",
                    cordon.DRAIN_REQUESTED_AT_ANNOTATION: str(int(now)),
                },
            )
        )
    for name in plan.uncordon:
        writes.append(
            (name, {cordon.DRAIN_ANNOTATION: None, cordon.DRAIN_REQUESTED_AT_ANNOTATION: None})
        )
    for name, cost in costs(pool, plan).items():
        writes.append((name, {drain.DELETION_COST_ANNOTATION: cost}))
    await asyncio.gather(*(kube.annotate_pod(namespace, name, notes) for name, notes in writes))


def summary(plan: cordon.DrainPlan) -> str:
    """One line for the log and the decision message, empty when the plan touches no pod."""
    parts: Sequence[tuple[str, tuple[str, ...]]] = (
        ("cordoned", plan.cordon),
        ("back in service", plan.uncordon),
        ("removed (drained or idle)", plan.remove),
    )
    return "; ".join(f"{label}: {', '.join(names)}" for label, names in parts if names)


Decide = Callable[[int, float | None], scaling.Decision]
"""``(serving replicas, counted in-flight work or None)`` -> the policy's decision."""


async def drain_step(
    kube: Kube,
    reader: drain.InFlightReader,
    namespace: str,
    selector: Mapping[str, str],
    current: int,
    decide: Decide,
    now: float,
) -> tuple[scaling.Decision, int]:
    """One drain-before-remove step for the Deployment whose pods ``selector`` picks:
    read its pods, decide on the serving ones, cordon, un-cordon and mark removals.
    Returns the decision and the replicas to set (after these annotations). Raises
    when the pods cannot be read: the caller scales the old way."""
    pool = await read_pool(kube, reader, namespace, selector)
    decision = decide(cordon.serving(current, pool.pods), pool.counted_in_flight)
    plan = cordon.plan_scale(
        current, decision.replicas, pool.pods, now=now, give_up_s=cordon.GIVE_UP_S
    )
    await apply(kube, namespace, pool, plan, now)
    if done := summary(plan):
        log.info("%s %s: %s", namespace, ",".join(f"{k}={v}" for k, v in selector.items()), done)
        decision = replace(decision, message=f"{decision.message}; {done}")
    return decision, plan.replicas
