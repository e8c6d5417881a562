"""A discrete-event model of one worker pool, its Temporal task queue and an autoscaler.

Long because the model is one event loop whose parts (pods, queue statistics, both
autoscalers, pipelines) are checked together by tests/operator/test_simulation.py.

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
  ready yet go first (newest first), then, among ready pods, the lowest
  ``pod-deletion-cost`` (an autoscaler with ``deletion_cost``, like our
  operator, sets it from each pod's tasks in flight, so idle pods go first),
  then the most recently ready. A scale-down that removes a pod with a task in
  flight counts as a busy scale-down. A removed
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

* **Pipelines** (:func:`simulate_pipeline`): several pools, each with its own
  queue, pods and autoscaler, on one clock; a document's completed step queues
  its next step on the next pool's queue (io -> cpu -> gpu -> io), and an
  autoscaler with ``observe`` sees every queue's statistics before it decides.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from docpipe_operator.cordon import DrainPlan, PodDrain, plan_scale
from docpipe_operator.scaling import (
    QueueSignal,
    ScalingKnobs,
    ScalingState,
    Upstream,
    decide,
    keda_desired,
    pipeline_upstream,
)

STATS_REFRESH_S = 6.0
"""How often the server recomputes a queue's statistics (a poll reads the last snapshot)."""
WORKER_GRACEFUL_SHUTDOWN_S = 30.0
"""How long a worker finishes its tasks after SIGTERM (services/docpipe/workers/common.py)."""
RETRY_DELAY_S = 1.0
"""Temporal's default initial retry interval: an interrupted task is queued again this much later."""
CORDON_DELAY_S = 60.0
"""From the drain annotation to the worker acting on it (or on its removal): the kubelet
rewrites a downward API volume on its pod sync, about a minute at worst."""
CORDON_GIVE_UP_S = 900.0
"""A cordoned pod that never reports drained is removed the old way after this."""
RATE_BUCKET_S = 5.0
RATE_WINDOW_S = 30.0

# Event kinds, in the order they are handled when they fall on the same instant:
# finished tasks free their slots before new tasks arrive, and the statistics
# and the autoscaler see the queue after everything else at that instant.
_COMPLETE, _KILL, _POD_READY, _ARRIVAL, _STATS, _POLL = range(6)
_RESUME = _POD_READY  # an un-cordoned pod polls again: like a pod that became ready


