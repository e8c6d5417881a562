"""A discrete-event model of one worker pool, its Temporal task queue and an autoscaler.

``bench/autoscale_sim.py`` runs our policy (:func:`docpipe_operator.scaling.decide`)
and KEDA's Temporal scaler through it on the same traces. Pure: no I/O, no
clock, no global randomness (every random draw comes from a seeded
``random.Random``), so a run is reproducible and fast enough for unit tests.

What is modelled, and how:

* **Tasks** arrive at fixed times (the trace) and each runs for its own
  duration. A task waits in the queue's backlog only while no slot is free:
  a worker polls only when it has a free slot, and Temporal hands a new task
  straight to a waiting poller ("sync match"), so such a task never shows in
  the backlog. The backlog is first in, first out.
* **Pods** have ``concurrency`` slots. A new pod bills from the moment it is
  created but takes a start-up delay (scheduling, image pull, imports, model
  loading) before it polls. The dispatcher gives a task to the ready pod with
  the most free slots (pollers of every pod wait at the server together).
* **Scale-down** follows the ReplicaSet controller's choice: pods that are not
  ready yet go first (newest first), then the most recently ready. A removed
  pod gets SIGTERM, stops polling and finishes its tasks for up to the
  workers' graceful shutdown (30 s); tasks still running then are lost, and
  Temporal queues them again after its retry interval (1 s). The pod bills
  until it exits.
* **Temporal's statistics** (DescribeTaskQueue ``report_stats``) are what the
  autoscaler reads: the backlog count and the age of its oldest task, and add
  and dispatch rates computed like the matching service's task tracker
  (5 s buckets, a 30 s window, divided by the elapsed time up to 30 s plus the
  current bucket). Adds count every task, sync-matched or not. The server
  refreshes these numbers only every ``stats_refresh_s`` (about 6 s), so a
  poll sees a snapshot up to that old.
* **The autoscaler** polls on its own interval, reads the latest snapshot and
  sets the Deployment's replicas; ``current`` is the Deployment's replica count
  (pods not terminating), as the operator reads it.

What it reports per run: every task's wait (start minus arrival: the backlog
age it lived through), worker-seconds (pod-seconds billed: starting, ready and
draining pods), every scaling action, the scale direction changes, the
busy-pool scale-downs (a scale-down while every slot of the ready pods was
busy), and the tasks and work seconds lost to shutdowns.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from docpipe_operator.scaling import (
    QueueSignal,
    ScalingKnobs,
    ScalingState,
    decide,
    keda_desired,
)

STATS_REFRESH_S = 6.0
"""How often the server recomputes a queue's statistics (a poll reads the last snapshot)."""
WORKER_GRACEFUL_SHUTDOWN_S = 30.0
"""How long a worker finishes its tasks after SIGTERM (services/docpipe/workers/common.py)."""
RETRY_DELAY_S = 1.0
"""Temporal's default initial retry interval: an interrupted task is queued again this much later."""
RATE_BUCKET_S = 5.0
RATE_WINDOW_S = 30.0

# Event kinds, in the order they are handled when they fall on the same instant:
# finished tasks free their slots before new tasks arrive, and the statistics
# and the autoscaler see the queue after everything else at that instant.
_COMPLETE, _KILL, _POD_READY, _ARRIVAL, _STATS, _POLL = range(6)


@dataclass(frozen=True)
class Task:
    arrival: float
    duration: float


