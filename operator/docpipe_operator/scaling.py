"""The scaling policy: task-queue statistics in, desired replicas out. Pure.

Long because every rule of one decision and the reason for it are read together here.

Nothing here does I/O or reads a clock: the caller passes ``now`` and the
state returned by the previous decision, so the same function runs in the
operator, in unit tests and in a trace-driven simulation.

The anchor is KEDA's Temporal scaler, ``desired = ceil(backlog /
targetQueueSize)``. It fails in three known ways, and each rule below exists
for one of them (docs/scaling.md has the long form):

* **Fan-out** (kedacore/keda#7977): one workflow fans out as many activities as
  there are slots; every task is dispatched at once, so the backlog reads ~0
  while every slot is busy, and KEDA shrinks the busy pool. We estimate the
  work in flight with Little's law, as the tasks dispatched during the last
  typical task duration (the dispatch-rate readings integrated over it), and
  never recommend fewer replicas than that work needs. Work dispatched in one
  burst, whose 30 s rate average decays long before the tasks finish, thus
  holds its replicas for a whole task, and the stabilisation window then
  waits on top of that; the integral also keeps a burst of long tasks from
  reading as a steady stream (N / 30 s x task duration: far more work than
  N tasks).
* **Lag** (kedacore/keda#7966): the backlog count only rises once the pool is
  saturated. We also scale on the backlog's *age* and on the backlog's growth
  (add rate above what the replicas already asked for dispatch, starting ones
  included), projected over the time a new pod takes to start, so the pool
  grows before the count looks alarming, and not again for pods on their way.
* **Flapping**: up is immediate; down happens only when every recommendation
  of the stabilisation window was lower (so a noisy load settles at its recent
  peak), by at most ``max_scale_down_step`` replicas per decision, and never
  while tasks are waiting; a reading with tasks waiting (every slot busy)
  counts in the window as a recommendation of at least the current size.

Plus: ``[min, max]`` clamps; a pool with ``scale_to_zero`` goes to zero after a
whole window without work and comes back on the first queued task (Temporal
reports the backlog of a queue that has no pollers); and no statistics means
*hold*: missing data never shrinks a pool, let alone to zero.

**Pre-scaling** (:func:`pipeline_upstream`): a document's work flows through
the pools in :data:`PIPELINE` order, so the queues upstream of a pool say what
it will get before its own queue does. A pool's demand also covers the tasks
about to reach it: the rate its feeding stage takes work in, plus the work
waiting upstream as if it arrived within one of this pool's start-ups, times
``upstream_fraction``. A cold GPU pool thus starts loading its model while the
downloads and the text extraction run, instead of after the first embedding
task has queued. In a steady flow this equals the pool's own arrival rate, so
it adds nothing; upstream statistics that are missing stop a scale-down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

# Rates and counts below this are "nothing" (the server reports float rates).
_EPSILON = 1e-6
# Age pressure may at most double the pool in one decision.
_MAX_AGE_UP_FACTOR = 2.0
# A need this far below the window's peak, for a settle window, is a load that ended.
ENDED_FRACTION = 0.25
# ...and the window's peak asked for this many replicas more: at one or two replicas
# the counts are too small to tell a load that ended from a quiet minute.
ENDED_MIN_DROP = 2


class Reason(StrEnum):
    """Why a decision came out as it did (CamelCase: it lands in Events and status)."""

    STEADY = "Steady"
    NO_DATA = "NoData"
    STABILIZING = "Stabilizing"
    BACKLOG_WAITING = "BacklogWaiting"
    MIN_REPLICAS = "MinReplicas"
    MAX_REPLICAS = "MaxReplicas"
    SCALE_FROM_ZERO = "ScaleFromZero"
    BACKLOG = "Backlog"
    BACKLOG_GROWING = "BacklogGrowing"
    BACKLOG_AGE = "BacklogAge"
    BUSY = "Busy"
    ARRIVALS = "Arrivals"
    UPSTREAM = "Upstream"
    UPSTREAM_NO_DATA = "UpstreamNoData"
    SCALE_DOWN = "ScaleDown"
    LOAD_ENDED = "LoadEnded"
    SCALE_TO_ZERO = "ScaleToZero"


@dataclass(frozen=True)
class ScalingKnobs:
    """One pool's policy settings (the CRD's ``pools.<kind>`` and ``scaling`` fields)."""

    min_replicas: int
    max_replicas: int
    concurrency: int
    """Tasks one replica runs at once (its slots)."""
    target_backlog_per_replica: float
    """KEDA's targetQueueSize: waiting tasks one extra replica should absorb."""
    task_seconds: float
    """Typical duration of one task; turns the dispatch rate into work in flight."""
    target_backlog_age_s: float
    """A backlog older than this scales the pool up even when it is short."""
    scale_up_horizon_s: float
    """How far ahead a growing backlog is projected (about a pod's start-up time)."""
    scale_down_stabilization_s: float
    max_scale_down_step: int
    scale_to_zero: bool = False
    upstream_fraction: float = 1.0
    """Tasks this pool gets per task its feeding stage takes (the share of documents
    that reach it); 0 turns pre-scaling off. Used only when :func:`decide` is given
    an :class:`Upstream`."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need 0 <= min_replicas <= max_replicas, got {self.min_replicas}, "
                f"{self.max_replicas}"
            )
        if self.concurrency < 1 or self.max_scale_down_step < 1:
            raise ValueError("concurrency and max_scale_down_step must be >= 1")
        if self.target_backlog_per_replica <= 0 or self.target_backlog_age_s <= 0:
            raise ValueError("targets must be positive")
        if self.upstream_fraction < 0:
            raise ValueError("upstream_fraction must be >= 0")

    @property
    def settle_window_s(self) -> float:
        """How long a fallen need must stay down before it counts as ended: two pod
        start-ups, so a dip shorter than a start-up and back is noise."""
        return 2 * self.scale_up_horizon_s

    @property
    def down_window_s(self) -> float:
        """The stabilisation window, never shorter than one task (see the module doc)."""
        return max(self.scale_down_stabilization_s, self.task_seconds)


@dataclass(frozen=True)
class QueueSignal:
    """What Temporal says about one task queue (DescribeTaskQueue report_stats)."""

    backlog_count: int
    backlog_age_s: float
    add_rate: float
    dispatch_rate: float

    @property
    def idle(self) -> bool:
        """Nothing waiting, nothing added or dispatched (the rates are 30 s averages)."""
        return (
            self.backlog_count <= 0 and self.add_rate <= _EPSILON and self.dispatch_rate <= _EPSILON
        )


@dataclass(frozen=True)
class ScalingState:
    """What a decision remembers for the next one (kept by the caller)."""

    recommendations: tuple[tuple[float, int], ...] = ()
    """(time, target) of recent decisions, pruned to the down window."""
    tracking_since: float | None = None
    """When this state started observing; no scale-down before a full window."""
    last_scale_time: float | None = None
    last_direction: int = 0
    readings: tuple[tuple[float, float, float], ...] = ()
    """(time, add rate, dispatch rate) of recent signals, reaching back one task."""
    work: tuple[tuple[float, float], ...] = ()
    """(time, tasks running, counted) of recent decisions, pruned to the down window."""


@dataclass(frozen=True)
class Load:
    """The policy's reading of the queue, kept for status and Events."""

    in_flight: float
    busy_replicas: int
    keep_up_replicas: int
    projected_backlog: float
    drain_replicas: int
    age_replicas: int
    floor: int
    target: int
    upstream_replicas: int = 0
    """Replicas for the work about to arrive from upstream stages (pre-scaling)."""
    unserved: float = 0.0
    """Waiting tasks no slot of the current replicas will take (:func:`unserved_tasks`)."""


