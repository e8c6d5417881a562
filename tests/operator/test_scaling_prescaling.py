"""Pipeline-aware pre-scaling (issue 12, item 8): upstream backlog predicts downstream demand.

A document's work flows io -> cpu -> gpu -> io. The decision stays a pure
function: every queue's statistics in (``pipeline_upstream``), replicas per
pool out (``decide`` with the pool's ``Upstream``).
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from signal_strategies import queue_signals

from docpipe_operator.scaling import (
    QueueSignal,
    Reason,
    ScalingKnobs,
    ScalingState,
    Upstream,
    decide,
    pipeline_upstream,
)
from docpipe_operator.spec import pool_knobs

KNOBS = {kind: pool_knobs(kind, {})[0] for kind in ("workflow", "io", "cpu", "gpu")}
IDLE = QueueSignal(0, 0.0, 0.0, 0.0)
SETTLED = ScalingState(tracking_since=-10_000.0)


def flow(rate: float, backlog: int = 0) -> QueueSignal:
    """A queue taking ``rate`` tasks/s and handing them out as fast, ``backlog`` waiting."""
    return QueueSignal(backlog, 5.0 if backlog else 0.0, rate, rate)


def test_a_cold_gpu_pool_starts_loading_while_documents_are_still_downloading() -> None:
    # Documents enter at 0.5/s; nothing has reached the cpu or gpu queue yet.
    signals = {"workflow": IDLE, "io": flow(0.5), "cpu": IDLE, "gpu": IDLE}
    upstream = pipeline_upstream(signals, KNOBS)
    alone = decide(0, IDLE, KNOBS["gpu"], SETTLED, 0.0)
    ahead = decide(0, IDLE, KNOBS["gpu"], SETTLED, 0.0, upstream["gpu"])
    assert alone.replicas == 0
    assert ahead.replicas >= 1
    assert ahead.reason is Reason.SCALE_FROM_ZERO
    assert "upstream" in ahead.message


def test_work_waiting_upstream_sizes_the_pool_for_when_it_arrives() -> None:
    # 400 extraction tasks wait on a saturated cpu pool: the gpu pool grows to its
    # maximum before the first of them reaches it.
    signals = {"io": flow(0.5), "cpu": QueueSignal(400, 60.0, 0.5, 0.5), "gpu": IDLE}
    decision = decide(0, IDLE, KNOBS["gpu"], SETTLED, 0.0, pipeline_upstream(signals, KNOBS)["gpu"])
    assert decision.replicas == KNOBS["gpu"].max_replicas


def test_a_steady_flow_adds_nothing_to_what_the_pool_reads_itself() -> None:
    # 2 documents/s everywhere: io sees downloads and stores (4/s), cpu and gpu 2/s.
    signals = {"io": flow(4.0), "cpu": flow(2.0), "gpu": flow(2.0)}
    upstream = pipeline_upstream(signals, KNOBS)
    for kind in ("cpu", "gpu"):
        alone = decide(3, signals[kind], KNOBS[kind], SETTLED, 0.0)
        ahead = decide(3, signals[kind], KNOBS[kind], SETTLED, 0.0, upstream[kind])
        assert ahead.replicas == alone.replicas, kind
        assert ahead.load is not None and alone.load is not None
        assert ahead.load.target == alone.load.target


def test_the_first_stage_and_a_zero_fraction_have_no_upstream() -> None:
    knobs = KNOBS | {"cpu": replace(KNOBS["cpu"], upstream_fraction=0.0)}
    upstream = pipeline_upstream({"io": flow(9.0), "cpu": flow(1.0), "gpu": IDLE}, knobs)
    assert set(upstream) == {"gpu"}  # io comes first; cpu turned off; workflow not a stage


def test_the_fraction_weights_what_reaches_the_pool() -> None:
    signals = {"io": flow(2.0), "cpu": QueueSignal(30, 10.0, 1.0, 1.0), "gpu": IDLE}
    full = pipeline_upstream(signals, KNOBS)["gpu"]
    tenth = pipeline_upstream(
        signals, KNOBS | {"gpu": replace(KNOBS["gpu"], upstream_fraction=0.1)}
    )
    assert tenth["gpu"].rate == full.rate * 0.1
    assert tenth["gpu"].queued == full.queued * 0.1 == 3.0


def test_missing_upstream_statistics_mark_the_answer_and_never_shrink_a_pool() -> None:
    upstream = pipeline_upstream({"io": None, "cpu": flow(0.1), "gpu": IDLE}, KNOBS)
    assert upstream["gpu"].missing == ("io",)
    knobs = KNOBS["gpu"]
    decision = decide(4, IDLE, knobs, SETTLED, 0.0, upstream["gpu"])
    assert decision.replicas == 4
    assert decision.reason is Reason.UPSTREAM_NO_DATA
    # With the upstream queues read again, the idle pool may go.
    clear = decide(
        4, IDLE, knobs, SETTLED, 0.0, pipeline_upstream({"io": IDLE, "cpu": IDLE}, KNOBS)["gpu"]
    )
    assert clear.replicas < 4


upstreams = st.builds(
    Upstream,
    rate=st.floats(0, 1_000),
    queued=st.floats(0, 10_000),
    missing=st.sampled_from([(), ("io",)]),
)
signals = queue_signals(max_backlog=10_000, max_age_s=1_000, max_rate=1_000)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["cpu", "gpu"]),
    st.integers(0, 20),
    st.one_of(st.none(), signals),
    upstreams,
    st.floats(-2_000, 0),
)
def test_upstream_work_never_lowers_a_decision(
    kind: str, current: int, signal: QueueSignal | None, upstream: Upstream, since: float
) -> None:
    """Pre-scaling only adds: the same decision with an Upstream is never smaller."""
    knobs: ScalingKnobs = KNOBS[kind]
    current = min(current, knobs.max_replicas)
    state = ScalingState(tracking_since=since)
    alone = decide(current, signal, knobs, state, 0.0)
    ahead = decide(current, signal, knobs, state, 0.0, upstream)
    assert ahead.replicas >= alone.replicas
    assert ahead.replicas <= knobs.max_replicas
