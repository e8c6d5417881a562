"""The real kopf operator against an emulated Kubernetes API (kmock) and a
real Temporal dev server: what a user sees after ``kubectl apply``."""

from __future__ import annotations

import asyncio
import copy
import uuid
from typing import Any

import pytest
import yaml
from backlog_driver import backlog_driver
from operator_harness import (
    ALLOWED,
    NAMESPACE,
    Cluster,
    eventually,
    running_operator,
    start_temporal,
    stop_temporal,
)
from pipeline_examples import REPO, example
from prometheus_client import REGISTRY
from temporalio.client import Client

from docpipe.local.devstack import TemporalServer
from docpipe_operator import POOLS, metrics

FULL = example("full")


def pipeline(name: str, temporal_address: str, **pool_overrides: dict[str, Any]) -> dict[str, Any]:
    """The full example, pointed at our Temporal, polling every second, on fresh queues."""
    body = copy.deepcopy(FULL)
    body["metadata"]["name"] = name
    spec = body["spec"]
    spec["temporal"] = {"address": temporal_address}
    suffix = uuid.uuid4().hex[:8]
    spec["queues"] = {kind: f"{kind}-{suffix}" for kind in POOLS}
    for kind, pool in spec["pools"].items():
        pool.setdefault("scaling", {})["pollIntervalSeconds"] = 1
        pool.update(pool_overrides.get(kind, {}))
    return body


def creates(cluster: Cluster) -> int:
    """Writes (server-side applies, creates) of Deployments and Services so far."""
    return sum(
        1
        for verb, kind, _ in cluster.api.log
        if verb in ("create", "patch") and kind in ("deployments", "services")
    )


def reads(cluster: Cluster) -> int:
    """GETs of Deployments and Services so far (each write is preceded by one)."""
    return sum(
        1
        for verb, kind, _ in cluster.api.log
        if verb == "get" and kind in ("deployments", "services")
    )


def reason_events(cluster: Cluster, reason: str) -> list[str]:
    return [event["message"] for event in cluster.events(reason)]


def pools(cluster: Cluster, name: str) -> dict[str, Any]:
    """status.pools of a pipeline (KeyError until the timer wrote them)."""
    return cluster.pipeline(name)["status"]["pools"]  # type: ignore[index]


