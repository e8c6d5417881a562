"""A pool at zero replicas is woken by work within a tick, not a whole poll interval:
between its rounds the operator reads only the queues (through the endpoint of its
last round), and starts the pool's round as soon as its queue, or a stage before it,
has work. No work: nothing else is read, nothing scaled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from round_stand_ins import BODY, LAST_ENDPOINT, PARSED, Deployments, Queues, run_round, stats

from docpipe.queue_stats import QueueStats
from docpipe_operator import POOLS, pool_scaling, scaling


def woken(kube: Deployments) -> bool:
    return any(name == "docs-gpu" and n > 0 for name, n in kube.scaled)


def quiet() -> dict[str, QueueStats | None]:
    return {kind: stats(PARSED.queues[kind]) for kind in POOLS}


def a_tick_between_rounds(
    temporal: Queues, asleep: tuple[str, ...] = ("gpu",), body: Mapping[str, Any] = BODY
) -> tuple[Deployments, Any]:
    """Every pool's round is 10 s away; the pools in ``asleep`` were left at zero."""
    kube = Deployments({f"docs-{kind}": 0 if kind in asleep else 1 for kind in POOLS})
    memory = {
        kind: pool_scaling.PoolMemory(next_poll=1010.0, asleep=kind in asleep) for kind in POOLS
    }
    return kube, run_round(kube, temporal, memory, body=body)


def test_a_quiet_tick_reads_the_queues_and_nothing_else() -> None:
    temporal = Queues(quiet())
    kube, result = a_tick_between_rounds(temporal)
    assert result is None
    assert temporal.reads == [LAST_ENDPOINT]  # the last round's endpoint: no Secret read
    assert kube.reads == 0 and kube.scaled == []


def test_work_on_its_queue_wakes_a_pool_at_once() -> None:
    answers = quiet() | {"gpu": stats(PARSED.queues["gpu"], backlog=3, add=0.5)}
    temporal = Queues(answers)
    kube, result = a_tick_between_rounds(temporal)
    assert result is not None
    assert woken(kube)
    assert len(temporal.reads) == 1  # the wake check's reading is the round's


def test_work_upstream_wakes_a_pool_for_pre_scaling() -> None:
    answers = quiet() | {"cpu": stats(PARSED.queues["cpu"], backlog=40, add=2.0)}
    kube, _ = a_tick_between_rounds(Queues(answers))
    assert woken(kube)


def test_no_pool_at_zero_means_no_read_between_rounds() -> None:
    temporal = Queues(quiet())
    kube, result = a_tick_between_rounds(temporal, asleep=())
    assert result is None and temporal.reads == [] and kube.reads == 0


def test_before_the_first_round_there_is_no_endpoint_to_reuse() -> None:
    temporal = Queues(quiet(), known=None)
    _, result = a_tick_between_rounds(temporal)
    assert result is None and temporal.reads == []


def test_a_paused_pipeline_is_not_woken() -> None:
    answers = quiet() | {"gpu": stats(PARSED.queues["gpu"], backlog=3, add=0.5)}
    temporal = Queues(answers)
    notes = {"annotations": {"docpipe.io/paused": "true"}}
    paused = {**BODY, "metadata": {**BODY["metadata"], **notes}}
    kube, result = a_tick_between_rounds(temporal, body=paused)
    assert result is None and temporal.reads == [] and kube.scaled == []


def test_what_wakes_a_pool() -> None:
    idle = scaling.QueueSignal(0, 0.0, 0.0, 0.0)
    queued = scaling.QueueSignal(1, 2.0, 0.1, 0.0)
    coming = scaling.Upstream(rate=0.2, queued=5.0)
    assert not scaling.has_work(idle)
    assert not scaling.has_work(None)  # unread statistics: the round decides
    assert scaling.has_work(queued)
    assert scaling.has_work(idle, coming)
    assert not scaling.has_work(idle, scaling.Upstream(rate=0.0, queued=0.0))
