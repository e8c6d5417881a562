"""The operator under faults: Temporal unreachable, an API server that fails
writes, invalid specs, and people editing what the operator owns.

Each test runs the real kopf operator against the emulated API server
(kube_emulator.py), with faults injected there, and checks what a user would
check with kubectl: the objects, their replicas, the status and the Events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from backlog_driver import backlog_driver
from crd_admission import admit
from operator_harness import NAMESPACE, Cluster, eventually, running_operator
from tcp_proxy import Forwarder
from temporalio.client import Client
from test_operator import pipeline, pools, reads, reason_events

from docpipe.local.devstack import TemporalServer
from docpipe_operator import POOLS, crd, reconcile
from docpipe_operator.spec import parse

DEPLOYMENTS = "apps/v1/deployments"


def condition(body: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """The condition ``kind`` of a pipeline (KeyError, which eventually() waits out, if absent)."""
    assert body is not None
    for item in (body.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return item
    raise KeyError(kind)


def replicas(cluster: Cluster, kind: str, name: str = "docs") -> int:
    deployment = cluster.deployment(f"{name}-{kind}")
    assert deployment is not None, f"no Deployment {name}-{kind}"
    return int(deployment["spec"]["replicas"])


def versions(cluster: Cluster, name: str = "docs") -> dict[str, int]:
    """How many times each owned object was written (kmock keeps every version)."""
    found = {kind: cluster.versions(DEPLOYMENTS, f"{name}-{kind}") for kind in POOLS}
    return found | {
        f"{k}-svc": cluster.versions("v1/services", f"{name}-{k}-metrics") for k in POOLS
    }


def owned_objects(cluster: Cluster, plural: str) -> list[str]:
    """Names of live objects of ``plural`` in our namespace (duplicates would show here)."""
    return sorted(
        name
        for (resource, namespace, name), obj in cluster.api.objects.items()
        if resource.plural == plural and namespace == NAMESPACE and not obj.deleted
    )


def fail_first(count: int, status: int, verb: str, plural: str) -> Callable[..., int | None]:
    """A fault: the first ``count`` ``verb`` requests on ``plural`` get ``status``."""
    left = [count]

    def fault(seen_verb: str, seen_plural: str, name: str | None) -> int | None:
        if seen_verb == verb and seen_plural == plural and left[0] > 0:
            left[0] -= 1
            return status
        return None

    return fault


# ------------------------------------------------------------------- Temporal


async def test_temporal_unreachable_from_the_start_then_back_resumes_scaling(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    """A pipeline created while Temporal is down still gets its Deployments at
    their initial size, says why it cannot scale, and starts scaling on its
    own once Temporal answers: no restart, no spec change."""
    async with Forwarder(target=None) as proxy:
        body = pipeline("docs", proxy.address)
        body["spec"]["pools"]["cpu"]["scaling"] |= {"targetBacklogPerReplica": 4}
        queues = body["spec"]["queues"]
        await cluster.create_pipeline(body)

        await eventually(lambda: all(cluster.deployment(f"docs-{k}") for k in POOLS))
        reachable = await eventually(
            lambda: condition(cluster.pipeline("docs"), "TemporalReachable")
        )
        assert (reachable["status"], reachable["reason"]) == ("False", "Unreachable")
        assert proxy.address in reachable["message"]
        scaling = condition(cluster.pipeline("docs"), "Scaling")
        assert (scaling["status"], scaling["reason"]) == ("False", "HoldingReplicas")
        assert cluster.pipeline("docs")["status"]["phase"] == "Degraded"  # type: ignore[index]
        await eventually(lambda: reason_events(cluster, "TemporalUnreachable"))
        initial = {kind: pool.initial_replicas for kind, pool in parse(body["spec"]).pools.items()}
        await asyncio.sleep(1.5)  # a few rounds without Temporal: replicas held
        assert {kind: replicas(cluster, kind) for kind in POOLS} == initial

        proxy.target = temporal.address  # Temporal is back

        await eventually(
            lambda: condition(cluster.pipeline("docs"), "TemporalReachable")["status"] == "True",
            timeout=30,
        )
        await eventually(lambda: reason_events(cluster, "TemporalReachable"))
        await eventually(
            lambda: condition(cluster.pipeline("docs"), "Scaling")["reason"] == "Active"
        )
        assert cluster.pipeline("docs")["status"]["phase"] != "Degraded"  # type: ignore[index]

        # Scaling resumed: a backlog on the CPU queue scales the CPU pool.
        client = await Client.connect(temporal.address)
        async with backlog_driver(client) as driver:
            await driver.fan_out(queues["cpu"], 12)
            await eventually(lambda: replicas(cluster, "cpu") >= 2, timeout=45)
        # The round writes status after it patched the Deployment.
        await eventually(
            lambda: pools(cluster, "docs")["cpu"].get("lastScaleReason") not in (None, "NoData")
        )
        assert len(reason_events(cluster, "TemporalUnreachable")) == 1


# ------------------------------------------------------------- API server errors


async def test_api_server_errors_on_create_and_patch_are_retried_to_a_consistent_end(
    cluster: Cluster, temporal: TemporalServer
) -> None:
    """500s and 409s on the operator's own writes: it retries (kopf's handler
    backoff for create/update, the next timer round for a scale), ends with
    exactly one object per name in the state the spec asks for, and keeps
    running; a replay afterwards writes nothing."""
    cluster.api.faults += [
        # Owned objects are created by server-side apply: a PATCH.
        fail_first(2, 500, "patch", "deployments"),
        fail_first(1, 503, "patch", "services"),
    ]
    async with running_operator():
        await cluster.create_pipeline(pipeline("docs", temporal.address))
        await eventually(lambda: all(cluster.service(f"docs-{k}-metrics") for k in POOLS))
        await eventually(lambda: all(cluster.deployment(f"docs-{k}") for k in POOLS))
        assert len([f for f in cluster.api.failed if f[0] == "patch"]) == 3
        assert owned_objects(cluster, "deployments") == sorted(f"docs-{k}" for k in POOLS)
        assert owned_objects(cluster, "services") == sorted(f"docs-{k}-metrics" for k in POOLS)
        await eventually(lambda: pools(cluster, "docs")["io"]["currentReplicas"] == 1)

        # A spec change meets conflicts on its template patch and on the scale patch.
        cluster.api.faults.append(fail_first(3, 409, "patch", "deployments"))
        await cluster.patch_pipeline(
            "docs",
            {"spec": {"pools": {"io": {"minReplicas": 3, "maxReplicas": 5, "concurrency": 50}}}},
        )

        def io_caught_up() -> bool:
            io = cluster.deployment("docs-io")
            assert io is not None
            env = {
                e["name"]: e.get("value")
                for e in io["spec"]["template"]["spec"]["containers"][0]["env"]
            }
            return io["spec"]["replicas"] == 3 and env["MAX_CONCURRENT_IO_ACTIVITIES"] == "50"

        await eventually(io_caught_up, timeout=30)
        assert len([f for f in cluster.api.failed if f[0] == "patch"]) == 6
        await eventually(lambda: pools(cluster, "docs")["io"]["desiredReplicas"] == 3)
        await eventually(
            lambda: cluster.pipeline("docs")["status"]["observedGeneration"] == 2  # type: ignore[index]
        )
        assert owned_objects(cluster, "deployments") == sorted(f"docs-{k}" for k in POOLS)
        await asyncio.sleep(1.5)  # a few calm rounds
        settled = versions(cluster)
    # running_operator() raised nothing: no handler crashed the operator.

    before = reads(cluster)
    async with running_operator():  # a replay of every object as ADDED
        await eventually(lambda: reads(cluster) >= before + 8)
        await asyncio.sleep(1.5)
    assert versions(cluster) == settled
    assert replicas(cluster, "io") == 3


# ------------------------------------------------------------------ invalid specs


def test_the_schema_rejects_what_it_can_express() -> None:
    """min > max (CEL), a negative target (minimum) and an unknown pool field
    (structural schema, strict) never reach the operator on a real cluster."""
    schema = crd.build()
    body = pipeline("docs", "temporal:7233")
    cases = {
        "min > max": ("cpu", {"minReplicas": 5, "maxReplicas": 2}, "minReplicas must not exceed"),
        "negative target": (
            "io",
            {"scaling": {"targetBacklogPerReplica": -4}},
            "targetBacklogPerReplica",
        ),
        "unknown field": ("gpu", {"replicaz": 3}, "replicaz"),
    }
    for case, (kind, change, mentioned) in cases.items():
        obj = pipeline("docs", "temporal:7233")
        obj["spec"]["pools"][kind] |= change
        _, errors = admit(schema, obj)
        assert any(mentioned in error for error in errors), (case, errors)
    assert admit(schema, body)[1] == []


async def test_an_invalid_update_is_reported_and_leaves_the_deployments_alone(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    """The emulator, like a cluster whose CRD predates a rule, stores anything:
    the operator repeats the checks, reports them (Ready=False InvalidSpec, a
    Warning) and neither patches nor scales until the spec is fixed."""
    await cluster.create_pipeline(pipeline("docs", temporal.address))
    await eventually(lambda: pools(cluster, "docs")["io"]["currentReplicas"] == 1)
    await asyncio.sleep(1)
    before = versions(cluster)

    await cluster.patch_pipeline(
        "docs",
        {
            "spec": {
                "pools": {
                    "cpu": {"minReplicas": 9, "maxReplicas": 3, "image": "ghcr.io/x/cpu:2"},
                    "io": {"scaling": {"targetBacklogPerReplica": -4}},
                }
            }
        },
    )
    warning = await eventually(lambda: reason_events(cluster, "InvalidSpec"))
    assert "minReplicas must not exceed maxReplicas" in warning[0]
    assert "targetBacklogPerReplica: must be > 0" in warning[0]
    await eventually(lambda: cluster.pipeline("docs")["status"]["phase"] == "Invalid")  # type: ignore[index]
    ready = condition(cluster.pipeline("docs"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    await asyncio.sleep(2)  # several timer rounds
    assert versions(cluster) == before
    # A round already running when the update landed may write its own phase once;
    # the next round puts Invalid back (see the test below).
    await eventually(lambda: cluster.pipeline("docs")["status"]["phase"] == "Invalid")  # type: ignore[index]

    # Fixed: the update rolls out and the pipeline leaves Invalid.
    await cluster.patch_pipeline(
        "docs",
        {
            "spec": {
                "pools": {
                    "cpu": {"minReplicas": 1},
                    "io": {"scaling": {"targetBacklogPerReplica": 200}},
                }
            }
        },
    )
    await eventually(lambda: cluster.pipeline("docs")["status"]["phase"] != "Invalid")  # type: ignore[index]
    await eventually(
        lambda: (
            cluster.deployment("docs-cpu")["spec"]["template"]["spec"]["containers"][0]["image"]  # type: ignore[index]
            == "ghcr.io/x/cpu:2"
        )
    )
    await eventually(
        lambda: condition(cluster.pipeline("docs"), "Ready")["reason"] != "InvalidSpec"
    )


def test_a_round_that_overwrote_the_invalid_status_is_corrected_without_a_new_warning() -> None:
    """Found by the test above under load: a timer round that began before an
    invalid update wrote phase Pending after the update handler wrote Invalid,
    and since later rounds skipped invalid specs, Pending stuck."""
    error = "spec.pools.cpu: minReplicas must not exceed maxReplicas (9 > 3)"
    overwritten = {
        "metadata": {"generation": 3},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "PodsNotReady",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        },
    }
    fixed = reconcile.still_invalid(overwritten, error)
    assert fixed is not None and fixed.notices == []
    assert fixed.status["phase"] == "Invalid"
    ready = next(c for c in fixed.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "InvalidSpec", error)
    assert reconcile.still_invalid({**overwritten, "status": fixed.status}, error) is None


# ----------------------------------------------------- hands on owned objects


async def test_a_deployment_deleted_by_hand_is_recreated(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    await cluster.create_pipeline(pipeline("docs", temporal.address, io={"minReplicas": 2}))
    await eventually(lambda: pools(cluster, "docs")["io"].get("desiredReplicas") == 2)
    await eventually(lambda: replicas(cluster, "io") == 2)
    uid = cluster.deployment("docs-io")["metadata"]["uid"]  # type: ignore[index]

    await cluster.request("DELETE", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/docs-io")
    assert cluster.deployment("docs-io") is None

    recreated = await eventually(lambda: cluster.deployment("docs-io"))
    assert recreated["metadata"]["uid"] != uid
    (owner,) = recreated["metadata"]["ownerReferences"]
    assert owner["uid"] == cluster.pipeline("docs")["metadata"]["uid"]  # type: ignore[index]
    await eventually(lambda: replicas(cluster, "io") == 2)
    message = (await eventually(lambda: reason_events(cluster, "DeploymentRecreated")))[0]
    assert "docs-io" in message
    assert owned_objects(cluster, "deployments") == sorted(f"docs-{k}" for k in POOLS)


async def test_a_manual_scale_is_set_back_to_the_operators_decision(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    """The autoscaler owns replicas (like an HPA): ``kubectl scale`` is undone
    within a round, with a Warning that says to change min/max instead."""
    await cluster.create_pipeline(pipeline("docs", temporal.address))
    await eventually(lambda: pools(cluster, "docs")["cpu"].get("desiredReplicas") == 1)

    await cluster.request(  # kubectl scale deployment docs-cpu --replicas=7
        "PATCH",
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/docs-cpu",
        {"spec": {"replicas": 7}},
        "application/merge-patch+json",
    )
    assert replicas(cluster, "cpu") == 7
    await eventually(lambda: replicas(cluster, "cpu") == 1)
    message = (await eventually(lambda: reason_events(cluster, "ReplicasOverridden")))[0]
    assert "cpu: replicas were set to 7 outside the operator; back to 1" in message
    assert pools(cluster, "docs")["cpu"]["currentReplicas"] in (1, 7)  # the round's view
    await eventually(lambda: pools(cluster, "docs")["cpu"]["currentReplicas"] == 1)
