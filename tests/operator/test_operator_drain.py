"""Drain-aware scale-down with the real operator (docs/scaling.md): before a pool
shrinks, each of its pods gets a deletion cost from the in-flight activities its
own /metrics reports, so the ReplicaSet removes the idle pods and keeps the busy
one. The pods' metrics endpoints are real HTTP servers on loopback addresses,
serving the workers' gauge; the pods carry those addresses as their podIP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp.web
import pytest_asyncio
from operator_harness import NAMESPACE, Cluster, eventually, running_operator
from test_drain import exposition
from test_operator import deploy_rbac_rules, granted, pipeline, reason_events

from docpipe.local.devstack import TemporalServer
from docpipe_operator.cordon import DRAIN_ANNOTATION, DRAIN_REQUESTED_AT_ANNOTATION, REMOVE_COST
from docpipe_operator.drain import DELETION_COST_ANNOTATION
from docpipe_operator.names import selector_labels

PODS = "v1/pods"


@asynccontextmanager
async def metrics_servers(texts: dict[str, str]) -> AsyncIterator[dict[str, int]]:
    """A worker's /metrics on each address of ``texts``, answering the text the dict holds
    at the time of the request (a test may change it); yields each address's port."""
    runners, ports = [], {}
    for ip in texts:

        async def metrics(_: aiohttp.web.Request, ip: str = ip) -> aiohttp.web.Response:
            return aiohttp.web.Response(text=texts[ip])

        app = aiohttp.web.Application()
        app.router.add_get("/metrics", metrics)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, ip, 0).start()
        runners.append(runner)
        ports[ip] = runner.addresses[0][1]
    try:
        yield ports
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest_asyncio.fixture
async def endpoints() -> AsyncIterator[dict[str, int]]:
    """Two workers' /metrics: 127.0.0.1 runs two activities, 127.0.0.2 none.
    127.0.0.3 serves nothing (a pod whose metrics cannot be read)."""
    texts = {"127.0.0.1": exposition(prepare_text=2), "127.0.0.2": exposition()}
    async with metrics_servers(texts) as ports:
        ports["127.0.0.3"] = ports["127.0.0.2"]  # nothing listens on that address
        yield ports


async def add_pod(cluster: Cluster, name: str, pool: str, ip: str, port: int) -> None:
    """Play the ReplicaSet and kubelet: a running worker pod of ``pool`` at ``ip``."""
    await cluster.request(
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": selector_labels("docs", pool)},
            "spec": {
                "containers": [
                    {
                        "name": "worker",
                        "image": "ghcr.io/example/docpipe-cpu:1",
                        "ports": [{"name": "metrics", "containerPort": port}],
                    }
                ]
            },
            "status": {"phase": "Running", "podIP": ip},
        },
    )


def pod(cluster: Cluster, name: str) -> dict[str, Any]:
    found = cluster.get(PODS, name)
    assert found is not None
    return found


def cost(cluster: Cluster, name: str) -> int:
    """The pod's deletion cost; 0 (the API server's default) without the annotation."""
    annotations = pod(cluster, name)["metadata"].get("annotations") or {}
    return int(annotations.get(DELETION_COST_ANNOTATION, "0"))


def resource_version_when_replicas_became(cluster: Cluster, name: str, replicas: int) -> int:
    history = cluster.api.objects["apps/v1/deployments", NAMESPACE, name].history
    return next(
        int(version["metadata"]["resourceVersion"])
        for version in history
        if version["spec"].get("replicas") == replicas
    )


async def start_cpu_pool(cluster: Cluster, temporal: TemporalServer, replicas: int) -> None:
    """The pipeline "docs" with ``replicas`` cpu pods, deciding every half second and
    scaling down without waiting out a window."""
    quick = {"scaleDownStabilizationSeconds": 0, "taskSeconds": 0.1, "pollIntervalSeconds": 0.5}
    body = pipeline("docs", temporal.address, cpu={"minReplicas": replicas})
    body["spec"]["pools"]["cpu"]["scaling"] |= quick
    await cluster.create_pipeline(body)
    await eventually(
        lambda: (cluster.deployment("docs-cpu") or {}).get("spec", {}).get("replicas") == replicas
    )


async def test_scaling_3_to_1_with_one_busy_pod_makes_the_busy_one_the_most_expensive(
    cluster: Cluster, operator: None, temporal: TemporalServer, endpoints: dict[str, int]
) -> None:
    await start_cpu_pool(cluster, temporal, 3)
    await add_pod(cluster, "docs-cpu-idle", "cpu", "127.0.0.2", endpoints["127.0.0.2"])
    await add_pod(cluster, "docs-cpu-busy", "cpu", "127.0.0.1", endpoints["127.0.0.1"])
    await add_pod(cluster, "docs-cpu-unread", "cpu", "127.0.0.3", endpoints["127.0.0.3"])
    await add_pod(cluster, "docs-io-other", "io", "127.0.0.1", endpoints["127.0.0.1"])

    # The queue is idle: with the floor lowered the pool shrinks to 1 in one step.
    await cluster.patch_pipeline("docs", {"spec": {"pools": {"cpu": {"minReplicas": 1}}}})
    await eventually(lambda: cluster.deployment("docs-cpu")["spec"]["replicas"] == 1)  # type: ignore[index]

    # Drain before remove (cordon.py): the idle pod and the one whose load cannot be
    # read go at once, with the lowest cost; the busy one stays, the dearest.
    assert cost(cluster, "docs-cpu-busy") == 2
    assert cost(cluster, "docs-cpu-idle") == REMOVE_COST
    assert cost(cluster, "docs-cpu-unread") == REMOVE_COST
    # The annotation was in place before the ReplicaSet was told to remove pods.
    annotated = int(pod(cluster, "docs-cpu-busy")["metadata"]["resourceVersion"])
    assert annotated < resource_version_when_replicas_became(cluster, "docs-cpu", 1)
    # Another pool's pods are read (their work counts) but not ranked: it keeps its pods.
    assert DELETION_COST_ANNOTATION not in (
        pod(cluster, "docs-io-other")["metadata"].get("annotations") or {}
    )
    rules = deploy_rbac_rules()
    pod_calls = [call for call in cluster.api.calls if call[1] == "pods"]
    assert sorted(pod_calls) == [("", "pods", "list"), ("", "pods", "patch")]
    assert all(granted(rules, *call) for call in pod_calls)


