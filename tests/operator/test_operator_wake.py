"""A pool at zero is woken by its first task within a few ticks, not at its next round.

The real operator against the emulated API server and a real Temporal dev server: every
pool's round is two minutes apart, so only the tick's wake check (a read of the queues
alone) can bring the GPU pool up in time; while nothing happens, the ticks read no
Deployment."""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from typing import Any

from backlog_driver import backlog_driver
from operator_harness import Cluster, eventually
from pipeline_examples import example
from temporalio.client import Client

from docpipe.local.devstack import TemporalServer
from docpipe_operator import POOLS

ROUND_S = 120


def pipeline(temporal_address: str) -> dict[str, Any]:
    body = copy.deepcopy(example("full"))
    body["metadata"]["name"] = "wake"
    body["spec"]["temporal"] = {"address": temporal_address}
    suffix = uuid.uuid4().hex[:8]
    body["spec"]["queues"] = {kind: f"{kind}-{suffix}" for kind in POOLS}
    for pool in body["spec"]["pools"].values():
        pool.setdefault("scaling", {})["pollIntervalSeconds"] = ROUND_S
    return body


def deployment_reads(cluster: Cluster) -> int:
    return sum(1 for verb, kind, _ in cluster.api.log if verb == "get" and kind == "deployments")


async def test_the_first_task_wakes_a_gpu_pool_at_zero_between_its_rounds(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    body = pipeline(temporal.address)
    await cluster.create_pipeline(body)

    def first_round_done() -> bool:
        # Both the rollout (ensure: it applies, and reads, every Deployment) and the first
        # round are over: from here on only ticks run.
        status = (cluster.pipeline("wake") or {}).get("status", {})
        gpu = status.get("pools", {}).get("gpu", {})
        return status.get("observedGeneration") is not None and gpu.get("desiredReplicas") == 0

    await eventually(first_round_done, timeout=30)
    quiet_from = deployment_reads(cluster)
    await asyncio.sleep(6)  # twelve ticks with nothing queued
    assert deployment_reads(cluster) == quiet_from

    client = await Client.connect(temporal.address)
    async with backlog_driver(client) as driver:
        queued_at = time.monotonic()
        await driver.fan_out(body["spec"]["queues"]["gpu"], 3)

        def woken() -> bool:
            gpu = cluster.deployment("wake-gpu")
            return gpu is not None and gpu["spec"]["replicas"] >= 1

        # Temporal refreshes its statistics every few seconds; the round is 2 min away.
        await eventually(woken, timeout=45)
    assert time.monotonic() - queued_at < ROUND_S / 2
    gpu = cluster.pipeline("wake")["status"]["pools"]["gpu"]  # type: ignore[index]
    assert gpu["lastScaleReason"] == "ScaleFromZero"