PIPELINE: tuple[str, ...] = ("io", "cpu", "gpu", "io")
"""The pools a document's work passes through, in order (workflows/document_pipeline.py:
download on io, text extraction on cpu, embeddings on gpu, storing on io)."""


@dataclass(frozen=True)
class Upstream:
    """What the queues before a pool in :data:`PIPELINE` are about to send it."""

    rate: float
    """Tasks per second expected to reach the pool soon (weighted by its upstream_fraction)."""
    queued: float
    """Weighted tasks waiting in the upstream queues (for status and messages)."""
    missing: tuple[str, ...] = ()
    """Upstream pools whose statistics could not be read: the pool must not shrink."""


def pipeline_upstream(
    signals: Mapping[str, QueueSignal | None],
    knobs: Mapping[str, ScalingKnobs],
    pipeline: Sequence[str] = PIPELINE,
) -> dict[str, Upstream]:
    """Per pool, the work on its way from the stages before it; all queues' statistics in.

    For each pool's first stage in ``pipeline`` (a pool that also serves an earlier
    stage, like io's storing step, gets its own queue's reading instead), the
    expected arrival rate is

    ``upstream_fraction x (max over upstream stages of max(add, dispatch) + upstream backlog / horizon)``

    * the *flow*: what an upstream stage takes in now, this pool gets the
      upstream task durations later. The highest upstream rate is the rate
      documents enter, even while a stage in between is saturated and still
      scaling up, and that is the rate this pool will have to keep up with;
    * the tasks *waiting* in the queues before it arrive on top of that, counted
      as if they all came within this pool's ``scale_up_horizon_s`` (a start-up):
      the pods started now are the ones that will serve them.

    A queue that serves k stages (io: download and store) counts 1/k of its
    rates and backlog per stage. In a steady flow every stage's rate is the
    pool's own add rate and nothing waits upstream, so pre-scaling asks for what
    the pool's own statistics already do; it leads only when the flow changes.
    Pools without an upstream stage, or with ``upstream_fraction`` 0, are absent
    from the answer.
    """
    answer: dict[str, Upstream] = {}
    for index, pool in enumerate(pipeline):
        if pool in answer or pool not in knobs or pool in pipeline[:index]:
            continue
        fraction = knobs[pool].upstream_fraction
        before = [stage for stage in pipeline[:index] if stage != pool]
        if fraction <= 0 or not before:
            continue
        missing = tuple(sorted({stage for stage in before if signals.get(stage) is None}))
        flow = queued = 0.0
        for stage in dict.fromkeys(before):
            found = signals.get(stage)
            if found is None:
                continue
            # A queue serving k stages (io: download and store) counts 1/k per stage.
            stages = list(pipeline).count(stage)
            flow = max(flow, max(found.add_rate, found.dispatch_rate) / stages)
            queued += max(0, found.backlog_count) * before.count(stage) / stages
        horizon = max(knobs[pool].scale_up_horizon_s, 1.0)
        answer[pool] = Upstream(
            rate=fraction * (flow + queued / horizon),
            queued=fraction * queued,
            missing=missing,
        )
    return answer


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: Reason
    message: str
    state: ScalingState
    load: Load | None = None
    current: int = 0

    @property
    def direction(self) -> int:
        """+1 scale up, -1 scale down, 0 no change."""
        return (self.replicas > self.current) - (self.replicas < self.current)


