"""The scaling policy, rule by rule. Each KEDA failure from issue 5 has its own test.

KEDA's Temporal scaler sets ``ceil(backlog / targetQueueSize)``; where a test
shows KEDA getting it wrong, it says what KEDA would do next to ours.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import replace

import pytest
from scaling_knobs import KNOBS

from docpipe_operator.scaling import (
    Decision,
    QueueSignal,
    Reason,
    ScalingKnobs,
    ScalingState,
    decide,
    keda_desired,
)

POLL_S = 15.0
IDLE = QueueSignal(backlog_count=0, backlog_age_s=0, add_rate=0, dispatch_rate=0)


def signal(
    backlog: int = 0, age: float = 0.0, add: float = 0.0, dispatch: float = 0.0
) -> QueueSignal:
    return QueueSignal(
        backlog_count=backlog, backlog_age_s=age, add_rate=add, dispatch_rate=dispatch
    )


def busy(replicas: int, knobs: ScalingKnobs = KNOBS) -> QueueSignal:
    """Every slot of ``replicas`` busy, nothing waiting: the fan-out picture."""
    rate = replicas * knobs.concurrency / knobs.task_seconds
    return signal(backlog=0, add=rate, dispatch=rate)


def run(
    replicas: int,
    signals: Iterable[QueueSignal | None],
    knobs: ScalingKnobs = KNOBS,
    *,
    start: float = 0.0,
    state: ScalingState | None = None,
) -> list[Decision]:
    """Decide once per poll, applying each decision, as the operator does."""
    state = state or ScalingState()
    decisions = []
    for step, item in enumerate(signals):
        decision = decide(replicas, item, knobs, state, start + step * POLL_S)
        decisions.append(decision)
        replicas, state = decision.replicas, decision.state
    return decisions


def replicas_of(decisions: list[Decision]) -> list[int]:
    return [d.replicas for d in decisions]


def direction_changes(decisions: list[Decision]) -> int:
    moves = [d.direction for d in decisions if d.direction]
    return sum(1 for a, b in itertools.pairwise(moves) if a != b)


# ---------------------------------------------------------------- KEDA failures


def test_fan_out_keeps_a_busy_pool_although_the_backlog_reads_zero() -> None:
    """kedacore/keda#7977: a fan-out dispatches everything at once, the backlog
    reads 0 while every slot works, and KEDA scales the busy pool down."""
    decisions = run(8, [busy(8)] * 40)  # ten minutes of full slots
    assert replicas_of(decisions) == [8] * 40
    assert {d.reason for d in decisions} == {Reason.STEADY}
    assert keda_desired(0, KNOBS.target_backlog_per_replica, 1, 20) == 1  # KEDA: 8 -> 1


def test_fan_out_burst_holds_replicas_for_a_whole_task_after_the_rate_decays() -> None:
    """Temporal's rates are 30 s averages: after a one-off burst the dispatch
    rate reads 0 while long tasks still run. The window is at least one task."""
    knobs = replace(KNOBS, task_seconds=600, scale_down_stabilization_s=60)
    burst = busy(6, knobs)
    decisions = run(6, [burst, burst] + [IDLE] * 38, knobs)  # 10 min, tasks last 10 min
    assert min(replicas_of(decisions)) == 6


def test_old_backlog_scales_up_before_the_count_crosses_the_target() -> None:
    """kedacore/keda#7966: the count rises only after saturation. Three tasks
    waiting for a minute is already late; KEDA (3 / 4 per replica) sees no need."""
    decision = decide(4, signal(backlog=3, age=60, add=1.6, dispatch=1.6), KNOBS, ScalingState(), 0)
    assert decision.replicas > 4
    assert decision.reason is Reason.BACKLOG_AGE
    assert keda_desired(3, KNOBS.target_backlog_per_replica, 1, 20) == 1


def test_arrivals_outpacing_dispatch_scale_up_before_the_backlog_piles_up() -> None:
    """Adds above dispatches mean the backlog will grow: project it a pod
    start-up ahead and add replicas now."""
    decision = decide(2, signal(backlog=1, age=1, add=2.0, dispatch=0.8), KNOBS, ScalingState(), 0)
    # (2.0 - 0.8)/s x 30 s + 1 waiting = 37 tasks -> 10 extra replicas, on top of the 2 that keep up.
    assert decision.replicas == 2 + 10
    assert decision.reason is Reason.BACKLOG_GROWING


def test_pods_still_starting_count_as_capacity_for_a_growing_backlog() -> None:
    """The same queue with 6 replicas asked for, 2 of them ready: the 4 starting ones will
    dispatch 1.6 tasks/s more within a start-up, so the growth asks for nothing on top."""
    decision = decide(6, signal(backlog=1, age=1, add=2.0, dispatch=0.8), KNOBS, ScalingState(), 0)
    assert decision.replicas == 6  # the 5 that keep up with 2 tasks/s, and 1 for the waiting
    assert decision.reason is Reason.STEADY


def test_keeps_up_with_the_arrival_rate_of_a_steady_stream() -> None:
    # 3 tasks/s of 10 s each need 30 slots = 8 replicas of 4, even with nothing waiting.
    decision = decide(2, signal(add=3.0, dispatch=0.8), KNOBS, ScalingState(), 0)
    assert decision.replicas >= 8


# ---------------------------------------------------------------- no flapping


def test_scale_up_is_immediate_and_can_jump_several_replicas() -> None:
    # One replica's 4 slots busy (0.4 tasks/s of 10 s) and 40 waiting: 10 more at once.
    decision = decide(1, signal(backlog=40, age=5, add=0.4, dispatch=0.4), KNOBS, ScalingState(), 0)
    assert decision.replicas == 1 + 10
    assert decision.direction == 1


def test_scale_down_waits_for_a_whole_stabilisation_window() -> None:
    decisions = run(6, [IDLE] * 12)  # 3 minutes, window 2 minutes
    window_polls = int(KNOBS.scale_down_stabilization_s // POLL_S)
    assert replicas_of(decisions)[:window_polls] == [6] * window_polls
    assert {d.reason for d in decisions[:window_polls]} == {Reason.STABILIZING}
    assert decisions[-1].replicas < 6


def test_scale_down_removes_at_most_max_step_replicas_per_decision() -> None:
    decisions = run(10, [IDLE] * 30)
    steps = [a.replicas - b.replicas for a, b in itertools.pairwise(decisions)]
    assert max(steps) <= KNOBS.max_scale_down_step
    assert decisions[-1].replicas == KNOBS.min_replicas


def test_no_scale_down_within_the_window_after_a_scale_up() -> None:
    """The window doubles as the cooldown: a spike's replicas stay for a window."""
    spike = signal(backlog=40, age=5, add=0.8, dispatch=0.8)
    decisions = run(2, [spike] + [IDLE] * 8)  # polls at 0, 15, ..., 120 s; window 120 s
    assert decisions[0].replicas == 12
    assert replicas_of(decisions)[1:8] == [12] * 7
    assert decisions[8].replicas == 12 - KNOBS.max_scale_down_step


