"""Drain-aware scale-down: the pods a shrinking pool should lose are the idle ones.

When a Deployment's replicas go down, its ReplicaSet picks the pods to delete.
Among pods equal in phase and readiness it deletes those with the lowest
``controller.kubernetes.io/pod-deletion-cost`` first (then the youngest). Left
alone, that choice ignores what a pod is doing: scaling 3 -> 1 may kill the one
pod that is halfway through a 4-minute batch, and Temporal retries it from the
start after the heartbeat timeout. So before it lowers replicas, the operator
reads each pod's in-flight activities from the pod's own ``/metrics``
(``docpipe_activities_in_flight``, every activity worker exports it) and writes
the count as the pod's deletion cost: idle pods go first, the busiest last.

The ranking is best effort and never holds scaling back: a pod whose metrics
cannot be read gets the neutral cost (0, the API server's default), and the
worker's own graceful shutdown (``WORKER_SHUTDOWN_GRACE_S``) covers a pod that
picks up work between the reading and the deletion.

:func:`deletion_costs` and :func:`cost_changes` are pure; :class:`InFlightReader`
is the one piece of I/O, kept behind a small interface so tests can serve real
``/metrics`` text from fake endpoints.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
NEUTRAL_COST = 0
"""What a pod without the annotation costs: the ReplicaSet's own order decides."""
MAX_COST = 2**31 - 1
"""The annotation is an int32."""
DRAINING_METRIC = "docpipe_worker_draining"
"""1 while the worker has stopped polling for a drain (cordon.py)."""
IN_FLIGHT_METRIC = "docpipe_activities_in_flight"
"""Activities executing now, per worker and activity (services/docpipe/metrics/activity.py)."""
READ_TIMEOUT_S = 2.0
"""Per pod: a slow or unreachable pod is neutral, never a delay for the scale-down."""


@dataclass(frozen=True)
class PodRef:
    """What the operator needs of one pod of a pool."""

    name: str
    ip: str | None
    """``status.podIP``; None while the pod is not scheduled or has no network yet."""
    metrics_port: int | None
    """The worker container's port named ``metrics``."""
    cost: str | None = None
    """The pod's current deletion-cost annotation, if any."""
    ready: bool = True
    """Running and Ready (a pod without conditions yet, but running, counts as ready)."""
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PodLoad:
    """What a worker's /metrics says about its work."""

    in_flight: float | None
    draining: bool | None
    """``docpipe_worker_draining``; None for a worker that does not export it."""


def deletion_costs(pods: Sequence[str], in_flight: Mapping[str, float | None]) -> dict[str, int]:
    """Each pod's deletion cost: its in-flight activities (idle 0, busier is dearer).

    A pod missing from ``in_flight``, or read as None (no endpoint, a timeout, a
    worker that exports no such metric), is neutral: the operator knows nothing
    that should move it ahead of or behind the others.
    """
    costs = {}
    for pod in pods:
        count = in_flight.get(pod)
        if count is None or not math.isfinite(count) or count <= 0:
            costs[pod] = NEUTRAL_COST
        else:
            costs[pod] = min(math.ceil(count), MAX_COST)
    return costs


def cost_changes(pods: Sequence[PodRef], costs: Mapping[str, int]) -> dict[str, str]:
    """The annotations to write: only pods whose current value differs (the API server
    is not written to for a pool that is already ranked)."""
    changes = {}
    for pod in pods:
        wanted = str(costs.get(pod.name, NEUTRAL_COST))
        if pod.cost != wanted and not (pod.cost is None and wanted == str(NEUTRAL_COST)):
            changes[pod.name] = wanted
    return changes


def in_flight_from_exposition(text: str) -> float | None:
    """The sum of ``docpipe_activities_in_flight`` over its labels in Prometheus text.

    A worker that has not run an activity yet exports the metric with no samples:
    that is 0 (idle). A worker that does not export it at all (the workflow worker
    runs no activities) is None: unknown, so neutral.
    """
    for family in text_string_to_metric_families(text):
        if family.name == IN_FLIGHT_METRIC:
            return sum(sample.value for sample in family.samples)
    return None


def load_from_exposition(text: str) -> PodLoad:
    """In-flight activities and the drain gauge from one worker's Prometheus text."""
    draining: bool | None = None
    for family in text_string_to_metric_families(text):
        if family.name == DRAINING_METRIC:
            draining = any(sample.value >= 1 for sample in family.samples)
    return PodLoad(in_flight_from_exposition(text), draining)


class InFlightReader(Protocol):
    """Reads in-flight work per pod; None for a pod it could not read."""

    async def read(self, pods: Sequence[PodRef]) -> dict[str, float | None]: ...


class MetricsEndpointReader:
    """Reads each pod's ``http://<podIP>:<metrics port>/metrics``, all at once."""

    def __init__(self, timeout_s: float = READ_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s

    async def read(self, pods: Sequence[PodRef]) -> dict[str, float | None]:
        loads = await self.read_loads(pods)
        return {name: None if load is None else load.in_flight for name, load in loads.items()}

    async def read_loads(self, pods: Sequence[PodRef]) -> dict[str, PodLoad | None]:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            found = await asyncio.gather(*(self._one(session, pod) for pod in pods))
        return dict(zip((pod.name for pod in pods), found, strict=True))

    async def _one(self, session: aiohttp.ClientSession, pod: PodRef) -> PodLoad | None:
        if not pod.ip or not pod.metrics_port:
            return None
        host = f"[{pod.ip}]" if ":" in pod.ip else pod.ip
        try:
            async with session.get(f"http://{host}:{pod.metrics_port}/metrics") as response:
                if response.status != 200:
                    return None
                return load_from_exposition(await response.text())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None


def pod_ref(pod: Mapping[str, Any], container: str, default_port: int) -> PodRef:
    """A :class:`PodRef` from a pod as the API returns it (camelCase JSON)."""
    metadata = pod.get("metadata") or {}
    port = None
    for spec in (pod.get("spec") or {}).get("containers") or []:
        if spec.get("name") != container:
            continue
        port = next(
            (p.get("containerPort") for p in spec.get("ports") or [] if p.get("name") == "metrics"),
            default_port,
        )
    status = pod.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    annotations = dict(metadata.get("annotations") or {})
    return PodRef(
        name=metadata["name"],
        ip=status.get("podIP"),
        metrics_port=port,
        cost=annotations.get(DELETION_COST_ANNOTATION),
        ready=status.get("phase") == "Running" and conditions.get("Ready", "True") == "True",
        annotations=annotations,
    )
