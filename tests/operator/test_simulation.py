"""The autoscaling simulator's mechanics (bench/autoscale_model.py), and the
policy run through it on the fan-out that breaks KEDA (kedacore/keda#7977).

bench/autoscale_sim.py trusts these mechanics for its figures: tasks are
neither lost nor invented, pods serve only after their start-up delay, the
statistics are Temporal's (sync match, 30 s rates, refreshed every ~6 s),
billing counts starting and draining pods, and shutdowns behave like the
workers' graceful shutdown.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from autoscale_model import (
    Autoscaler,
    DocpipeAutoscaler,
    Document,
    KedaAutoscaler,
    PoolModel,
    RateTracker,
    RunResult,
    Task,
    percentile,
    simulate,
    simulate_pipeline,
)
from scaling_knobs import KNOBS, knobs

from docpipe_operator.scaling import QueueSignal, ScalingState, decide, witnessed


@dataclass
class Fixed:
    """An autoscaler that plays a script of (time, replicas) and records what it saw."""

    script: list[tuple[float, int]] = field(default_factory=list)
    poll_interval_s: float = 5.0
    name: str = "fixed"
    seen: list[tuple[float, QueueSignal]] = field(default_factory=list)
    deletion_cost: bool = False

    def replicas(self, current: int, signal: QueueSignal, now: float) -> int:
        self.seen.append((now, signal))
        target = current
        for at, replicas in self.script:
            if at <= now:
                target = replicas
        return target


def tasks_at(*arrivals: float, duration: float = 10.0) -> list[Task]:
    return [Task(a, duration) for a in arrivals]


def conserved(result: RunResult) -> bool:
    return result.arrived == (
        result.completed + result.running_at_end + result.unstarted + result.interrupted
    )


@dataclass(frozen=True)
class Pool:
    """One pool's pods as :func:`simulate` runs them: ``initial_replicas`` ready at time 0,
    ``concurrency`` slots each, new ones serving ``startup_s`` after they are ordered."""

    initial_replicas: int
    concurrency: int
    startup_s: float

    def run(
        self, tasks: list[Task], scaler: Autoscaler, horizon_s: float, **options: Any
    ) -> RunResult:
        """``tasks`` on this pool under ``scaler`` until ``horizon_s``; ``options`` are
        :func:`simulate`'s (jitter, drain, statistics, seed)."""
        return simulate(
            tasks,
            scaler,
            concurrency=self.concurrency,
            startup_s=self.startup_s,
            initial_replicas=self.initial_replicas,
            horizon_s=horizon_s,
            **options,
        )


CPU_POOL = Pool(initial_replicas=1, concurrency=KNOBS.concurrency, startup_s=30)
"""The pool the policy runs scale, as scaling_knobs.KNOBS describe it."""


# ---------------------------------------------------------------- Temporal's statistics


def test_rate_tracker_averages_over_thirty_seconds_like_temporal() -> None:
    tracker = RateTracker()
    for second in range(120):
        tracker.add(float(second))
    assert tracker.rate(119.5) == pytest.approx(1.0, rel=0.05)
    burst = RateTracker()
    burst.add(1.0, 30)
    assert burst.rate(10.0) == pytest.approx(3.0)  # younger than the window: / elapsed
    assert burst.rate(31.0) == pytest.approx(30 / 31)  # 30 s plus 1 s into the bucket
    assert burst.rate(40.0) == 0.0  # the bucket has left the window


def test_a_task_with_a_free_slot_never_shows_in_the_backlog() -> None:
    """Sync match: with 8 slots free, a fan-out of 8 reads backlog 0 while every slot works."""
    pool = Pool(initial_replicas=2, concurrency=4, startup_s=10)
    result = pool.run(tasks_at(*[1.0] * 8, duration=60), Fixed(poll_interval_s=3.0), horizon_s=50)
    assert set(result.waits) == {0.0}
    later = [s for s in result.samples if s.time > 10]
    assert {s.busy_slots for s in later} == {8}
    assert {s.signal.backlog_count for s in later} == {0}
    # The rates saw the fan-out while it was in their 30 s window, then forget it.
    assert all(s.signal.dispatch_rate > 0 for s in later if s.time < 30)
    assert later[-1].signal.dispatch_rate == 0