def test_no_scale_down_while_tasks_are_waiting() -> None:
    """A backlog means no slot is free, whatever the rates say."""
    state = ScalingState(tracking_since=-1000.0)
    decision = decide(9, signal(backlog=2, age=1, add=0.1, dispatch=0.1), KNOBS, state, 0)
    assert decision.replicas == 9
    assert decision.reason is Reason.BACKLOG_WAITING


def test_a_noisy_steady_load_settles_instead_of_flapping() -> None:
    """Load that wobbles around 3 replicas' worth for 30 minutes: the pool
    settles at the recent peak; at most one direction change per 5 minutes."""
    pattern = [1.0, 1.6, 0.7, 1.3, 0.9, 1.5, 0.8, 1.2]  # tasks/s, mean ~1.1 (= 2.75 replicas)
    signals = [
        signal(backlog=int(rate > 1.4), age=2.0, add=rate, dispatch=min(rate, 1.3))
        for rate in (pattern * 16)[:120]
    ]
    decisions = run(3, signals)
    minutes = len(decisions) * POLL_S / 60
    assert direction_changes(decisions) <= minutes / 5
    assert min(replicas_of(decisions)) >= 3  # never below what the mean load needs


def test_keda_would_flap_on_the_same_noisy_backlog() -> None:
    """The anchor, for contrast: the same trace through KEDA's formula."""
    backlogs = [0, 9, 2, 14, 1, 11, 0, 7] * 8
    desired = [keda_desired(b, KNOBS.target_backlog_per_replica, 1, 20) for b in backlogs]
    changes = sum(1 for a, b in itertools.pairwise(desired) if a != b)
    assert changes > 10


# ---------------------------------------------------------------- clamps


def test_never_above_max_replicas() -> None:
    decision = decide(
        3, signal(backlog=10_000, age=900, add=50, dispatch=1), KNOBS, ScalingState(), 0
    )
    assert decision.replicas == KNOBS.max_replicas


def test_never_below_min_replicas_when_idle() -> None:
    decisions = run(5, [IDLE] * 60)
    assert min(replicas_of(decisions)) == KNOBS.min_replicas == decisions[-1].replicas


def test_a_lowered_max_applies_at_once() -> None:
    decision = decide(20, busy(20), replace(KNOBS, max_replicas=8), ScalingState(), 0)
    assert decision.replicas == 8
    assert decision.reason is Reason.MAX_REPLICAS