def _ceil(value: float) -> int:
    """ceil that ignores float dust (4.0000000001 tasks is 4 tasks, not 5)."""
    return max(0, math.ceil(value - 1e-9))


def witnessed(
    readings: tuple[tuple[float, float, float], ...],
    now: float,
    span_s: float,
    rate_now: float,
    column: int,
) -> float:
    """Tasks added (``column`` 1) or dispatched (2) over ``(now - span_s, now]``.

    The integral of the rate readings: the current rate stands for the time
    since the last reading, each earlier reading for the time since the one
    before it. Time no reading covers (the first poll, after a restart) takes
    the oldest rate known, so without any history this is ``rate_now x span_s``.
    Temporal's rates are 30 s averages, so a burst of N tasks shows in two or
    three polls and integrates to about N (up to ~1.4 N).
    """
    start = now - span_s
    total, until, rate = 0.0, now, rate_now
    for reading in reversed(readings):
        at = reading[0]
        if at <= start:
            return total + rate * max(0.0, until - start)
        total += rate * max(0.0, until - at)
        until, rate = at, reading[column]
    return total + rate * max(0.0, until - start)


def _keep_readings(
    readings: tuple[tuple[float, float, float], ...], now: float, span_s: float
) -> tuple[tuple[float, float, float], ...]:
    """The readings :func:`witnessed` needs next time: those inside the span, and one before."""
    inside = [i for i, reading in enumerate(readings) if reading[0] > now - span_s]
    first = max(0, inside[0] - 1) if inside else max(0, len(readings) - 1)
    return readings[first:]


def unserved_tasks(
    waiting: float, current: int, concurrency: int, counted_in_flight: float | None
) -> float:
    """Waiting tasks that no slot of the pool's replicas will take.

    Without counted work every waiting task is unserved (KEDA's reading). With it,
    the slots the replicas have beyond the tasks they run are free: pods still
    starting, or a slot a task just left. Tasks waiting for those slots still need
    them (they count as running), but they are no sign that every slot is busy, and
    no reason for the backlog-age rule to double a pool whose backlog statistic is
    a refresh behind its pods.
    """
    if counted_in_flight is None:
        return float(waiting)
    free = max(0.0, current * concurrency - max(0.0, counted_in_flight))
    return max(0.0, waiting - free)