def test_the_autoscaler_sees_a_snapshot_up_to_one_refresh_old() -> None:
    scaler = Fixed(poll_interval_s=5.0)
    pool = Pool(initial_replicas=0, concurrency=1, startup_s=1)
    pool.run(tasks_at(1.0, 1.0, 1.0), scaler, horizon_s=20, stats_refresh_s=6.0)
    backlog = {now: signal.backlog_count for now, signal in scaler.seen}
    assert backlog[0.0] == 0
    assert backlog[5.0] == 0  # the snapshot of t=0; the tasks came at t=1
    assert backlog[10.0] == 3  # the snapshot of t=6
    ages = {now: signal.backlog_age_s for now, signal in scaler.seen}
    assert ages[10.0] == pytest.approx(5.0)  # as old as the snapshot, not the poll


# ---------------------------------------------------------------- pods and tasks


def test_pods_serve_only_after_their_start_up_delay() -> None:
    pool = Pool(initial_replicas=0, concurrency=4, startup_s=40)
    result = pool.run(
        tasks_at(1.0, 2.0, 3.0), Fixed([(0.0, 2)], poll_interval_s=5.0), horizon_s=100
    )
    assert [p.ready_at - p.created for p in result.pods] == [40.0, 40.0]
    assert sorted(result.waits) == [37.0, 38.0, 39.0]


def test_start_up_jitter_is_seeded_and_bounded() -> None:
    pool = Pool(initial_replicas=0, concurrency=1, startup_s=50)

    def run(seed: int) -> list[float]:
        result = pool.run([], Fixed([(0.0, 20)]), horizon_s=10, startup_jitter=0.2, seed=seed)
        return [p.ready_at - p.created for p in result.pods]

    delays = run(3)
    assert delays == run(3)
    assert delays != run(4)
    assert all(40 <= d <= 60 for d in delays)
    assert len(set(delays)) > 1


def test_every_task_is_accounted_for() -> None:
    """Arrived = completed + running + waiting + interrupted (whose retries arrive anew)."""
    tasks = [Task(t * 0.7, 3 + (t % 5) * 20) for t in range(300)]
    script = [(0.0, 3), (30.0, 8), (90.0, 2), (120.0, 6), (150.0, 1)]
    pool = Pool(initial_replicas=1, concurrency=3, startup_s=15)
    result = pool.run(tasks, Fixed(script), horizon_s=260, drain_s=10)
    assert result.interrupted > 0 and result.unstarted > 0 and result.running_at_end > 0
    assert conserved(result)
    retries = result.arrived - sum(1 for t in tasks if t.arrival <= 260)
    assert 0 < retries <= result.interrupted
    assert len(result.waits) == result.arrived  # one wait per start, and per task still waiting


def test_worker_seconds_bill_starting_pods() -> None:
    # One pod from 0; a second ordered at 10 that starts for 30 s, billed from 10.
    pool = Pool(initial_replicas=1, concurrency=1, startup_s=30)
    result = pool.run([], Fixed([(10.0, 2)]), horizon_s=100)
    assert result.worker_seconds == pytest.approx(100 + 90)


def test_a_removed_pod_finishes_short_tasks_and_loses_long_ones() -> None:
    """SIGTERM: stop polling, finish for up to the graceful shutdown, then the rest is retried."""
    tasks = [Task(1.0, 20.0), Task(1.0, 100.0)]
    pool = Pool(initial_replicas=1, concurrency=2, startup_s=10)
    result = pool.run(tasks, Fixed([(5.0, 0)]), horizon_s=60, drain_s=30, retry_delay_s=1)
    assert result.completed == 1  # the 20 s task, started at 1, done at 21
    assert result.interrupted == 1  # the 100 s task, cut at 5 + 30
    assert result.lost_work_s == pytest.approx(34.0)
    assert result.unstarted == 1  # its retry, queued at 36, with no pod left
    assert result.worker_seconds == pytest.approx(35.0)  # the pod lived until the kill
    assert conserved(result)