def test_a_raised_min_applies_at_once() -> None:
    decision = decide(1, IDLE, replace(KNOBS, min_replicas=3), ScalingState(), 0)
    assert decision.replicas == 3
    assert decision.reason is Reason.MIN_REPLICAS


def test_knobs_refuse_min_above_max() -> None:
    with pytest.raises(ValueError, match="min_replicas"):
        replace(KNOBS, min_replicas=5, max_replicas=4)


# ---------------------------------------------------------------- GPU: to zero and back

GPU = replace(KNOBS, min_replicas=1, max_replicas=4, scale_to_zero=True, task_seconds=2)


def test_an_idle_gpu_pool_scales_to_zero_after_the_window() -> None:
    decisions = run(2, [IDLE] * 20, GPU)
    assert decisions[-1].replicas == 0
    assert Reason.SCALE_TO_ZERO in {d.reason for d in decisions}
    window_polls = int(GPU.scale_down_stabilization_s // POLL_S)
    assert min(replicas_of(decisions)[:window_polls]) == 2


def test_the_first_queued_task_brings_a_gpu_pool_back_from_zero() -> None:
    """With no pollers, DescribeTaskQueue still counts the waiting task."""
    decision = decide(0, signal(backlog=1, age=0.5, add=0.03), GPU, ScalingState(), 0)
    assert decision.replicas == GPU.min_replicas
    assert decision.reason is Reason.SCALE_FROM_ZERO
    assert decision.message.startswith("0 -> 1")


def test_a_gpu_pool_at_zero_stays_there_while_idle() -> None:
    decisions = run(0, [IDLE] * 10, GPU)
    assert replicas_of(decisions) == [0] * 10


def test_without_scale_to_zero_a_pool_keeps_min_replicas() -> None:
    decisions = run(2, [IDLE] * 30, replace(GPU, scale_to_zero=False))
    assert decisions[-1].replicas == 1


def test_min_replicas_zero_also_lets_a_pool_idle_at_zero() -> None:
    decisions = run(1, [IDLE] * 20, replace(KNOBS, min_replicas=0))
    assert decisions[-1].replicas == 0
    assert (
        decide(
            0, signal(backlog=3, age=1), replace(KNOBS, min_replicas=0), ScalingState(), 0
        ).replicas
        == 1
    )


# ---------------------------------------------------------------- missing data


def test_missing_statistics_hold_the_current_replicas() -> None:
    decisions = run(7, [None] * 40)
    assert replicas_of(decisions) == [7] * 40
    assert {d.reason for d in decisions} == {Reason.NO_DATA}


def test_missing_statistics_never_scale_a_gpu_pool_to_zero() -> None:
    warm = run(3, [busy(3, GPU)] * 4, GPU)
    decisions = run(3, [None] * 60, GPU, start=60, state=warm[-1].state)
    assert min(replicas_of(decisions)) == 3


def test_missing_statistics_do_not_count_towards_the_window() -> None:
    """Rounds without data leave the state alone: no scale-down right after data returns."""
    first = run(6, [busy(6)] * 2)
    blind = run(6, [None] * 20, start=30, state=first[-1].state)
    assert blind[-1].state == first[-1].state
    after = decide(6, IDLE, KNOBS, blind[-1].state, 330)
    assert after.replicas <= 6


def test_missing_statistics_still_respect_a_lowered_max() -> None:
    decision = decide(9, None, replace(KNOBS, max_replicas=5), ScalingState(), 0)
    assert decision.replicas == 5


def test_a_restarted_operator_waits_a_window_before_scaling_down() -> None:
    """The state lives in memory; a fresh one must not read as a quiet history."""
    decisions = run(6, [IDLE] * 8, start=1_000_000)
    assert replicas_of(decisions) == [6] * 8


# ---------------------------------------------------------------- counted work


def test_counted_in_flight_replaces_the_rate_estimate() -> None:
    """The pods' own metrics say what runs now; a decayed rate says nothing."""
    knobs = replace(KNOBS, task_seconds=600)
    state = ScalingState(tracking_since=-1000.0)
    counted = decide(6, IDLE, knobs, state, 0.0, in_flight=6 * knobs.concurrency)
    assert counted.replicas == 6 and counted.load is not None
    assert counted.load.in_flight == 6 * knobs.concurrency


def test_a_load_that_ended_is_released_after_the_settle_window_not_the_whole_window() -> None:
    """Counted work fell from 40 tasks to none for two start-ups: the peak is not coming back."""
    decisions, replicas, state = [], 10, ScalingState(tracking_since=-1000.0)
    for step in range(12):
        now = step * POLL_S
        work = 40.0 if step < 2 else 0.0
        decision = decide(replicas, IDLE, KNOBS, state, now, in_flight=work)
        decisions.append(decision)
        replicas, state = decision.replicas, decision.state
    ended = next(d for d in decisions if d.direction < 0)
    assert ended.reason is Reason.LOAD_ENDED
    assert ended.replicas == KNOBS.min_replicas  # no step limit: nothing runs on those pods
    assert decisions.index(ended) * POLL_S < KNOBS.scale_down_stabilization_s


def test_a_counted_load_that_merely_wobbles_keeps_its_window() -> None:
    """Work between 60 % and 100 % of its peak is noise: the usual window holds."""
    replicas, state = 10, ScalingState(tracking_since=-1000.0)
    for step in range(12):
        work = 40.0 if step % 4 == 0 else 24.0
        decision = decide(replicas, IDLE, KNOBS, state, step * POLL_S, in_flight=work)
        assert decision.reason is not Reason.LOAD_ENDED
        replicas, state = decision.replicas, decision.state


def test_a_one_replica_wobble_is_not_a_load_that_ended() -> None:
    """At one or two replicas counts are too small to tell: the usual window holds."""
    replicas, state = 2, ScalingState(tracking_since=-1000.0)
    for step in range(10):
        work = 6.0 if step == 0 else 1.0
        decision = decide(replicas, IDLE, KNOBS, state, step * POLL_S, in_flight=work)
        assert decision.reason is not Reason.LOAD_ENDED
        replicas, state = decision.replicas, decision.state


def test_a_released_load_is_forgotten_so_the_next_quiet_minute_keeps_its_window() -> None:
    replicas, state = 10, ScalingState(tracking_since=-1000.0)
    reasons = []
    for step in range(30):
        work = 40.0 if step < 2 else (8.0 if 10 <= step < 12 else 0.0)
        decision = decide(replicas, IDLE, KNOBS, state, step * POLL_S, in_flight=work)
        reasons.append(decision.reason)
        replicas, state = decision.replicas, decision.state
    assert reasons.count(Reason.LOAD_ENDED) == 1


def test_tasks_beyond_every_slot_ask_for_replicas_as_before() -> None:
    """All 32 slots run and 12 more wait: 12 / targetBacklogPerReplica more replicas."""
    state = ScalingState(tracking_since=-1000.0)
    queued = signal(backlog=12, age=5.0, add=3.2, dispatch=3.2)
    decision = decide(8, queued, KNOBS, state, 0.0, in_flight=32.0)
    assert decision.replicas == 8 + 12 // int(KNOBS.target_backlog_per_replica)


def test_waiting_tasks_that_free_slots_will_take_do_not_read_as_saturation() -> None:
    """Counted work shows 28 free slots for 2 waiting tasks: no scale-down while they
    wait, but the window does not record 'every slot busy' (the current size) either,
    so the pool is not held at 8 for a window after they start."""
    state = ScalingState(tracking_since=-1000.0)
    decision = decide(8, signal(backlog=2, age=1.0), KNOBS, state, 0.0, in_flight=4.0)
    assert decision.reason is Reason.BACKLOG_WAITING and decision.replicas == 8
    assert decision.state.recommendations[-1][1] < 8
    estimated = decide(8, signal(backlog=2, age=1.0), KNOBS, state, 0.0)
    assert estimated.state.recommendations[-1][1] == 8


def test_an_old_backlog_the_count_has_not_caught_up_with_adds_a_slot_per_task() -> None:
    """Just after a jump from 1 to 30 replicas the backlog statistic (a refresh behind)
    still reads 60 old tasks while the pods already run 64 of them: the 4 tasks no
    slot takes get a replica, not a doubling of the pool to 60."""
    knobs = replace(KNOBS, max_replicas=100, task_seconds=480)
    state = ScalingState(tracking_since=-1000.0, last_scale_time=-40.0, last_direction=1)
    stale = signal(backlog=60, age=90.0)
    counted = decide(30, stale, knobs, state, 0.0, in_flight=64.0)
    assert counted.reason is Reason.BACKLOG_AGE
    assert counted.replicas == 31
    assert decide(30, stale, knobs, state, 0.0).replicas == 60  # estimated: the doubling


def test_tasks_about_to_take_free_slots_are_not_counted_twice() -> None:
    """8 replicas: 5 run 20 tasks, 3 still start; 11 tasks wait for those 12 free slots.
    The arrival stream (2.7/s of 10 s tasks: 6.75 replicas) already holds them; counted,
    they are running work (31 tasks: 8 replicas), not also backlog on top of the stream
    (6.75 + 11 / 4 = 10 replicas, the estimate's reading)."""
    state = ScalingState(tracking_since=-1000.0)
    queued = signal(backlog=11, age=5.0, add=2.7, dispatch=2.0)
    assert decide(8, queued, KNOBS, state, 0.0, in_flight=20.0).replicas == 8
    assert decide(8, queued, KNOBS, state, 0.0).replicas == 10
