"""A Temporal that answers DescribeTaskQueue without ``stats`` (a server that
does not report them) is missing data, not an idle queue: replicas hold, the
Scaling condition and one Warning say why (docs/scaling.md: "missing data
never shrinks a pool")."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from operator_harness import Cluster, eventually
from test_operator import condition, pipeline, reason_events

from docpipe import queue_stats
from docpipe.local.devstack import TemporalServer
from docpipe_operator import backlog


class WithoutStats:
    """The real client, answering as a server that reports no statistics."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.namespace = client.namespace

    @property
    def workflow_service(self) -> WithoutStats:
        return self

    async def describe_task_queue(self, request: Any) -> Any:
        response = await self._client.workflow_service.describe_task_queue(request)
        response.ClearField("stats")
        return response


@pytest.fixture
def no_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    async def describe(client: Any, queue: str, *, workflow: bool = False) -> Any:
        return await queue_stats.describe_queue(WithoutStats(client), queue, workflow=workflow)

    monkeypatch.setattr(backlog, "describe_queue", describe)


async def test_a_server_without_statistics_holds_every_pool(
    cluster: Cluster, no_stats: None, operator: None, temporal: TemporalServer
) -> None:
    quick = {"scaleDownStabilizationSeconds": 0, "taskSeconds": 0.1, "pollIntervalSeconds": 0.5}
    body = pipeline("docs", temporal.address, cpu={"minReplicas": 3})
    for pool in body["spec"]["pools"].values():
        pool["scaling"] |= quick
    await cluster.create_pipeline(body)
    await eventually(lambda: cluster.deployment("docs-cpu"))
    # Now the pool may shrink to 1, if the queue really were idle.
    await cluster.patch_pipeline("docs", {"spec": {"pools": {"cpu": {"minReplicas": 1}}}})

    def scaling_condition() -> dict[str, Any]:
        conditions = (cluster.pipeline("docs") or {}).get("status", {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Scaling"), {})

    scaling = await eventually(
        lambda: scaling_condition().get("reason") == "NoQueueStatistics" and scaling_condition()
    )
    assert scaling["status"] == "False"
    assert "returned no statistics" in scaling["message"]
    warnings = await eventually(lambda: reason_events(cluster, "QueueStatsMissing"))
    assert "holding replicas" in warnings[0]
    await asyncio.sleep(4)  # many rounds, well past the (zero) stabilisation window
    assert cluster.deployment("docs-cpu")["spec"]["replicas"] == 3  # type: ignore[index]
    assert cluster.pipeline("docs")["status"]["pools"]["cpu"]["lastDecision"] == "NoData"  # type: ignore[index]
    assert len(reason_events(cluster, "QueueStatsMissing")) == 1
    # Temporal itself answered: this is not an outage.
    assert condition(cluster.pipeline("docs"), "TemporalReachable")["status"] == "True"