def condition(body: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    assert body is not None
    conditions = (body.get("status") or {}).get("conditions") or []
    return next(c for c in conditions if c["type"] == kind)


# ------------------------------------------------------------- owned objects


async def test_a_new_pipeline_gets_owned_deployments_and_services(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    created = await cluster.create_pipeline(pipeline("docs", temporal.address))
    uid = created["metadata"]["uid"]

    for kind in POOLS:
        deployment = await eventually(lambda k=kind: cluster.deployment(f"docs-{k}"))
        service = await eventually(lambda k=kind: cluster.service(f"docs-{k}-metrics"))
        for child in (deployment, service):
            (owner,) = child["metadata"]["ownerReferences"]
            assert owner["uid"] == uid and owner["controller"] is True
            assert owner["kind"] == "DocumentPipeline"
            assert child["metadata"]["labels"]["app.kubernetes.io/instance"] == "docs"

    gpu = cluster.deployment("docs-gpu")
    assert gpu is not None
    pod = gpu["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"accelerator": "nvidia-tesla-v100"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert gpu["spec"]["replicas"] == 0  # scale-to-zero pools start empty
    assert cluster.deployment("docs-cpu")["spec"]["replicas"] == 1  # type: ignore[index]

    await eventually(lambda: reason_events(cluster, "WorkloadsCreated"))
    # The timer writes the round's status: the pods are not ready yet.
    await eventually(lambda: pools(cluster, "docs")["io"]["currentReplicas"] == 1)
    status = cluster.pipeline("docs")["status"]  # type: ignore[index]
    assert status["observedGeneration"] == 1
    assert status["phase"] == "Pending"
    # The create handler's own status (Ready=False/Reconciling) may land after the
    # first round's: the next round writes PodsNotReady.
    await eventually(
        lambda: condition(cluster.pipeline("docs"), "Ready")["reason"] == "PodsNotReady"
    )

    # Pods come up (we play the kubelet): Ready, Running.
    for kind in POOLS:
        current = cluster.deployment(f"docs-{kind}")["spec"]["replicas"]  # type: ignore[index]
        cluster.set_ready(f"docs-{kind}", current)
    await eventually(lambda: condition(cluster.pipeline("docs"), "Ready")["status"] == "True")
    assert cluster.pipeline("docs")["status"]["phase"] == "Running"  # type: ignore[index]
    assert condition(cluster.pipeline("docs"), "TemporalReachable")["status"] == "True"


async def test_a_replayed_create_and_a_restart_change_nothing(
    cluster: Cluster, temporal: TemporalServer
) -> None:
    """kmock replays every object as ADDED to a new operator: it reads every
    owned object again, and the objects must stay exactly as they were."""
    async with running_operator():
        await cluster.create_pipeline(pipeline("docs", temporal.address))
        await eventually(lambda: all(cluster.service(f"docs-{k}-metrics") for k in POOLS))
        await eventually(lambda: pools(cluster, "docs")["io"]["currentReplicas"])
    versions = {kind: cluster.versions("apps/v1/deployments", f"docs-{kind}") for kind in POOLS}
    versions |= {f"{k}-svc": cluster.versions("v1/services", f"docs-{k}-metrics") for k in POOLS}
    reads_before = reads(cluster)

    async with running_operator():
        # The resume handler ran: every object was read again (and found up to date).
        await eventually(lambda: reads(cluster) >= reads_before + 8)
        await asyncio.sleep(1.5)  # and a few timer rounds with steady queues
    after = {kind: cluster.versions("apps/v1/deployments", f"docs-{kind}") for kind in POOLS}
    after |= {f"{k}-svc": cluster.versions("v1/services", f"docs-{k}-metrics") for k in POOLS}
    assert after == versions
    assert reason_events(cluster, "WorkloadsUpdated") == []


async def test_a_spec_change_rolls_the_template_but_keeps_replicas(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    await cluster.create_pipeline(pipeline("docs", temporal.address))
    await eventually(lambda: cluster.deployment("docs-cpu"))
    await cluster.patch_pipeline(
        "docs", {"spec": {"pools": {"cpu": {"image": "ghcr.io/example/docpipe-cpu:0.2.0"}}}}
    )

    def rolled() -> bool:
        deployment = cluster.deployment("docs-cpu")
        assert deployment is not None
        return deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.2.0")

    await eventually(rolled)
    assert cluster.deployment("docs-cpu")["spec"]["replicas"] == 1  # type: ignore[index]
    await eventually(lambda: reason_events(cluster, "WorkloadsUpdated"))
    await eventually(lambda: cluster.pipeline("docs")["status"]["observedGeneration"] == 2)  # type: ignore[index]


async def test_an_invalid_spec_is_reported_and_nothing_is_created(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    """kmock does not run the CRD's CEL rules; the operator checks again."""
    body = pipeline("docs", temporal.address, cpu={"minReplicas": 9, "maxReplicas": 3})
    await cluster.create_pipeline(body)
    warning = await eventually(lambda: reason_events(cluster, "InvalidSpec"))
    assert "minReplicas must not exceed maxReplicas" in warning[0]
    await eventually(lambda: cluster.pipeline("docs")["status"]["phase"] == "Invalid")  # type: ignore[index]
    ready = condition(cluster.pipeline("docs"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert all(cluster.deployment(f"docs-{kind}") is None for kind in POOLS)


async def test_deleting_a_pipeline_releases_it_to_garbage_collection(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    await cluster.create_pipeline(pipeline("docs", temporal.address))
    await eventually(lambda: pools(cluster, "docs")["io"]["currentReplicas"])
    assert (
        REGISTRY.get_sample_value(
            "docpipe_operator_current_replicas",
            {"namespace": NAMESPACE, "pipeline": "docs", "pool": "io"},
        )
        == 1
    )
    await cluster.delete_pipeline("docs")
    await eventually(lambda: cluster.pipeline("docs") is None)
    # Kubernetes' garbage collector (not emulated) removes the children by their ownerReferences.
    assert cluster.deployment("docs-io")["metadata"]["ownerReferences"][0]["blockOwnerDeletion"]  # type: ignore[index]
    await eventually(
        lambda: (
            REGISTRY.get_sample_value(
                "docpipe_operator_current_replicas",
                {"namespace": NAMESPACE, "pipeline": "docs", "pool": "io"},
            )
            is None
        )
    )


# ------------------------------------------------------------- backlog and scaling


async def test_backlog_scales_the_pools_and_a_lost_temporal_holds_them(
    cluster: Cluster, operator: None
) -> None:
    server = await asyncio.to_thread(start_temporal)
    try:
        body = pipeline("docs", server.address)
        queues = body["spec"]["queues"]
        await cluster.create_pipeline(body)
        await eventually(lambda: all(cluster.deployment(f"docs-{k}") for k in POOLS))

        client = await Client.connect(server.address)
        async with backlog_driver(client) as driver:
            await asyncio.gather(
                driver.fan_out(queues["cpu"], 40),
                driver.fan_out(queues["gpu"], 3),
                *(
                    # Workflows nobody runs: a backlog of workflow tasks on the workflow queue.
                    client.start_workflow(
                        "Waiting", id=f"wf-{i}-{driver.name}", task_queue=queues["workflow"]
                    )
                    for i in range(5)
                ),
            )

            def scaled() -> bool:
                cpu, gpu = cluster.deployment("docs-cpu"), cluster.deployment("docs-gpu")
                assert cpu is not None and gpu is not None
                return cpu["spec"]["replicas"] >= 5 and gpu["spec"]["replicas"] >= 1

            # Temporal refreshes its statistics every few seconds.
            await eventually(scaled, timeout=45)

        # The backlog is approximate and summed over the queue's partitions, each refreshed
        # on its own clock: a first reading may show only part of the 40 tasks.
        await eventually(
            lambda: cluster.pipeline("docs")["status"]["pools"]["cpu"].get("backlog") == 40,  # type: ignore[index]
            timeout=30,
        )
        status = cluster.pipeline("docs")["status"]  # type: ignore[index]
        pools = status["pools"]
        assert pools["cpu"]["lastScaleReason"] in {"Backlog", "BacklogGrowing", "BacklogAge"}
        assert pools["gpu"]["lastScaleReason"] == "ScaleFromZero"
        await eventually(
            lambda: cluster.pipeline("docs")["status"]["pools"]["workflow"].get("backlog") == 5
        )  # type: ignore[index]
        assert cluster.pipeline("docs")["status"]["totalBacklog"] >= 48  # type: ignore[index]

        def scaled_up_events() -> bool:
            # kopf posts Events in the background: they may land after the status.
            ups = reason_events(cluster, "ScaledUp")
            return any(m.startswith("gpu: 0 -> ") and "ScaleFromZero" in m for m in ups) and any(
                m.startswith("cpu: 1 -> ") for m in ups
            )

        await eventually(scaled_up_events)
        labels = {"namespace": NAMESPACE, "pipeline": "docs", "pool": "cpu"}
        assert (
            REGISTRY.get_sample_value(
                "docpipe_operator_queue_backlog_tasks", labels | {"queue": queues["cpu"]}
            )
            == 40
        )
        assert REGISTRY.get_sample_value("docpipe_operator_desired_replicas", labels) >= 5
        assert (
            REGISTRY.get_sample_value(
                "docpipe_operator_scale_events_total",
                {**labels, "pool": "gpu", "direction": "up", "reason": "ScaleFromZero"},
            )
            == 1
        )
    finally:
        await asyncio.to_thread(stop_temporal, server)

    # Temporal is gone: replicas stay, the condition and a Warning say why.
    held = {kind: cluster.deployment(f"docs-{kind}")["spec"]["replicas"] for kind in POOLS}  # type: ignore[index]
    await eventually(
        lambda: condition(cluster.pipeline("docs"), "TemporalReachable")["status"] == "False"
    )
    warnings = await eventually(lambda: reason_events(cluster, "TemporalUnreachable"))
    assert server.address in warnings[0]
    scaling = await eventually(lambda: condition(cluster.pipeline("docs"), "Scaling"))
    assert (scaling["status"], scaling["reason"]) == ("False", "HoldingReplicas")
    status = cluster.pipeline("docs")["status"]  # type: ignore[index]
    assert status["phase"] == "Degraded"
    rounds = status["pools"]["cpu"]
    await asyncio.sleep(2.5)  # a few more rounds without Temporal
    assert {kind: cluster.deployment(f"docs-{kind}")["spec"]["replicas"] for kind in POOLS} == held  # type: ignore[index]
    assert cluster.pipeline("docs")["status"]["pools"]["cpu"]["lastDecision"] == "NoData"  # type: ignore[index]
    assert rounds["currentReplicas"] == held["cpu"]
    assert (
        len(reason_events(cluster, "TemporalUnreachable")) == 1
    )  # one Warning per outage, not per round
    assert (
        REGISTRY.get_sample_value(
            "docpipe_operator_temporal_errors_total", {"namespace": NAMESPACE, "pipeline": "docs"}
        )
        >= 2
    )
    assert metrics.TEMPORAL_QUERY_SECONDS is not None


def deploy_rbac_rules() -> list[dict[str, Any]]:
    """What deploy/rbac/ grants the namespaced operator: its Role in the watched
    namespace and the cluster-wide discovery role."""
    roles = [
        role
        for name in ("role.yaml", "clusterrole.yaml")
        for role in yaml.safe_load_all((REPO / "deploy" / "rbac" / name).read_text())
    ]
    return [rule for role in roles for rule in role["rules"]]


@pytest.fixture
def rbac_rules() -> list[dict[str, Any]]:
    return deploy_rbac_rules()


def granted(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for rule in rules
    )


async def test_the_rbac_role_grants_every_call_the_operator_makes(
    cluster: Cluster, rbac_rules: list[dict[str, Any]], temporal: TemporalServer
) -> None:
    """Least privilege, checked against practice: run a pipeline through its
    life (with an API-key Secret, a spec change, a scale and a delete) and
    compare each verb the operator used with deploy/rbac/."""
    await cluster.request(
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "temporal", "labels": ALLOWED},
            "data": {"api-key": "c2VjcmV0"},
        },
    )
    body = pipeline("docs", temporal.address)
    body["spec"]["temporal"]["apiKeySecretRef"] = {"name": "temporal"}
    async with running_operator():
        await cluster.create_pipeline(body)
        await eventually(
            lambda: reason_events(cluster, "TemporalUnreachable"), timeout=30
        )  # TLS to a plain server
        await cluster.patch_pipeline(
            "docs", {"spec": {"pools": {"io": {"maxReplicas": 4, "minReplicas": 2}}}}
        )
        await eventually(lambda: cluster.deployment("docs-io")["spec"]["replicas"] == 2)  # type: ignore[index]
        await cluster.delete_pipeline("docs")
        await eventually(lambda: cluster.pipeline("docs") is None)
    used = cluster.api.calls
    missing = sorted(call for call in used if not granted(rbac_rules, *call))
    assert missing == []
    assert ("apps", "deployments", "patch") in used
    assert ("", "secrets", "get") in used
