"""Drain before remove: a shrinking pool loses only pods that have stopped working. Pure.

Lowering a Deployment's replicas deletes pods at once: the ReplicaSet sends
SIGTERM and the worker gets its grace period to finish what it runs. Ranking
pods by in-flight work (drain.py) makes the idle ones go first, but under an
even load every pod runs something, so a shrink always deleted working pods,
and the operator could not take one back once it was terminating. So the
operator shrinks a pool in two steps:

1. **Cordon**: it annotates the pods it wants to lose with
   ``docpipe.io/drain: "true"``. The worker sees the annotation through a
   downward API volume, stops polling and finishes what it runs within the
   pool's grace (``WORKER_SHUTDOWN_GRACE_S``, set from terminationGracePeriodSeconds
   to cover the pool's longest step; what runs longer is handed back to Temporal
   and retried elsewhere, as on SIGTERM); it then reports
   ``docpipe_worker_draining 1`` and no activity in flight. A cordoned pod no
   longer counts as serving capacity.
2. **Remove**: once a cordoned pod reports drained and idle, the operator gives
   it the lowest ``pod-deletion-cost`` and lowers replicas by one for it, so the
   ReplicaSet deletes exactly that pod. No pod with work in flight is deleted.

If demand comes back first, cordoned pods are un-cordoned (the annotation is
removed and the worker polls again) before any new pod is started: a warm pod
is cheaper than a cold one. Pods that hold no work by construction (not ready
yet, or not even created) are removed straight away. A cordoned pod that never
reports drained (a worker image from before this protocol, or metrics that
stop answering) is removed after ``give_up_s`` by the old path: SIGTERM and the
worker's graceful shutdown; so is, at once, a pod whose load cannot be read at
all. Only activity pools drain this way: a workflow task lasts milliseconds, and
the workflow worker's SIGTERM shutdown hands its few back at once.

:func:`plan_scale` is the whole policy; the operator reads the pods and applies
the plan, and the simulation (bench/autoscale_sim.py) runs the same function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DRAIN_ANNOTATION = "docpipe.io/drain"
"""``"true"``: the pod's worker stops polling and finishes its work (the worker's drain switch)."""
DRAIN_REQUESTED_AT_ANNOTATION = "docpipe.io/drain-requested-at"
"""When the operator cordoned the pod (Unix seconds): the give-up clock survives a restart."""
GIVE_UP_S = 900.0
"""A cordoned pod that never reports drained is removed the SIGTERM way after this."""
REMOVE_COST = -(2**31)
"""The lowest pod-deletion-cost: a pod planned for removal goes before every other ready pod."""


@dataclass(frozen=True)
class PodDrain:
    """One pod of a pool as the operator sees it this round."""

    name: str
    ready: bool
    cordoned: bool = False
    cordoned_at: float | None = None
    in_flight: float | None = None
    """Activities running (the worker's metrics); None when they could not be read."""
    draining: bool | None = None
    """The worker reports it stopped polling; None when that could not be read."""

    def drained(self) -> bool:
        """Stopped polling and idle: deleting it cuts nothing."""
        return bool(self.draining) and self.in_flight is not None and self.in_flight <= 0


@dataclass(frozen=True)
class DrainPlan:
    """What to do to one pool this round."""

    replicas: int
    """The Deployment's replicas to set."""
    serving: int
    """Replicas that take work after the plan (not cordoned)."""
    cordon: tuple[str, ...] = ()
    uncordon: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    """Cordoned pods the lower replica count deletes (they get :data:`REMOVE_COST`)."""


def serving(replicas: int, pods: Sequence[PodDrain]) -> int:
    """Replicas that take work: every wanted replica except the cordoned pods."""
    return max(0, replicas - sum(1 for pod in pods if pod.cordoned))


_IDLE, _UNKNOWN, _BUSY = range(3)


def _least_busy(pod: PodDrain) -> tuple[int, float, str]:
    """Removal order: known idle, then unknown load, then the fewest tasks in flight."""
    if pod.in_flight is None or not math.isfinite(pod.in_flight):
        return (_UNKNOWN, 0.0, pod.name)
    if pod.in_flight <= 0:
        return (_IDLE, 0.0, pod.name)
    return (_BUSY, pod.in_flight, pod.name)


def plan_scale(
    replicas: int,
    want: int,
    pods: Sequence[PodDrain],
    *,
    now: float,
    give_up_s: float,
) -> DrainPlan:
    """Replicas, cordons and removals that move the pool's serving capacity to ``want``.

    ``replicas`` is the Deployment's count now, ``pods`` its existing pods (not
    terminating; fewer than ``replicas`` while some are not created yet), and
    ``want`` the serving replicas the scaling policy asked for.
    """
    want = max(0, want)
    cordoned = [pod for pod in pods if pod.cordoned]
    now_serving = serving(replicas, pods)
    cordon: list[str] = []
    uncordon: list[str] = []
    idle_now: list[str] = []
    new_replicas = replicas

    if want > now_serving:
        # Warm pods first: the busiest cordoned pods are the least drained.
        back = sorted(cordoned, key=_least_busy, reverse=True)[: want - now_serving]
        uncordon = [pod.name for pod in back]
        new_replicas += want - now_serving - len(back)
    elif want < now_serving:
        shrink = now_serving - want
        # Replicas without a pod yet, then pods that are not ready, hold no work:
        # the ReplicaSet deletes those first whatever their cost.
        unborn = max(0, replicas - len(pods))
        starting = sum(1 for pod in pods if not pod.cordoned and not pod.ready)
        direct = min(shrink, unborn + starting)
        new_replicas -= direct
        ready = sorted((p for p in pods if not p.cordoned and p.ready), key=_least_busy)
        # A pod idle right now goes at once; a busy one is cordoned and goes once
        # drained. A pod whose load cannot be read goes at once too, as before this
        # protocol: its worker's graceful shutdown finishes what it runs.
        taken = ready[: shrink - direct]
        idle_now = [p.name for p in taken if _least_busy(p)[0] != _BUSY]
        cordon = [p.name for p in taken if _least_busy(p)[0] == _BUSY]

    staying = set(uncordon)
    drained = [
        pod.name
        for pod in cordoned
        if pod.name not in staying
        and (pod.drained() or (pod.cordoned_at is not None and now - pod.cordoned_at >= give_up_s))
    ]
    remove = (*drained, *idle_now)
    new_replicas = max(0, new_replicas - len(remove))
    still_cordoned = len(cordoned) - len(uncordon) - len(drained) + len(cordon)
    return DrainPlan(
        replicas=new_replicas,
        serving=max(0, new_replicas - still_cordoned),
        cordon=tuple(cordon),
        uncordon=tuple(uncordon),
        remove=remove,
    )
