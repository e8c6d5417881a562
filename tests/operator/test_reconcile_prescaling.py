"""The operator's round feeds pre-scaling (issue 12, item 8): every queue is read,
and a cold GPU pool starts from the work queued upstream of it.

The Kubernetes and Temporal layers are stand-ins here: what is under test is
that autoscaler.autoscale reads every queue, hands each pool its upstream work,
and scales the Deployment accordingly (the policy has its own tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from round_stand_ins import Deployments, Queues, run_round, stats

from docpipe.queue_stats import QueueStats
from docpipe_operator import POOLS, pool_scaling


def round_with(answers: Mapping[str, QueueStats | None]) -> tuple[Deployments, Queues, Any]:
    kube = Deployments({f"docs-{kind}": (0 if kind == "gpu" else 1) for kind in POOLS})
    temporal = Queues(answers)
    return kube, temporal, run_round(kube, temporal, {})


def test_a_cold_gpu_pool_starts_while_extraction_tasks_wait_on_the_cpu_queue() -> None:
    kube, temporal, result = round_with(
        {
            "workflow": stats("wf"),
            "io": stats("io", add=0.5, dispatch=0.5),
            "cpu": stats("cpu", backlog=40, add=0.5, dispatch=0.2),
            "gpu": stats("gpu"),  # nothing has reached it yet
        }
    )
    assert temporal.asked == sorted(POOLS)
    assert ("docs-gpu", 0) not in kube.scaled
    assert kube.replicas["docs-gpu"] >= 1
    gpu = result.status["pools"]["gpu"]
    assert gpu["lastDecision"] == "ScaleFromZero"
    assert "upstream" in gpu["lastDecisionMessage"]


def test_without_upstream_work_an_idle_gpu_pool_stays_at_zero() -> None:
    kube, _, result = round_with({kind: stats(kind) for kind in POOLS})
    assert kube.replicas["docs-gpu"] == 0
    assert result.status["pools"]["gpu"]["desiredReplicas"] == 0


def test_unreadable_upstream_queues_hold_the_gpu_pool() -> None:
    answers = {kind: stats(kind) for kind in POOLS} | {"cpu": None}
    kube = Deployments({f"docs-{kind}": 2 for kind in POOLS})
    memory = {kind: pool_scaling.PoolMemory() for kind in POOLS}
    for pool in memory.values():  # an operator that has watched these pools for long
        pool.state = pool.state.__class__(tracking_since=0.0)
    run_round(kube, Queues(answers), memory, at=5000.0)
    assert kube.replicas["docs-gpu"] == 2  # idle itself, but the cpu queue went unread
    assert memory["gpu"].state.recommendations  # it decided; it did not skip the pool
