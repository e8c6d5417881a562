"""The operator's round feeds pre-scaling (issue 12, item 8): every queue is read,
and a cold GPU pool starts from the work queued upstream of it.

The Kubernetes and Temporal layers are stand-ins here: what is under test is
that autoscaler.autoscale reads every queue, hands each pool its upstream work,
and scales the Deployment accordingly (the policy has its own tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from docpipe.queue_stats import QueueStats
from docpipe_operator import POOLS, autoscaler, pool_scaling, spec, trust
from docpipe_operator.backlog import BacklogReading, QueueRef
from docpipe_operator.kube import DeploymentState

BODY = {
    "metadata": {"name": "docs", "namespace": "docpipe", "uid": "u1", "generation": 1},
    "spec": {
        "temporal": {"address": "temporal:7233"},
        "pools": {kind: {"image": f"docpipe/{kind}:1"} for kind in POOLS},
    },
    "status": {"observedGeneration": 1},
}


def stats(queue: str, backlog: int = 0, add: float = 0.0, dispatch: float = 0.0) -> QueueStats:
    return QueueStats(queue, "activity", backlog, 30.0 if backlog else 0.0, add, dispatch, 1)


@dataclass
class FakeKube:
    replicas: dict[str, int]
    scaled: list[tuple[str, int]] = field(default_factory=list)

    async def deployment(self, namespace: str, name: str) -> DeploymentState:
        return DeploymentState(self.replicas[name], self.replicas[name], self.replicas[name])

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.scaled.append((name, replicas))
        self.replicas[name] = replicas


@dataclass
class FakeTemporal:
    answers: Mapping[str, QueueStats | None]
    asked: list[str] = field(default_factory=list)

    async def read(
        self, endpoint: Any, queues: Mapping[str, QueueRef], *, user: Any = None
    ) -> BacklogReading:
        self.asked = sorted(queues)
        return BacklogReading({kind: self.answers[kind] for kind in queues}, None, 0.01)


def round_with(answers: Mapping[str, QueueStats | None]) -> tuple[FakeKube, FakeTemporal, Any]:
    parsed = spec.parse(BODY["spec"], "docs")
    kube = FakeKube({f"docs-{kind}": (0 if kind == "gpu" else 1) for kind in POOLS})
    temporal = FakeTemporal(answers)
    result = asyncio.run(
        autoscaler.autoscale(
            kube,  # type: ignore[arg-type]
            temporal,  # type: ignore[arg-type]
            BODY,
            parsed,
            {},
            now=1000.0,
            monotonic=1000.0,
            policy=trust.TrustPolicy(),
        )
    )
    return kube, temporal, result


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
    parsed = spec.parse(BODY["spec"], "docs")
    kube = FakeKube({f"docs-{kind}": 2 for kind in POOLS})
    memory = {kind: pool_scaling.PoolMemory() for kind in POOLS}
    for pool in memory.values():  # an operator that has watched these pools for long
        pool.state = pool.state.__class__(tracking_since=0.0)
    asyncio.run(
        autoscaler.autoscale(
            kube,  # type: ignore[arg-type]
            FakeTemporal(answers),  # type: ignore[arg-type]
            BODY,
            parsed,
            memory,
            now=5000.0,
            monotonic=5000.0,
            policy=trust.TrustPolicy(),
        )
    )
    assert kube.replicas["docs-gpu"] == 2  # idle itself, but the cpu queue went unread
    assert memory["gpu"].state.recommendations  # it decided; it did not skip the pool