class RateTracker:
    """Tasks per second over the last ~30 s, the way Temporal's matching service counts them.

    Counts go into 5 s buckets; the rate is the count of the last 6 whole buckets
    plus the current one, divided by 30 s plus the time into the current bucket
    (or by the time since the tracker started, when that is shorter).
    """

    def __init__(
        self, start: float = 0.0, bucket_s: float = RATE_BUCKET_S, window_s: float = RATE_WINDOW_S
    ) -> None:
        self.start = start
        self.bucket_s = bucket_s
        self.window_s = window_s
        self.buckets = int(window_s // bucket_s) + 1
        self._counts: dict[int, int] = {}

    def _bucket(self, now: float) -> int:
        return math.floor((now - self.start) / self.bucket_s)

    def add(self, now: float, n: int = 1) -> None:
        index = self._bucket(now)
        self._counts[index] = self._counts.get(index, 0) + n
        for old in [i for i in self._counts if i <= index - self.buckets]:
            del self._counts[old]

    def rate(self, now: float) -> float:
        index = self._bucket(now)
        total = sum(c for i, c in self._counts.items() if index - self.buckets < i <= index)
        into_bucket = (now - self.start) - index * self.bucket_s
        elapsed = min(self.window_s + into_bucket, now - self.start)
        return total / elapsed if elapsed > 0 else 0.0


class Autoscaler(Protocol):
    name: str
    poll_interval_s: float

    def replicas(self, current: int, signal: QueueSignal, now: float) -> int:
        """The replica count to set, given the Deployment's and the queue's."""
        ...


@dataclass
class DocpipeAutoscaler:
    """Our operator: :func:`decide` every ``poll_interval_s``, keeping its state."""

    knobs: ScalingKnobs
    poll_interval_s: float = 15.0
    name: str = "docpipe"
    # The operator has been running before the trace starts: no start-up window.
    state: ScalingState = field(default_factory=lambda: ScalingState(tracking_since=-math.inf))

    def replicas(self, current: int, signal: QueueSignal, now: float) -> int:
        decision = decide(current, signal, self.knobs, self.state, now)
        self.state = decision.state
        return decision.replicas


@dataclass
class KedaAutoscaler:
    """KEDA's Temporal scaler with the HPA it drives, at their defaults.

    * desired = ``ceil(backlog / targetQueueSize)`` clamped to ``[max(min, 1), max]``;
    * read every ``poll_interval_s`` (KEDA's pollingInterval, 30 s);
    * up at once; down to the highest desire of the last ``stabilization_s``
      (the HPA's default scale-down stabilisation, 300 s);
    * with ``min_replicas == 0``: to zero once the backlog has read 0 for
      ``cooldown_s`` (cooldownPeriod, 300 s), and from zero straight to the
      desired count on the first poll that sees a backlog (generous: KEDA
      really goes to 1 and lets the HPA take over on its next sync).

    Not modelled: the HPA's scale-up rate limit (4 pods or 100 % per 15 s;
    leaving it out favours KEDA) and its 10 % tolerance (no change while the
    desire is within 10 % of the current count; it would spare KEDA some
    one-replica changes on pools above 10 replicas).
    """

    target_queue_size: float
    min_replicas: int
    max_replicas: int
    poll_interval_s: float = 30.0
    stabilization_s: float = 300.0
    cooldown_s: float = 300.0
    name: str = "keda"
    _desires: deque[tuple[float, int]] = field(default_factory=deque)
    _last_active: float = -math.inf

    def replicas(self, current: int, signal: QueueSignal, now: float) -> int:
        hpa_min = max(self.min_replicas, 1)
        desired = keda_desired(
            signal.backlog_count, self.target_queue_size, hpa_min, self.max_replicas
        )
        active = signal.backlog_count > 0
        if active:
            self._last_active = now
        if current == 0:
            if not active:
                return 0
            self._desires.append((now, desired))
            return desired
        if self.min_replicas == 0 and not active and now - self._last_active >= self.cooldown_s:
            self._desires.clear()
            return 0
        self._desires.append((now, desired))
        while self._desires and now - self._desires[0][0] >= self.stabilization_s:
            self._desires.popleft()
        if desired > current:
            return desired
        return min(current, max(d for _, d in self._desires))


@dataclass
class Pod:
    id: int
    created: float
    ready_at: float
    slots: int
    ready: bool = False
    draining: bool = False
    ended: float | None = None
    running: dict[int, tuple[Task, float]] = field(default_factory=dict)
    """Run id -> (task, start time) of the tasks this pod runs now."""

    @property
    def free(self) -> int:
        return self.slots - len(self.running)


@dataclass(frozen=True)
class ScaleAction:
    time: float
    before: int
    after: int
    busy_pool: bool
    """A scale-down decided while every slot of the ready pods was busy."""

    @property
    def direction(self) -> int:
        return 1 if self.after > self.before else -1


@dataclass(frozen=True)
class Sample:
    """The pool and the queue as one autoscaler poll found them."""

    time: float
    replicas: int
    ready: int
    busy_slots: int
    backlog: int
    signal: QueueSignal


@dataclass(frozen=True)
class RunResult:
    policy: str
    horizon_s: float
    waits: tuple[float, ...]
    """Per dispatch, and per task still waiting at the horizon: seconds spent in the backlog."""
    arrived: int
    """Tasks added to the queue before the horizon, retries of interrupted tasks included."""
    completed: int
    running_at_end: int
    unstarted: int
    interrupted: int
    """Tasks still running when their pod's graceful shutdown ran out (Temporal retries them)."""
    lost_work_s: float
    worker_seconds: float
    actions: tuple[ScaleAction, ...]
    samples: tuple[Sample, ...]
    pods: tuple[Pod, ...]

    @property
    def direction_changes(self) -> int:
        moves = [a.direction for a in self.actions]
        return sum(1 for a, b in itertools.pairwise(moves) if a != b)

    @property
    def busy_scaledowns(self) -> int:
        return sum(1 for a in self.actions if a.direction < 0 and a.busy_pool)

    @property
    def peak_replicas(self) -> int:
        return max([a.after for a in self.actions] + [s.replicas for s in self.samples] + [0])

    def wait_percentile(self, q: float) -> float:
        return percentile(self.waits, q)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def simulate(
    tasks: Sequence[Task],
    autoscaler: Autoscaler,
    *,
    concurrency: int,
    startup_s: float,
    horizon_s: float,
    initial_replicas: int,
    startup_jitter: float = 0.0,
    drain_s: float = WORKER_GRACEFUL_SHUTDOWN_S,
    retry_delay_s: float = RETRY_DELAY_S,
    stats_refresh_s: float = STATS_REFRESH_S,
    stats_phase_s: float = 0.0,
    poll_phase_s: float = 0.0,
    seed: int = 0,
) -> RunResult:
    """Run one pool under one autoscaler from time 0 to ``horizon_s``.

    ``initial_replicas`` pods are ready at time 0. Each new pod's start-up
    delay is ``startup_s`` times a uniform factor in ``1 ± startup_jitter``
    (drawn from ``seed``). A pod removed by a scale-down stops polling and
    finishes its tasks for up to ``drain_s`` (the workers' graceful shutdown);
    tasks still running then are lost and re-added ``retry_delay_s`` later
    (Temporal's retry). Statistics snapshots are taken at
    ``stats_phase_s + k * stats_refresh_s``, autoscaler polls happen at
    ``poll_phase_s + k * poll_interval_s``.
    """
    if concurrency < 1 or horizon_s <= 0:
        raise ValueError("need concurrency >= 1 and a positive horizon")
    if any(task.arrival < 0 for task in tasks):
        raise ValueError("arrivals start at time 0")
    rng = random.Random(seed)
    events: list[tuple[float, int, int, Any]] = []
    sequence = itertools.count()

    def push(time: float, kind: int, payload: Any = None) -> None:
        if time <= horizon_s:
            heapq.heappush(events, (time, kind, next(sequence), payload))

    pods: list[Pod] = []
    active: list[Pod] = []  # the Deployment's replicas: pods not terminating
    backlog: deque[Task] = deque()  # waiting tasks, oldest first
    waits: list[float] = []
    adds, dispatches = RateTracker(), RateTracker()
    actions: list[ScaleAction] = []
    samples: list[Sample] = []
    signal = QueueSignal(0, 0.0, 0.0, 0.0)
    pod_ids, run_ids = itertools.count(), itertools.count()
    counts = {"arrived": 0, "completed": 0, "interrupted": 0}
    lost_work = 0.0

    def new_pod(now: float, ready: bool) -> None:
        delay = 0.0 if ready else startup_s * rng.uniform(1 - startup_jitter, 1 + startup_jitter)
        pod = Pod(next(pod_ids), now, now + delay, concurrency, ready=ready)
        pods.append(pod)
        active.append(pod)
        if not ready:
            push(pod.ready_at, _POD_READY, pod)

    def dispatch(now: float) -> None:
        while backlog:
            serving = [p for p in active if p.ready and p.free > 0]
            if not serving:
                return
            pod = max(serving, key=lambda p: (p.free, -p.id))
            task = backlog.popleft()
            waits.append(now - task.arrival)
            run = next(run_ids)
            pod.running[run] = (task, now)
            dispatches.add(now)
            push(now + task.duration, _COMPLETE, (pod, run))

    def scale(now: float, target: int) -> None:
        current = len(active)
        if target == current:
            return
        serving = [p for p in active if p.ready]
        busy = bool(serving) and all(p.free == 0 for p in serving)
        actions.append(ScaleAction(now, current, target, busy_pool=busy and target < current))
        if target > current:
            for _ in range(target - current):
                new_pod(now, ready=False)
            return
        # The ReplicaSet's order: not ready first (newest first), then the most recently ready.
        for pod in sorted(active, key=lambda p: (p.ready, -p.ready_at, -p.id))[: current - target]:
            active.remove(pod)
            pod.draining = True
            if pod.running:
                push(now + drain_s, _KILL, pod)
            else:
                pod.ended = now

    for _ in range(initial_replicas):
        new_pod(0.0, ready=True)
    for task in tasks:
        push(task.arrival, _ARRIVAL, task)
    push(stats_phase_s % stats_refresh_s, _STATS)
    push(poll_phase_s % autoscaler.poll_interval_s, _POLL)

    while events:
        now, kind, _, payload = heapq.heappop(events)
        if kind == _COMPLETE:
            pod, run = payload
            if pod.running.pop(run, None) is None:
                continue  # interrupted by its pod's shutdown
            counts["completed"] += 1
            if not pod.draining:
                dispatch(now)
            elif not pod.running:
                pod.ended = now
        elif kind == _KILL:
            pod = payload
            if pod.ended is not None:
                continue
            for task, started in pod.running.values():
                counts["interrupted"] += 1
                lost_work += now - started
                push(now + retry_delay_s, _ARRIVAL, Task(now + retry_delay_s, task.duration))
            pod.running.clear()
            pod.ended = now
        elif kind == _POD_READY:
            pod = payload
            if not pod.draining:
                pod.ready = True
                dispatch(now)
        elif kind == _ARRIVAL:
            counts["arrived"] += 1
            adds.add(now)
            backlog.append(payload)
            dispatch(now)
        elif kind == _STATS:
            signal = QueueSignal(
                backlog_count=len(backlog),
                backlog_age_s=now - backlog[0].arrival if backlog else 0.0,
                add_rate=adds.rate(now),
                dispatch_rate=dispatches.rate(now),
            )
            push(now + stats_refresh_s, _STATS)
        else:  # _POLL
            current = len(active)
            samples.append(
                Sample(
                    time=now,
                    replicas=current,
                    ready=sum(1 for p in active if p.ready),
                    busy_slots=sum(len(p.running) for p in pods),
                    backlog=len(backlog),
                    signal=signal,
                )
            )
            scale(now, autoscaler.replicas(current, signal, now))
            push(now + autoscaler.poll_interval_s, _POLL)

    waits.extend(horizon_s - task.arrival for task in backlog)
    return RunResult(
        policy=autoscaler.name,
        horizon_s=horizon_s,
        waits=tuple(waits),
        arrived=counts["arrived"],
        completed=counts["completed"],
        running_at_end=sum(len(p.running) for p in pods),
        unstarted=len(backlog),
        interrupted=counts["interrupted"],
        lost_work_s=lost_work,
        worker_seconds=sum((horizon_s if p.ended is None else p.ended) - p.created for p in pods),
        actions=tuple(actions),
        samples=tuple(samples),
        pods=tuple(pods),
    )