def test_scale_down_removes_starting_pods_first_then_the_newest() -> None:
    scaler = Fixed([(0.0, 3), (10.0, 2), (40.0, 1)], poll_interval_s=10.0)
    result = Pool(initial_replicas=1, concurrency=1, startup_s=30).run([], scaler, horizon_s=60)
    first, second, third = result.pods
    # 1 -> 3 at 0 (two pods start until 30); 3 -> 2 at 10 drops a starting pod
    # (the newer); 2 -> 1 at 40 drops the pod ready last, so the original stays.
    assert third.ended == 10.0 and not third.ready
    assert second.ended == 40.0 and second.ready
    assert first.ended is None


def test_a_scale_down_is_busy_when_it_removes_a_pod_with_tasks_in_flight() -> None:
    def two_to_one(tasks: list[Task]) -> RunResult:
        """Two pods of one slot each, one of them removed at 10 s."""
        pool = Pool(initial_replicas=2, concurrency=1, startup_s=5)
        return pool.run(tasks, Fixed([(10.0, 1)], poll_interval_s=10.0), horizon_s=30)

    busy = two_to_one(tasks_at(0.0, 0.0, duration=100))
    idle = two_to_one(tasks_at(0.0, duration=100))
    assert busy.busy_scaledowns == busy.busy_pool_scaledowns == 1
    assert idle.busy_scaledowns == idle.busy_pool_scaledowns == 0
    assert busy.direction_changes == idle.direction_changes == 0


def test_direction_changes_count_reversals() -> None:
    script = [(0.0, 3), (10.0, 5), (20.0, 2), (30.0, 1), (40.0, 4)]
    pool = Pool(initial_replicas=1, concurrency=1, startup_s=1)
    result = pool.run([], Fixed(script, poll_interval_s=10.0), horizon_s=45)
    assert [a.direction for a in result.actions] == [1, 1, -1, -1, 1]
    assert result.direction_changes == 2


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([], 95) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile(list(range(101)), 95) == pytest.approx(95.0)


def test_runs_are_deterministic() -> None:
    tasks = [Task(t * 0.3, 5.0 + (t % 7)) for t in range(500)]
    scaling = knobs(max_replicas=10, task_seconds=6, scale_down_stabilization_s=300)

    def run() -> RunResult:
        scaler = DocpipeAutoscaler(scaling)
        return CPU_POOL.run(
            tasks, scaler, horizon_s=400, startup_jitter=0.2, stats_phase_s=2.5, seed=9
        )

    first, second = run(), run()
    assert first.waits == second.waits
    assert first.actions == second.actions
    assert first.worker_seconds == second.worker_seconds


# ---------------------------------------------------------------- KEDA, as the bench models it


def test_keda_scales_down_to_the_highest_desire_of_its_window() -> None:
    keda = KedaAutoscaler(target_queue_size=4, min_replicas=1, max_replicas=20)
    signal = QueueSignal(40, 5.0, 1.0, 1.0)
    idle = QueueSignal(0, 0.0, 0.0, 0.0)
    assert keda.replicas(1, signal, 0.0) == 10
    assert keda.replicas(10, idle, 30.0) == 10
    assert keda.replicas(10, idle, 270.0) == 10
    assert keda.replicas(10, idle, 300.0) == 1  # the 10 has left the 300 s window