@pytest_asyncio.fixture
async def switchable() -> AsyncIterator[tuple[dict[str, str], dict[str, int]]]:
    """Two workers' /metrics whose text the test changes: 127.0.0.4 and 127.0.0.5."""
    texts = {"127.0.0.4": exposition(prepare_text=2), "127.0.0.5": exposition(prepare_text=1)}
    async with metrics_servers(texts) as ports:
        yield texts, ports


def annotations(cluster: Cluster, name: str) -> dict[str, str]:
    return pod(cluster, name)["metadata"].get("annotations") or {}


async def test_a_busy_pod_is_cordoned_and_removed_only_once_it_reports_drained(
    cluster: Cluster,
    operator: None,
    temporal: TemporalServer,
    switchable: tuple[dict[str, str], dict[str, int]],
) -> None:
    """Issue 12, item 7: with every pod busy, a shrinking pool deletes none of them.
    The least busy is cordoned (its worker stops polling); replicas go down only once
    that worker reports drained and idle, and then that pod is the one that goes."""
    texts, ports = switchable
    await start_cpu_pool(cluster, temporal, 2)
    await add_pod(cluster, "docs-cpu-busier", "cpu", "127.0.0.4", ports["127.0.0.4"])
    await add_pod(cluster, "docs-cpu-busy", "cpu", "127.0.0.5", ports["127.0.0.5"])

    await cluster.patch_pipeline("docs", {"spec": {"pools": {"cpu": {"minReplicas": 1}}}})
    await eventually(lambda: annotations(cluster, "docs-cpu-busy").get(DRAIN_ANNOTATION) == "true")
    assert DRAIN_REQUESTED_AT_ANNOTATION in annotations(cluster, "docs-cpu-busy")
    assert DRAIN_ANNOTATION not in annotations(cluster, "docs-cpu-busier")
    # Six rounds later (0.5 s each) both busy pods are still there; status says one serves
    # and one drains (what a restarted operator adds up as the replicas it owns).
    await asyncio.sleep(3)
    assert cluster.deployment("docs-cpu")["spec"]["replicas"] == 2  # type: ignore[index]
    cpu = cluster.pipeline("docs")["status"]["pools"]["cpu"]  # type: ignore[index]
    assert (cpu["desiredReplicas"], cpu["drainingReplicas"]) == (1, 1)

    # Its worker stopped polling and finished its activity.
    texts["127.0.0.5"] = (
        exposition() + "# TYPE docpipe_worker_draining gauge\ndocpipe_worker_draining 1\n"
    )
    await eventually(lambda: cluster.deployment("docs-cpu")["spec"]["replicas"] == 1)  # type: ignore[index]
    assert cost(cluster, "docs-cpu-busy") == REMOVE_COST
    assert cost(cluster, "docs-cpu-busier") == 2
    await eventually(
        lambda: cluster.pipeline("docs")["status"]["pools"]["cpu"]["drainingReplicas"] == 0  # type: ignore[index]
    )


async def test_a_restarted_operator_keeps_a_drain_going_and_sees_no_override(
    cluster: Cluster, temporal: TemporalServer, switchable: tuple[dict[str, str], dict[str, int]]
) -> None:
    """The cordoned pod is still in the Deployment's replicas when the operator restarts:
    status (desiredReplicas + drainingReplicas) says they are the operator's own, so the
    new operator neither warns of a hand-made change nor deletes the working pod."""
    texts, ports = switchable
    async with running_operator():
        await start_cpu_pool(cluster, temporal, 2)
        await add_pod(cluster, "docs-cpu-busier", "cpu", "127.0.0.4", ports["127.0.0.4"])
        await add_pod(cluster, "docs-cpu-busy", "cpu", "127.0.0.5", ports["127.0.0.5"])
        await cluster.patch_pipeline("docs", {"spec": {"pools": {"cpu": {"minReplicas": 1}}}})
        await eventually(
            lambda: cluster.pipeline("docs")["status"]["pools"]["cpu"].get("drainingReplicas") == 1  # type: ignore[index]
        )

    async with running_operator():
        await asyncio.sleep(3)  # six rounds of the new operator
        assert cluster.deployment("docs-cpu")["spec"]["replicas"] == 2  # type: ignore[index]
        assert reason_events(cluster, "ReplicasOverridden") == []
        texts["127.0.0.5"] = (
            exposition() + "# TYPE docpipe_worker_draining gauge\ndocpipe_worker_draining 1\n"
        )
        await eventually(lambda: cluster.deployment("docs-cpu")["spec"]["replicas"] == 1)  # type: ignore[index]
    assert cost(cluster, "docs-cpu-busy") == REMOVE_COST