def assess(
    signal: QueueSignal,
    knobs: ScalingKnobs,
    current: int,
    readings: tuple[tuple[float, float, float], ...] = (),
    now: float = 0.0,
    starting: bool = False,
    upstream: Upstream | None = None,
    measured_in_flight: float | None = None,
) -> tuple[Load, Reason]:
    """Replicas the queue asks for (before stabilisation), and the main reason.

    Two estimates of the same need, in fractional replicas, rounded up once:

    * the work running now (the tasks dispatched during the last task
      duration, in replicas) plus the backlog projected ``scale_up_horizon_s``
      ahead at the current growth rate (add minus dispatch), each
      ``target_backlog_per_replica`` tasks one replica more;
    * the replicas that keep up with the arrival rate plus today's backlog.

    The first reacts to measured saturation, the second to arrivals even
    before the pool saturates; the larger wins. A backlog older than
    ``target_backlog_age_s`` asks for up to twice the current replicas, unless
    the pool grew less than ``scale_up_horizon_s`` (a pod's start-up) ago
    (``starting``): those pods cannot have served the backlog yet, so its age
    says nothing about their number, and doubling them would only overshoot.

    Work in flight is Little's law, but integrated over the previous
    ``readings`` (see :func:`witnessed`) rather than the current rate times
    the task duration: the two agree for a steady load, while after a burst
    of tasks longer than Temporal's 30 s rate window the current rate first
    reads N / 30 (times ``task_seconds``: far more work than N tasks) and then
    0 (while the tasks still run). Likewise the arrivals a pool must keep up
    with are at most the tasks that arrived during the last task duration plus
    those due within the horizon; waiting tasks among them are counted once,
    by the backlog term.

    With ``upstream`` (pre-scaling, :func:`pipeline_upstream`) a third estimate
    joins: the replicas that keep up with the tasks about to arrive from the
    stages before this pool (plus this queue's own waiting tasks). It is the
    second estimate with the upstream rate for the add rate, so it replaces
    rather than adds to it: in a steady flow both read the same.

    ``measured_in_flight`` is the work running now as the pods' own metrics
    count it (the operator reads them for drain-before-remove); when given it
    replaces the rate-based estimate, which lags the end of a burst by a task.
    """
    span = knobs.task_seconds
    waiting = max(0, signal.backlog_count)
    if measured_in_flight is not None:
        in_flight = max(0.0, measured_in_flight)
    else:
        in_flight = witnessed(readings, now, span, signal.dispatch_rate, 2)
    unserved = unserved_tasks(waiting, current, knobs.concurrency, measured_in_flight)
    # Tasks that free slots will take need those slots: they count as running.
    busy = (in_flight + waiting - unserved) / knobs.concurrency
    arrived = witnessed(readings, now, span, signal.add_rate, 1)
    if signal.backlog_age_s <= span:  # every waiting task arrived within the span
        arrived = max(0.0, arrived - waiting)
    arrivals = min(signal.add_rate * span, arrived + signal.add_rate * knobs.scale_up_horizon_s)
    keep_up = arrivals / knobs.concurrency
    # The pods already asked for (some still starting) will dispatch at their capacity.
    capacity = current * knobs.concurrency / max(span, _EPSILON)
    growth = max(0.0, signal.add_rate - max(signal.dispatch_rate, capacity))
    projected = unserved + growth * knobs.scale_up_horizon_s
    per_replica = knobs.target_backlog_per_replica
    # Waiting tasks that free slots will take are running work already (busy): only
    # those no slot will take ask for replicas on top of the arrival stream's.
    if measured_in_flight is not None:
        stream = max(keep_up, busy) + unserved / per_replica
    else:
        stream = keep_up + waiting / per_replica
    own = _ceil(max(busy + projected / per_replica, stream))
    ahead = 0.0
    if upstream is not None:
        # Keep up with what is coming. Not also the tasks that would pile up while
        # pods start: counted as waiting tasks per replica (KEDA's target) they
        # asked a GPU pool for every replica it may have, where the pods that keep
        # up drain that pile within seconds (bench/autoscale_sim.py: 1.18x the
        # worker-seconds for the same p95 wait).
        ahead = upstream.rate * span / knobs.concurrency
    demand = max(own, _ceil(ahead + waiting / per_replica))
    age = 0
    if unserved > 0 and signal.backlog_age_s > knobs.target_backlog_age_s and not starting:
        factor = min(signal.backlog_age_s / knobs.target_backlog_age_s, _MAX_AGE_UP_FACTOR)
        age = max(current + 1, _ceil(current * factor))
        if measured_in_flight is not None:
            # Counted work names the tasks no slot will take (the backlog count may
            # be a statistics refresh behind the pods): a slot each, not a doubling.
            age = min(age, current + max(1, _ceil(unserved / knobs.concurrency)))
    floor = 0 if (knobs.scale_to_zero and signal.idle) else knobs.min_replicas
    target = min(max(demand, age, floor), knobs.max_replicas)

    if floor > max(demand, age):
        reason = Reason.MIN_REPLICAS
    elif age >= demand and age > 0:
        reason = Reason.BACKLOG_AGE
    elif demand > own:
        reason = Reason.UPSTREAM
    elif projected > 0:
        reason = Reason.BACKLOG_GROWING if growth > _EPSILON else Reason.BACKLOG
    elif busy >= keep_up:
        reason = Reason.BUSY
    else:
        reason = Reason.ARRIVALS
    load = Load(
        in_flight=in_flight,
        busy_replicas=_ceil(busy),
        keep_up_replicas=_ceil(keep_up),
        projected_backlog=projected,
        drain_replicas=_ceil(projected / per_replica),
        age_replicas=age,
        floor=floor,
        target=target,
        upstream_replicas=_ceil(ahead),
        unserved=unserved,
    )
    return load, reason