def test_keda_goes_to_zero_after_its_cooldown_and_back_on_a_backlog() -> None:
    keda = KedaAutoscaler(target_queue_size=4, min_replicas=0, max_replicas=4)
    idle = QueueSignal(0, 0.0, 0.0, 0.0)
    assert keda.replicas(0, idle, 0.0) == 0
    assert keda.replicas(0, QueueSignal(9, 1.0, 1.0, 0.0), 30.0) == 3
    assert keda.replicas(3, idle, 60.0) == 3
    assert keda.replicas(3, idle, 300.0) == 3
    assert keda.replicas(3, idle, 330.0) == 0  # 300 s since the backlog last read > 0


# ---------------------------------------------------------------- the policy on a fan-out


FAN_OUT_KNOBS = knobs(task_seconds=480, scale_down_stabilization_s=300)
GPU_KNOBS = knobs(
    min_replicas=0,
    max_replicas=4,
    scale_up_horizon_s=60,
    scale_down_stabilization_s=300,
    scale_to_zero=True,
)
"""A gpu-like pool: it idles at zero, and its pods take about a minute to start."""


def fan_out(width: int = 64, waves: int = 2) -> list[Task]:
    """Every 20 minutes one workflow starts ``width`` activities of 6-9 minutes."""
    return [
        Task(60.0 + 1200 * wave + i * 0.01, 360.0 + (i * 37 % 180))
        for wave in range(waves)
        for i in range(width)
    ]


def run_fan_out(scaler: DocpipeAutoscaler | KedaAutoscaler, tasks: list[Task]) -> RunResult:
    return CPU_POOL.run(tasks, scaler, horizon_s=2700, stats_phase_s=2.0)


def test_keda_shrinks_a_pool_whose_backlog_reads_zero_while_it_works() -> None:
    """kedacore/keda#7977, reproduced: the simulator shows KEDA's fan-out failure."""
    keda = run_fan_out(KedaAutoscaler(4, 1, 20), fan_out())
    assert keda.busy_scaledowns > 0
    assert keda.interrupted > 0


def test_our_policy_holds_a_fan_out_until_its_tasks_are_done() -> None:
    ours = run_fan_out(DocpipeAutoscaler(FAN_OUT_KNOBS), fan_out())
    assert ours.busy_scaledowns == 0
    assert ours.interrupted == 0
    assert ours.completed == len(fan_out())
    assert conserved(ours)


def test_a_burst_of_long_tasks_does_not_read_as_a_steady_stream() -> None:
    """64 tasks of ~8 min need 16 replicas. Temporal's 30 s rates read 64/30 per
    second, which times 480 s looks like ~1000 tasks in flight, and the backlog
    ages while the new pods start; the policy integrates the readings and lets
    new pods start before it scales on age, so a large maxReplicas is not
    filled (it went to 100 before). What remains is projecting the burst's
    rate one horizon ahead: about twice the need, for one window."""
    ours = run_fan_out(DocpipeAutoscaler(replace(FAN_OUT_KNOBS, max_replicas=100)), fan_out())
    assert ours.peak_replicas <= 40
    assert ours.interrupted == 0


def test_the_age_of_a_backlog_waiting_for_starting_pods_does_not_grow_the_pool() -> None:
    knobs = replace(FAN_OUT_KNOBS, task_seconds=5)
    old = QueueSignal(backlog_count=40, backlog_age_s=45, add_rate=0, dispatch_rate=0)
    state = ScalingState(tracking_since=-1000.0)
    first = decide(1, old, knobs, state, 0.0)
    assert first.replicas == 10  # the backlog: 40 / 4 per replica
    settling = decide(first.replicas, old, knobs, first.state, 15.0)
    assert settling.replicas == 10  # the 9 new pods start for a horizon (30 s)
    later = decide(settling.replicas, old, knobs, settling.state, 30.0)
    assert later.replicas == 15  # still 45 s old once they could have served: x 45 / 30