@dataclass(frozen=True)
class Task:
    arrival: float
    duration: float
    document: int = -1
    """In a pipeline run, the document this task is a step of."""
    stage: int = 0


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
    """Our operator: :func:`decide` every ``poll_interval_s``, keeping its state.

    It sets ``controller.kubernetes.io/pod-deletion-cost`` from each pod's tasks
    in flight before it scales down (``deletion_cost``), so the ReplicaSet removes
    idle pods first. In a pipeline run, ``pool`` and ``pipeline_knobs`` (every
    pool's knobs) turn on pre-scaling: before each decision the simulator hands
    it every queue's statistics (:meth:`observe`), as the operator reads them all
    each round.
    """

    knobs: ScalingKnobs
    poll_interval_s: float = 15.0
    name: str = "docpipe"
    pool: str | None = None
    pipeline_knobs: Mapping[str, ScalingKnobs] | None = None
    deletion_cost: bool = True
    drain_first: bool = True
    """Shrink by cordoning pods and removing them once drained (cordon.py); False: lower
    replicas at once and let the ReplicaSet pick (with ``deletion_cost``, idle first)."""
    give_up_s: float = CORDON_GIVE_UP_S
    wake_poll_s: float = 2.0
    """How often a pool at zero replicas is looked at: the operator's tick, whose wake
    check reads the queues and starts a round as soon as they show work."""
    count_in_flight: bool = True
    """With ``drain_first``: decide on the in-flight work the pods' metrics count."""
    # The operator has been running before the trace starts: no start-up window.
    state: ScalingState = field(default_factory=lambda: ScalingState(tracking_since=-math.inf))
    _upstream: Upstream | None = None

    def next_poll_s(self, replicas: int) -> float:
        """A pool at zero has nothing to drain or count: only its queue is read, often."""
        return (
            min(self.wake_poll_s, self.poll_interval_s) if replicas == 0 else self.poll_interval_s
        )

    def observe(self, signals: Mapping[str, QueueSignal | None]) -> None:
        if self.pool is not None and self.pipeline_knobs is not None:
            self._upstream = pipeline_upstream(signals, self.pipeline_knobs).get(self.pool)

    def replicas(self, current: int, signal: QueueSignal, now: float) -> int:
        decision = decide(current, signal, self.knobs, self.state, now, self._upstream)
        self.state = decision.state
        return decision.replicas

    def plan(
        self, replicas: int, pods: Sequence[PodDrain], signal: QueueSignal, now: float
    ) -> DrainPlan:
        """The operator's round with drain-before-remove: decide on serving replicas, then plan."""
        serving = replicas - sum(1 for pod in pods if pod.cordoned)
        # The operator reads every pod's metrics for the drain: their in-flight sum
        # is the work running now, counted rather than estimated from rates.
        counted = (
            sum(pod.in_flight or 0.0 for pod in pods if not pod.cordoned)
            if self.count_in_flight
            else None
        )
        decision = decide(serving, signal, self.knobs, self.state, now, self._upstream, counted)
        self.state = decision.state
        want = decision.replicas
        return plan_scale(replicas, want, pods, now=now, give_up_s=self.give_up_s)


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
    one-replica changes on pools above 10 replicas). KEDA sets no
    pod-deletion-cost: the ReplicaSet picks the pods by its own order.
    """

    target_queue_size: float
    min_replicas: int
    max_replicas: int
    poll_interval_s: float = 30.0
    stabilization_s: float = 300.0
    cooldown_s: float = 300.0
    name: str = "keda"
    deletion_cost: bool = False
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
    """Terminating: removed from the Deployment, finishing its tasks."""
    ended: float | None = None
    cordoned_at: float | None = None
    """When the operator annotated it to drain (None: not cordoned)."""
    stops_at: float | None = None
    """When its worker stops polling for that drain."""
    resumes_at: float = 0.0
    """When its worker polls again after an un-cordon."""
    running: dict[int, tuple[Task, float]] = field(default_factory=dict)
    """Run id -> (task, start time) of the tasks this pod runs now."""

    @property
    def free(self) -> int:
        return self.slots - len(self.running)

    def stopped(self, now: float) -> bool:
        """Its worker has stopped polling for a drain."""
        return self.stops_at is not None and now >= self.stops_at

    def polls(self, now: float) -> bool:
        return self.ready and not self.draining and not self.stopped(now) and now >= self.resumes_at


@dataclass(frozen=True)
class ScaleAction:
    time: float
    before: int
    after: int
    busy_pool: bool
    """A scale-down decided while every slot of the ready pods was busy."""
    busy_pods: int = 0
    """Pods this scale-down removed while they ran tasks."""

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
    busy_removals: int
    """Removals of cordoned pods that still ran tasks (a drain given up on)."""
    actions: tuple[ScaleAction, ...]
    samples: tuple[Sample, ...]
    pods: tuple[Pod, ...]

    @property
    def direction_changes(self) -> int:
        moves = [a.direction for a in self.actions]
        return sum(1 for a, b in itertools.pairwise(moves) if a != b)

    @property
    def busy_scaledowns(self) -> int:
        """Scale-downs that removed at least one pod with a task in flight."""
        return self.busy_removals + sum(
            1 for a in self.actions if a.direction < 0 and a.busy_pods > 0
        )

    @property
    def busy_pool_scaledowns(self) -> int:
        """Scale-downs decided while every ready slot was busy (KEDA's fan-out failure)."""
        return sum(1 for a in self.actions if a.direction < 0 and a.busy_pool)

    @property
    def peak_replicas(self) -> int:
        return max([a.after for a in self.actions] + [s.replicas for s in self.samples] + [0])

    @property
    def worker_seconds_per_task(self) -> float:
        """Pod-seconds per completed task: work thrown away and redone is paid, not saved."""
        return self.worker_seconds / self.completed if self.completed else math.inf

    def wait_percentile(self, q: float) -> float:
        return percentile(self.waits, q)


@dataclass(frozen=True)
class PipelineResult:
    """A pipeline run: one :class:`RunResult` per pool, and each document's trip."""

    policy: str
    pools: Mapping[str, RunResult]
    latencies: tuple[float, ...]
    """Per document that finished its last stage: seconds from entering to leaving."""
    documents: int
    finished: int

    @property
    def worker_seconds(self) -> float:
        return sum(result.worker_seconds for result in self.pools.values())

    @property
    def completed(self) -> int:
        """Tasks completed, every stage of every pool."""
        return sum(result.completed for result in self.pools.values())

    @property
    def worker_seconds_per_task(self) -> float:
        return self.worker_seconds / self.completed if self.completed else math.inf


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class PoolModel:
    """How one pool's pods behave (the pool's worker, not its autoscaler)."""

    concurrency: int
    startup_s: float
    initial_replicas: int
    startup_jitter: float = 0.0
    drain_s: float = WORKER_GRACEFUL_SHUTDOWN_S
    cordon_delay_s: float = CORDON_DELAY_S


def replicaset_order(pods: Sequence[Pod], costed: bool) -> list[Pod]:
    """The order a ReplicaSet deletes pods in: not ready first (newest first); among
    ready pods the lower pod-deletion-cost first (``costed``: the tasks in flight, as
    the operator sets it), then the most recently ready."""
    return sorted(
        pods, key=lambda p: (p.ready, len(p.running) if costed else 0, -p.ready_at, -p.id)
    )


class _Clock:
    """The event queue every pool of a run shares."""

    def __init__(self, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        self.events: list[tuple[float, int, int, Any]] = []
        self.sequence = itertools.count()

    def push(self, time: float, kind: int, payload: Any = None) -> None:
        if time <= self.horizon_s:
            heapq.heappush(self.events, (time, kind, next(self.sequence), payload))


class _Pool:
    """One pool, its queue and its autoscaler, inside a run (see the module doc)."""

    def __init__(
        self,
        name: str,
        model: PoolModel,
        autoscaler: Autoscaler,
        clock: _Clock,
        rng: random.Random,
        retry_delay_s: float,
        on_complete: Callable[[Task, float], None] | None = None,
    ) -> None:
        if model.concurrency < 1:
            raise ValueError("need concurrency >= 1")
        self.name = name
        self.model = model
        self.autoscaler = autoscaler
        self.clock = clock
        self.rng = rng
        self.retry_delay_s = retry_delay_s
        self.on_complete = on_complete
        self.pods: list[Pod] = []
        self.active: list[Pod] = []  # the Deployment's replicas: pods not terminating
        self.backlog: deque[Task] = deque()  # waiting tasks, oldest first
        self.waits: list[float] = []
        self.adds, self.dispatches = RateTracker(), RateTracker()
        self.actions: list[ScaleAction] = []
        self.samples: list[Sample] = []
        self.signal = QueueSignal(0, 0.0, 0.0, 0.0)
        self.pod_ids, self.run_ids = itertools.count(), itertools.count()
        self.arrived = self.completed = self.interrupted = self.busy_removals = 0
        self.lost_work = 0.0
        for _ in range(model.initial_replicas):
            self.new_pod(0.0, ready=True)

    def new_pod(self, now: float, ready: bool) -> None:
        jitter = self.model.startup_jitter
        delay = 0.0 if ready else self.model.startup_s * self.rng.uniform(1 - jitter, 1 + jitter)
        pod = Pod(next(self.pod_ids), now, now + delay, self.model.concurrency, ready=ready)
        self.pods.append(pod)
        self.active.append(pod)
        if not ready:
            self.clock.push(pod.ready_at, _POD_READY, (self, pod))

    def dispatch(self, now: float) -> None:
        while self.backlog:
            serving = [p for p in self.active if p.polls(now) and p.free > 0]
            if not serving:
                return
            pod = max(serving, key=lambda p: (p.free, -p.id))
            task = self.backlog.popleft()
            self.waits.append(now - task.arrival)
            run = next(self.run_ids)
            pod.running[run] = (task, now)
            self.dispatches.add(now)
            self.clock.push(now + task.duration, _COMPLETE, (self, pod, run))

    def scale(self, now: float, target: int) -> None:
        current = len(self.active)
        if target == current:
            return
        busy = self.busy_pool()
        if target > current:
            self.actions.append(ScaleAction(now, current, target, busy_pool=False))
            for _ in range(target - current):
                self.new_pod(now, ready=False)
            return
        costed = getattr(self.autoscaler, "deletion_cost", False)
        removed = replicaset_order(self.active, costed)[: current - target]
        busy_pods = sum(1 for p in removed if p.running)
        self.actions.append(ScaleAction(now, current, target, busy, busy_pods))
        self.remove(now, removed)

    def busy_pool(self) -> bool:
        """Every slot of the ready pods is busy."""
        serving = [p for p in self.active if p.ready]
        return bool(serving) and all(p.free == 0 for p in serving)

    def remove(self, now: float, pods: Sequence[Pod]) -> None:
        """SIGTERM: each pod stops polling and finishes its tasks for up to ``drain_s``."""
        for pod in pods:
            self.active.remove(pod)
            pod.draining = True
            if pod.running:
                self.clock.push(now + self.model.drain_s, _KILL, (self, pod))
            else:
                pod.ended = now

    def apply(self, now: float, plan: DrainPlan) -> None:
        """Carry out a drain-before-remove plan (cordon.py) the way the cluster would."""
        by_name = {str(pod.id): pod for pod in self.active}
        before = len(self.active) - sum(1 for p in self.active if p.cordoned_at is not None)
        busy_pool = self.busy_pool()
        delay = self.model.cordon_delay_s
        for name in plan.uncordon:
            pod = by_name[name]
            if pod.stopped(now):
                pod.resumes_at = now + delay
                self.clock.push(pod.resumes_at, _RESUME, (self, pod))
            pod.cordoned_at = pod.stops_at = None
        for name in plan.cordon:
            pod = by_name[name]
            pod.cordoned_at, pod.stops_at = now, now + delay
        named = [by_name[name] for name in plan.remove]
        self.busy_removals += sum(1 for pod in named if pod.running)
        self.remove(now, named)
        # Replicas beyond the named pods: the ReplicaSet takes pods that are not ready first.
        extra = len(self.active) - plan.replicas
        if extra > 0:
            uncordoned = [p for p in self.active if p.cordoned_at is None]
            taken = replicaset_order(uncordoned, costed=True)[:extra]
            self.busy_removals += sum(1 for pod in taken if pod.running)
            self.remove(now, taken)
        for _ in range(plan.replicas - len(self.active)):
            self.new_pod(now, ready=False)
        if plan.serving != before:
            self.actions.append(ScaleAction(now, before, plan.serving, busy_pool))

    def handle(self, now: float, kind: int, payload: Any) -> None:
        if kind == _COMPLETE:
            pod, run = payload
            entry = pod.running.pop(run, None)
            if entry is None:
                return  # interrupted by its pod's shutdown
            self.completed += 1
            if not pod.draining:
                self.dispatch(now)
            elif not pod.running:
                pod.ended = now
            if self.on_complete is not None:
                self.on_complete(entry[0], now)
        elif kind == _KILL:
            pod = payload
            if pod.ended is not None:
                return
            for task, started in pod.running.values():
                self.interrupted += 1
                self.lost_work += now - started
                again = replace(task, arrival=now + self.retry_delay_s)
                self.clock.push(again.arrival, _ARRIVAL, (self, again))
            pod.running.clear()
            pod.ended = now
        elif kind == _POD_READY:  # also _RESUME
            pod = payload
            if not pod.draining:
                pod.ready = True
                self.dispatch(now)
        elif kind == _ARRIVAL:
            self.arrived += 1
            self.adds.add(now)
            self.backlog.append(payload)
            self.dispatch(now)

    def snapshot(self, now: float) -> None:
        self.signal = QueueSignal(
            backlog_count=len(self.backlog),
            backlog_age_s=now - self.backlog[0].arrival if self.backlog else 0.0,
            add_rate=self.adds.rate(now),
            dispatch_rate=self.dispatches.rate(now),
        )

    def poll(self, now: float) -> None:
        current = len(self.active)
        self.samples.append(
            Sample(
                time=now,
                replicas=current,
                ready=sum(1 for p in self.active if p.ready),
                busy_slots=sum(len(p.running) for p in self.pods),
                backlog=len(self.backlog),
                signal=self.signal,
            )
        )
        if getattr(self.autoscaler, "drain_first", False):
            pods = [
                PodDrain(
                    name=str(p.id),
                    ready=p.ready,
                    cordoned=p.cordoned_at is not None,
                    cordoned_at=p.cordoned_at,
                    in_flight=float(len(p.running)),
                    draining=p.stopped(now),
                )
                for p in self.active
            ]
            self.apply(now, self.autoscaler.plan(current, pods, self.signal, now))
            return
        self.scale(now, self.autoscaler.replicas(current, self.signal, now))

    def result(self) -> RunResult:
        horizon_s = self.clock.horizon_s
        waits = self.waits + [horizon_s - task.arrival for task in self.backlog]
        return RunResult(
            policy=self.autoscaler.name,
            horizon_s=horizon_s,
            waits=tuple(waits),
            arrived=self.arrived,
            completed=self.completed,
            running_at_end=sum(len(p.running) for p in self.pods),
            unstarted=len(self.backlog),
            interrupted=self.interrupted,
            lost_work_s=self.lost_work,
            busy_removals=self.busy_removals,
            worker_seconds=sum(
                (horizon_s if p.ended is None else p.ended) - p.created for p in self.pods
            ),
            actions=tuple(self.actions),
            samples=tuple(self.samples),
            pods=tuple(self.pods),
        )


def _run(
    clock: _Clock,
    pools: Sequence[_Pool],
    stats_refresh_s: float,
    stats_phase_s: float,
    poll_phases: Mapping[str, float],
) -> None:
    """Handle events until the horizon: pool events, statistics refreshes, polls."""
    clock.push(stats_phase_s % stats_refresh_s, _STATS)
    for pool in pools:
        interval = pool.autoscaler.poll_interval_s
        clock.push(poll_phases.get(pool.name, 0.0) % interval, _POLL, pool)
    while clock.events:
        now, kind, _, payload = heapq.heappop(clock.events)
        if kind == _STATS:
            for pool in pools:
                pool.snapshot(now)
            clock.push(now + stats_refresh_s, _STATS)
        elif kind == _POLL:
            observe = getattr(payload.autoscaler, "observe", None)
            if observe is not None:  # the operator reads every queue each round
                observe({pool.name: pool.signal for pool in pools})
            payload.poll(now)
            pace = getattr(payload.autoscaler, "next_poll_s", None)
            interval = (
                payload.autoscaler.poll_interval_s if pace is None else pace(len(payload.active))
            )
            clock.push(now + interval, _POLL, payload)
        else:
            pool, *rest = payload
            pool.handle(now, kind, rest[0] if len(rest) == 1 else tuple(rest))


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
    clock = _Clock(horizon_s)
    model = PoolModel(concurrency, startup_s, initial_replicas, startup_jitter, drain_s)
    pool = _Pool("pool", model, autoscaler, clock, random.Random(seed), retry_delay_s)
    for task in tasks:
        clock.push(task.arrival, _ARRIVAL, (pool, task))
    _run(clock, [pool], stats_refresh_s, stats_phase_s, {"pool": poll_phase_s})
    return pool.result()


@dataclass(frozen=True)
class Document:
    """One document's trip: it enters at ``arrival``, then runs each (pool, seconds) in turn."""

    arrival: float
    stages: tuple[tuple[str, float], ...]


def simulate_pipeline(
    documents: Sequence[Document],
    models: Mapping[str, PoolModel],
    autoscalers: Mapping[str, Autoscaler],
    *,
    horizon_s: float,
    handoff_s: float = 0.0,
    retry_delay_s: float = RETRY_DELAY_S,
    stats_refresh_s: float = STATS_REFRESH_S,
    stats_phase_s: float = 0.0,
    poll_phases: Mapping[str, float] | None = None,
    seed: int = 0,
) -> PipelineResult:
    """Run several pools whose queues feed each other, like a document's workflow.

    A document's first task is queued at its first stage's pool when it enters;
    each completed task queues the document's next stage ``handoff_s`` later
    (the workflow task in between). Every pool has its own autoscaler; one
    that has an ``observe`` method gets every queue's statistics before each
    of its decisions. Start-up jitter is drawn per pool from ``seed``.
    """
    if horizon_s <= 0:
        raise ValueError("need a positive horizon")
    clock = _Clock(horizon_s)
    latencies: list[float] = []
    pools: dict[str, _Pool] = {}

    def advance(task: Task, now: float) -> None:
        document = documents[task.document]
        stage = task.stage + 1
        if stage == len(document.stages):
            latencies.append(now - document.arrival)
            return
        pool, seconds = document.stages[stage]
        nxt = Task(now + handoff_s, seconds, task.document, stage)
        clock.push(nxt.arrival, _ARRIVAL, (pools[pool], nxt))

    for index, name in enumerate(models):
        rng = random.Random(seed * 1000 + index)
        pools[name] = _Pool(
            name, models[name], autoscalers[name], clock, rng, retry_delay_s, advance
        )
    for number, document in enumerate(documents):
        if document.arrival < 0 or not document.stages:
            raise ValueError("documents enter at time >= 0 and have stages")
        pool, seconds = document.stages[0]
        clock.push(
            document.arrival, _ARRIVAL, (pools[pool], Task(document.arrival, seconds, number))
        )
    _run(clock, list(pools.values()), stats_refresh_s, stats_phase_s, poll_phases or {})
    results = {name: pool.result() for name, pool in pools.items()}
    policy = next(iter(results.values())).policy if results else ""
    return PipelineResult(policy, results, tuple(latencies), len(documents), len(latencies))