def has_work(signal: QueueSignal | None, upstream: Upstream | None = None) -> bool:
    """Whether a pool at zero has anything to wake for: its own queue is not idle, or
    the stages before it send work (pre-scaling would start it). Unread statistics
    wake nothing: the pool's own round decides what missing data means."""
    if signal is not None and not signal.idle:
        return True
    return upstream is not None and upstream.rate > _EPSILON


def _hold_floor(current: int, knobs: ScalingKnobs) -> int:
    """The lowest replica count a hold may keep: a pool already at zero may stay there."""
    if current == 0 and (knobs.scale_to_zero or knobs.min_replicas == 0):
        return 0
    return knobs.min_replicas


def describe(signal: QueueSignal) -> str:
    return (
        f"backlog {signal.backlog_count}, age {signal.backlog_age_s:.0f} s, "
        f"add {signal.add_rate:.2f}/s, dispatch {signal.dispatch_rate:.2f}/s"
    )


def decide(
    current: int,
    signal: QueueSignal | None,
    knobs: ScalingKnobs,
    state: ScalingState,
    now: float,
    upstream: Upstream | None = None,
    in_flight: float | None = None,
) -> Decision:
    """The replicas a pool should have now.

    ``current`` is the Deployment's replica count, ``signal`` the queue's
    statistics (``None`` when Temporal could not be asked), ``state`` what the
    previous decision returned (``ScalingState()`` the first time), and
    ``upstream`` the work on its way from earlier stages (pre-scaling; ``None``
    for none). Missing upstream statistics hold a pool that would shrink.
    """
    if signal is None:
        held = min(max(current, _hold_floor(current, knobs)), knobs.max_replicas)
        if held != current:
            reason = Reason.MAX_REPLICAS if held < current else Reason.MIN_REPLICAS
            message = f"no queue statistics; {current} -> {held} to stay within [min, max]"
            return _scaled(current, held, reason, message, state, now, None)
        message = f"no queue statistics; holding {current} replicas"
        return Decision(current, Reason.NO_DATA, message, state, None, current)

    starting = (
        state.last_direction > 0
        and state.last_scale_time is not None
        and now - state.last_scale_time < knobs.scale_up_horizon_s
    )
    load, main_reason = assess(
        signal, knobs, current, state.readings, now, starting, upstream, in_flight
    )
    target = load.target
    since = state.tracking_since if state.tracking_since is not None else now
    # Counted work needs no task-long window: it drops when the tasks end, not before.
    window = knobs.down_window_s if in_flight is None else knobs.scale_down_stabilization_s
    recent = tuple((t, r) for t, r in state.recommendations if now - t < window)
    readings = (*state.readings, (now, signal.add_rate, signal.dispatch_rate))
    # Tasks waiting that no free slot will take mean every slot is busy: whatever
    # the rates say, the pool needed all it had, so that counts as a recommendation
    # for the window.
    wanted = max(target, min(current, knobs.max_replicas)) if load.unserved > 0 else target
    # Only counted work: rates decay while long tasks still run, so an estimate
    # would call a busy pool's load ended.
    work = (
        ()
        if in_flight is None
        else (
            *((t, w) for t, w in state.work if now - t < window),
            (now, load.in_flight),
        )
    )
    state = replace(
        state,
        recommendations=(*recent, (now, wanted)),
        work=work,
        tracking_since=since,
        readings=_keep_readings(readings, now, knobs.task_seconds),
    )
    facts = describe(signal)
    if upstream is not None and load.upstream_replicas > 0:
        facts += f"; upstream {upstream.queued:.0f} waiting, ~{upstream.rate:.2f}/s coming"

    if target > current:
        reason = Reason.SCALE_FROM_ZERO if current == 0 else main_reason
        message = f"{current} -> {target}: {facts}, ~{load.in_flight:.1f} tasks in flight"
        return _scaled(current, target, reason, message, state, now, load)

    if target == current:
        return Decision(
            current, Reason.STEADY, f"{current} replicas fit: {facts}", state, load, current
        )

    # target < current: the rules that make scale-down slow and safe.
    if current > knobs.max_replicas:
        message = f"{current} -> {knobs.max_replicas}: above maxReplicas"
        return _scaled(current, knobs.max_replicas, Reason.MAX_REPLICAS, message, state, now, load)
    if signal.backlog_count > 0:
        message = f"holding {current}: tasks are waiting, so every slot is busy ({facts})"
        return Decision(current, Reason.BACKLOG_WAITING, message, state, load, current)
    if upstream is not None and upstream.missing:
        message = (
            f"holding {current}: want {target}, but there are no statistics for the upstream "
            f"{', '.join(upstream.missing)} queue ({facts})"
        )
        return Decision(current, Reason.UPSTREAM_NO_DATA, message, state, load, current)
    stabilised = max(r for _, r in state.recommendations)
    settle = min(knobs.settle_window_s, window)
    settled = max((r for t, r in state.recommendations if now - t < settle), default=stabilised)
    settled_work = max((w for t, w in state.work if now - t < settle), default=math.inf)
    peak_work = max((w for _, w in state.work), default=0.0)
    counted_since = state.work[0][0] if state.work else now
    if (
        now - counted_since >= settle
        and settled < current
        and (stabilised - settled >= ENDED_MIN_DROP or settled == 0)
        and settled_work <= ENDED_FRACTION * peak_work
    ):
        # Not a fluctuation: the tasks running in the pool fell to ENDED_FRACTION
        # of the window's peak or less and stayed there for the settle window.
        # Holding the peak for the rest of the window would only pay for idle
        # pods (drain-before-remove keeps the pods that still work). Running
        # tasks, not recommendations or the backlog: a noisy queue's
        # recommendations spike with its backlog while the work it runs barely
        # moves, and a surge's first backlog is gone long before the surge.
        reason = Reason.SCALE_TO_ZERO if settled == 0 else Reason.LOAD_ENDED
        message = (
            f"{current} -> {settled}: the last {settle:.0f} s asked for at most {settled}, "
            f"the last {window:.0f} s for {stabilised} ({facts})"
        )
        # The ended load is forgotten: its peak must not call the next quiet minute
        # "ended" again.
        state = replace(
            state,
            recommendations=tuple((t, r) for t, r in state.recommendations if now - t < settle),
            work=tuple((t, w) for t, w in state.work if now - t < settle),
        )
        return _scaled(current, settled, reason, message, state, now, load)
    if now - since < window or stabilised >= current:
        message = (
            f"holding {current}: want {target}, but the last {window:.0f} s "
            f"asked for up to {stabilised} ({facts})"
        )
        return Decision(current, Reason.STABILIZING, message, state, load, current)
    new = max(stabilised, current - knobs.max_scale_down_step)
    reason = Reason.SCALE_TO_ZERO if new == 0 else Reason.SCALE_DOWN
    message = f"{current} -> {new}: {facts}, ~{load.in_flight:.1f} tasks in flight"
    return _scaled(current, new, reason, message, state, now, load)


def _scaled(
    current: int,
    new: int,
    reason: Reason,
    message: str,
    state: ScalingState,
    now: float,
    load: Load | None,
) -> Decision:
    direction = 1 if new > current else -1
    state = replace(state, last_scale_time=now, last_direction=direction)
    return Decision(new, reason, message, state, load, current)


def keda_desired(
    backlog_count: int, target_queue_size: float, min_replicas: int, max_replicas: int
) -> int:
    """KEDA's Temporal scaler formula, the anchor our policy is compared with."""
    return min(max(_ceil(backlog_count / target_queue_size), min_replicas), max_replicas)