def test_witnessed_integrates_rate_readings() -> None:
    # No history: the current rate over the whole span (Little's law).
    assert witnessed((), 100.0, 480.0, 0.5, 2) == pytest.approx(240.0)
    # A steady 0.5/s, read every 15 s for longer than the span: the same.
    steady = tuple((t, 0.5, 0.5) for t in range(0, 1000, 15))
    assert witnessed(steady, 1005.0, 480.0, 0.5, 2) == pytest.approx(240.0)
    # A burst of 60 tasks seen by two polls (2/s each), then nothing: ~60 tasks,
    # held until the readings leave the span, where the current rate alone says 0.
    burst = ((0.0, 0.0, 0.0), (15.0, 0.0, 2.0), (30.0, 0.0, 2.0), (45.0, 0.0, 0.0))
    assert witnessed(burst, 60.0, 480.0, 0.0, 2) == pytest.approx(60.0)
    assert witnessed(burst, 500.0, 480.0, 0.0, 2) == pytest.approx(20.0)  # (20, 30] at 2/s
    assert witnessed(burst, 520.0, 480.0, 0.0, 2) == pytest.approx(0.0)


def test_a_backlog_seen_in_the_window_holds_the_pool_for_a_window() -> None:
    """Waiting tasks mean every slot was busy, even when the 30 s rates say the
    pool is larger than the load: no scale-down for a window after that."""
    knobs = replace(FAN_OUT_KNOBS, task_seconds=5, scale_down_stabilization_s=120)
    state = ScalingState(tracking_since=-1000.0)
    quiet = QueueSignal(backlog_count=0, backlog_age_s=0, add_rate=2.0, dispatch_rate=2.0)
    full = QueueSignal(backlog_count=1, backlog_age_s=0.5, add_rate=2.0, dispatch_rate=2.0)
    replicas, moves = 6, []
    for step, signal in enumerate([full] + [quiet] * 12):
        decision = decide(replicas, signal, knobs, state, step * 15.0)
        replicas, state = decision.replicas, decision.state
        moves.append(replicas)
    # 2 tasks/s of 5 s need 3 replicas; the backlog at 0 s holds 6 until 120 s.
    assert moves[:8] == [6] * 8
    assert moves[8] == 4 and moves[-1] == 3


def test_pod_deletion_cost_removes_idle_pods_first() -> None:
    """Issue 12, item 7, as the simulator models it: 3 -> 1 with one busy pod keeps it.

    Without a deletion cost the ReplicaSet removes the most recently ready pods,
    here the busy one; with the operator's cost (tasks in flight) the idle ones go.
    """
    # Pod 0 runs a short task; pods 1 and 2 start; pod 1 takes a long one.
    tasks = [Task(0.0, 20.0), Task(6.0, 100.0)]

    def run(costed: bool) -> RunResult:
        scaler = Fixed([(0.0, 3), (50.0, 1)], poll_interval_s=10.0, deletion_cost=costed)
        return Pool(initial_replicas=1, concurrency=1, startup_s=5).run(tasks, scaler, horizon_s=60)

    plain, costed = run(False), run(True)
    assert plain.busy_scaledowns == 1
    assert costed.busy_scaledowns == 0
    (keeper,) = [p for p in costed.pods if p.ended is None]
    assert keeper.running


# ---------------------------------------------------------------- the pipeline


def test_a_pipeline_hands_each_completed_step_to_the_next_queue() -> None:
    documents = [
        Document(float(i), (("io", 5.0), ("cpu", 10.0), ("gpu", 2.0), ("io", 1.0)))
        for i in range(6)
    ]
    models = {name: PoolModel(20, 10.0, 1) for name in ("io", "cpu", "gpu")}
    scalers = {name: Fixed(poll_interval_s=15.0) for name in models}
    result = simulate_pipeline(documents, models, scalers, horizon_s=120)  # type: ignore[arg-type]
    assert result.finished == result.documents == 6
    assert result.pools["io"].completed == 12 and result.pools["gpu"].completed == 6
    # Nothing waits (20 slots each, 1 document/s): each trip is its steps' sum.
    assert set(result.latencies) == {18.0}
    assert result.completed == 24


