"""Properties of the scaling policy that hold for any input (hypothesis)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from signal_strategies import queue_signals

from docpipe_operator.scaling import Decision, QueueSignal, ScalingKnobs, ScalingState, decide


@st.composite
def knobs(draw: st.DrawFn) -> ScalingKnobs:
    low = draw(st.integers(0, 10))
    return ScalingKnobs(
        min_replicas=low,
        max_replicas=draw(st.integers(max(low, 1), 50)),
        concurrency=draw(st.integers(1, 200)),
        target_backlog_per_replica=draw(st.floats(0.5, 500)),
        task_seconds=draw(st.floats(0.01, 900)),
        target_backlog_age_s=draw(st.floats(0.5, 600)),
        scale_up_horizon_s=draw(st.floats(0, 300)),
        scale_down_stabilization_s=draw(st.floats(0, 900)),
        max_scale_down_step=draw(st.integers(1, 10)),
        scale_to_zero=draw(st.booleans()),
    )


@dataclass(frozen=True)
class SettledPool:
    """A pool at ``now`` with ``replicas`` (1 to its maximum) after a long quiet history."""

    knob: ScalingKnobs
    replicas: int
    now: float

    def decide(self, signal: QueueSignal) -> Decision:
        state = ScalingState(tracking_since=self.now - 100_000)
        return decide(self.replicas, signal, self.knob, state, self.now)


@st.composite
def settled_pools(draw: st.DrawFn) -> SettledPool:
    knob = draw(knobs())
    replicas = min(draw(st.integers(1, 50)), knob.max_replicas)
    return SettledPool(knob, replicas, draw(st.floats(0, 10_000)))


def decisions(
    knob: ScalingKnobs, replicas: int, trace: list[QueueSignal | None]
) -> Iterator[tuple[int, Decision]]:
    """Each reading of ``trace`` (None: no data), 10 s apart from a fresh state, decided
    in turn: the replicas before it and the decision."""
    state = ScalingState()
    for step, item in enumerate(trace):
        decision = decide(replicas, item, knob, state, step * 10.0)
        yield replicas, decision
        replicas, state = decision.replicas, decision.state


signals = queue_signals(max_backlog=100_000, max_age_s=10_000, max_rate=5_000)
maybe_signals = st.one_of(st.none(), signals)


@settings(max_examples=120, deadline=None)
@given(knobs(), st.lists(maybe_signals, min_size=1, max_size=40), st.integers(0, 60))
def test_replicas_stay_within_bounds(knob: ScalingKnobs, trace: list, start: int) -> None:
    """Never above max; never below min, except a pool that may idle at zero -- which
    goes there, or holds a count it already had while the scale-down stabilises
    (scaling a pool up to its minimum only to take it to zero would be waste)."""
    for replicas, decision in decisions(knob, min(start, knob.max_replicas), trace):
        assert decision.replicas <= knob.max_replicas
        if decision.replicas < knob.min_replicas:
            assert decision.replicas in (0, replicas)
            assert knob.scale_to_zero or knob.min_replicas == 0 or replicas == 0


@settings(max_examples=120, deadline=None)
@given(settled_pools(), signals)
def test_never_shrinks_while_the_backlog_grows(pool: SettledPool, signal: QueueSignal) -> None:
    if signal.backlog_count == 0 or signal.add_rate <= signal.dispatch_rate:
        signal = QueueSignal(
            max(1, signal.backlog_count),
            signal.backlog_age_s,
            signal.dispatch_rate + 1,
            signal.dispatch_rate,
        )
    assert pool.decide(signal).replicas >= pool.replicas


@settings(max_examples=120, deadline=None)
@given(knobs(), st.integers(0, 50), st.lists(st.none(), min_size=1, max_size=30))
def test_no_data_never_changes_replicas_inside_the_bounds(
    knob: ScalingKnobs, current: int, trace: list
) -> None:
    current = min(current, knob.max_replicas)
    if current < knob.min_replicas and current != 0:
        current = knob.min_replicas
    for _, decision in decisions(knob, current, trace):
        if current != 0 or knob.scale_to_zero or knob.min_replicas == 0:
            assert decision.replicas == current


@settings(max_examples=120, deadline=None)
@given(settled_pools(), signals)
def test_one_decision_removes_at_most_max_step_replicas(
    pool: SettledPool, signal: QueueSignal
) -> None:
    assert pool.replicas - pool.decide(signal).replicas <= pool.knob.max_scale_down_step


@settings(max_examples=100, deadline=None)
@given(knobs(), st.integers(1, 1_000), st.floats(0, 10_000))
def test_a_queued_task_always_gets_a_replica(knob: ScalingKnobs, backlog: int, age: float) -> None:
    """Scale from zero: any waiting task on a pool at zero brings at least one replica."""
    signal = QueueSignal(backlog, age, 0.0, 0.0)
    assert decide(0, signal, knob, ScalingState(), 0.0).replicas >= 1
