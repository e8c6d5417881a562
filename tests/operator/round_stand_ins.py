"""Stand-ins for the API layers of one autoscaling round (autoscaler.autoscale): a
pipeline, Deployments that count their reads, and a Temporal that answers queue
statistics. What the round does with them is under test; the policy has its own tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from docpipe.queue_stats import QueueStats
from docpipe_operator import POOLS, autoscaler, pool_scaling, spec, trust
from docpipe_operator.backlog import BacklogReading, QueueRef
from docpipe_operator.kube import DeploymentState
from docpipe_operator.reconcile import Result

BODY: dict[str, Any] = {
    "metadata": {"name": "docs", "namespace": "docpipe", "uid": "u1", "generation": 1},
    "spec": {
        "temporal": {"address": "temporal:7233"},
        "pools": {kind: {"image": f"docpipe/{kind}:1"} for kind in POOLS},
    },
    "status": {"observedGeneration": 1},
}
PARSED = spec.parse(BODY["spec"], "docs")
LAST_ENDPOINT = "the endpoint of the last round"


def stats(queue: str, backlog: int = 0, add: float = 0.0, dispatch: float = 0.0) -> QueueStats:
    return QueueStats(queue, "activity", backlog, 30.0 if backlog else 0.0, add, dispatch, 1)


@dataclass
class Deployments:
    """Each pool's Deployment by name (``docs-<pool>``), its reads and scales recorded."""

    replicas: dict[str, int]
    reads: int = 0
    scaled: list[tuple[str, int]] = field(default_factory=list)

    async def deployment(self, namespace: str, name: str) -> DeploymentState:
        self.reads += 1
        n = self.replicas[name]
        return DeploymentState(n, n, n)

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.scaled.append((name, replicas))
        self.replicas[name] = replicas


@dataclass
class Queues:
    """Temporal's queue statistics (None: that queue could not be read)."""

    answers: Mapping[str, QueueStats | None]
    known: Any = LAST_ENDPOINT
    asked: list[str] = field(default_factory=list)
    reads: list[Any] = field(default_factory=list)

    def endpoint_of(self, user: Any) -> Any:
        return self.known

    async def read(
        self, endpoint: Any, queues: Mapping[str, QueueRef], *, user: Any = None
    ) -> BacklogReading:
        self.asked = sorted(queues)
        self.reads.append(endpoint)
        return BacklogReading({kind: self.answers[kind] for kind in queues}, None, 0.01)


def run_round(
    kube: Deployments,
    temporal: Queues,
    memory: MutableMapping[str, pool_scaling.PoolMemory],
    *,
    body: Mapping[str, Any] = BODY,
    at: float = 1000.0,
) -> Result | None:
    return asyncio.run(
        autoscaler.autoscale(
            kube,  # type: ignore[arg-type]
            temporal,  # type: ignore[arg-type]
            body,
            PARSED,
            memory,
            now=at,
            monotonic=at,
            policy=trust.TrustPolicy(),
        )
    )