def test_pre_scaling_starts_a_cold_gpu_pool_before_its_first_task_arrives() -> None:
    documents = [Document(10.0 + i, (("io", 20.0), ("cpu", 40.0), ("gpu", 6.0))) for i in range(60)]
    held = knobs(scale_down_stabilization_s=300)  # every pool waits 5 minutes to shrink
    pipeline = {
        "io": replace(
            held,
            max_replicas=10,
            concurrency=200,
            target_backlog_per_replica=200,
            task_seconds=20,
            target_backlog_age_s=10,
        ),
        "cpu": replace(held, task_seconds=40),
        "gpu": replace(GPU_KNOBS, task_seconds=6),
    }
    models = {"io": PoolModel(200, 20, 1), "cpu": PoolModel(4, 30, 1), "gpu": PoolModel(4, 90, 0)}

    def first_gpu_pod(pre: bool) -> float:
        scalers = {
            name: DocpipeAutoscaler(pool_knobs, pool=name if pre else None, pipeline_knobs=pipeline)
            for name, pool_knobs in pipeline.items()
        }
        result = simulate_pipeline(documents, models, scalers, horizon_s=600)  # type: ignore[arg-type]
        assert result.finished == 60
        return min(p.created for p in result.pools["gpu"].pods)

    first_task = 10.0 + 20.0 + 40.0  # the first document's download and extraction
    assert first_gpu_pod(pre=True) < first_task - 30
    assert first_gpu_pod(pre=False) >= first_task


def test_drain_first_never_removes_a_pod_with_work_in_flight() -> None:
    """Our policy with drain-before-remove on a fan-out of long tasks: as tasks end,
    pods are cordoned and go once idle; none is removed while it works, no task is lost."""
    tasks = [Task(1.0 + i * 0.01, 200.0 + 10 * i) for i in range(32)]
    result = CPU_POOL.run(tasks, DocpipeAutoscaler(FAN_OUT_KNOBS), horizon_s=1800)
    assert result.completed == 32 and result.interrupted == 0
    assert result.busy_scaledowns == 0
    assert len([p for p in result.pods if p.ended is not None]) > 0  # it did shrink
    for pod in result.pods:
        if pod.ended is not None:
            assert not pod.running


def test_a_cordoned_pod_takes_no_new_task_once_its_worker_acts_on_the_drain() -> None:
    one_slot = knobs(concurrency=1, target_backlog_per_replica=1)  # a task a pod
    scaler = DocpipeAutoscaler(
        replace(one_slot, max_replicas=4, task_seconds=5, scale_down_stabilization_s=60),
        poll_interval_s=10.0,
    )
    model_delay = 60.0
    tasks = [Task(float(t), 5.0) for t in range(0, 400, 2)]
    pool = Pool(initial_replicas=3, concurrency=1, startup_s=5)
    result = pool.run(tasks, scaler, horizon_s=600)
    assert conserved(result) and result.busy_scaledowns == 0
    for pod in result.pods:
        if pod.cordoned_at is not None and pod.stops_at is not None:
            assert pod.stops_at == pod.cordoned_at + model_delay


def test_a_pool_at_zero_is_looked_at_every_tick() -> None:
    """Scale from zero reacts within a statistics refresh plus the operator's tick (2 s:
    its wake check reads the queues), not the full poll interval."""
    scaler = DocpipeAutoscaler(replace(GPU_KNOBS, task_seconds=2), poll_interval_s=15.0)
    pool = Pool(initial_replicas=0, concurrency=4, startup_s=1)
    result = pool.run([Task(100.0, 2.0)], scaler, horizon_s=200)
    times = [sample.time for sample in result.samples]
    assert scaler.wake_poll_s == 2.0
    assert all(b - a == pytest.approx(2.0) for a, b in itertools.pairwise(times) if b < 100)
    (first_up,) = [a.time for a in result.actions if a.direction > 0][:1]
    assert first_up - 100.0 <= 6.0 + 2.0
