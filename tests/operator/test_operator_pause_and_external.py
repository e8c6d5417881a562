"""Replicas the operator leaves alone, and budgets it keeps: a paused pipeline
(``docpipe.io/paused: "true"``), a pool whose replicas an HPA or KEDA owns
(``autoscaling: external``), and per-pool PodDisruptionBudgets. The real kopf
operator against the emulated API server, as a user would check with kubectl."""

from __future__ import annotations

from typing import Any

import server_side_apply as ssa
from operator_harness import NAMESPACE, Cluster, eventually
from test_operator import condition, deploy_rbac_rules, granted, pipeline, pools, reason_events

from docpipe.local.devstack import TemporalServer

PAUSED = {"metadata": {"annotations": {"docpipe.io/paused": "true"}}}
RESUMED = {"metadata": {"annotations": {"docpipe.io/paused": None}}}
BUDGETS = "policy/v1/poddisruptionbudgets"


def replicas(cluster: Cluster, kind: str) -> int | None:
    deployment = cluster.deployment(f"docs-{kind}")
    assert deployment is not None
    return deployment["spec"].get("replicas")


async def scale_by_hand(cluster: Cluster, kind: str, count: int) -> None:
    """``kubectl scale``, or an HPA writing the scale (another field manager)."""
    await cluster.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/docs-{kind}",
        {"spec": {"replicas": count}},
        "application/merge-patch+json",
    )


def replica_owners(cluster: Cluster, kind: str) -> set[str]:
    """Field managers owning the Deployment's spec.replicas."""
    owners = ssa.owners(cluster.deployment(f"docs-{kind}"))  # type: ignore[arg-type]
    return {manager for (manager, _), paths in owners.items() if ("spec", "replicas") in paths}


def pool_says(cluster: Cluster, kind: str, **expected: Any) -> bool:
    entry = pools(cluster, "docs")[kind]
    return all(entry.get(key) == value for key, value in expected.items())


async def test_a_paused_pipeline_keeps_a_manual_scale_until_resumed(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    await cluster.create_pipeline(pipeline("docs", temporal.address))
    await eventually(lambda: pool_says(cluster, "cpu", desiredReplicas=1, currentReplicas=1))

    await cluster.patch_pipeline("docs", PAUSED)
    await eventually(lambda: cluster.pipeline("docs")["status"]["phase"] == "Paused")  # type: ignore[index]
    paused = condition(cluster.pipeline("docs"), "Paused")
    assert (paused["status"], paused["reason"]) == ("True", "Annotation")
    await eventually(lambda: reason_events(cluster, "Paused"))

    await scale_by_hand(cluster, "cpu", 5)  # an incident: more workers, now
    # A later round saw the 5 and left it (the status says so), rather than set it back.
    await eventually(
        lambda: pool_says(
            cluster, "cpu", currentReplicas=5, desiredReplicas=5, lastDecision="Paused"
        )
    )
    assert replicas(cluster, "cpu") == 5
    scaling = condition(cluster.pipeline("docs"), "Scaling")
    assert (scaling["status"], scaling["reason"]) == ("False", "Paused")

    await cluster.patch_pipeline("docs", RESUMED)
    await eventually(lambda: reason_events(cluster, "Resumed"))
    await eventually(lambda: pools(cluster, "docs")["cpu"]["lastDecision"] != "Paused")
    assert cluster.pipeline("docs")["status"]["phase"] != "Paused"  # type: ignore[index]
    assert condition(cluster.pipeline("docs"), "Paused")["status"] == "False"
    # Autoscaling resumes from the count it found: the scale-down window starts afresh,
    # and nothing calls the incident's count an override.
    assert replicas(cluster, "cpu") == 5
    assert pools(cluster, "docs")["cpu"]["autoscaling"] == "operator"
    assert reason_events(cluster, "ReplicasOverridden") == []
    assert len(reason_events(cluster, "Paused")) == 1


async def test_an_external_pool_leaves_replicas_to_its_autoscaler(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    await cluster.create_pipeline(
        pipeline("docs", temporal.address, cpu={"autoscaling": "external"})
    )
    await eventually(lambda: pool_says(cluster, "cpu", lastDecision="External"))
    # Created without replicas (the API server's default applies) and never applied since.
    assert replica_owners(cluster, "cpu") == set()

    await scale_by_hand(cluster, "cpu", 4)  # the HPA
    await eventually(lambda: pool_says(cluster, "cpu", currentReplicas=4, autoscaling="external"))
    assert replicas(cluster, "cpu") == 4
    assert reason_events(cluster, "ReplicasOverridden") == []

    # An operator-scaled pool handed to an HPA: the operator lets go of replicas
    # without changing them, then keeps its hands off.
    await eventually(lambda: pool_says(cluster, "io", currentReplicas=1, autoscaling="operator"))
    assert "docpipe-operator-autoscaler" in replica_owners(cluster, "io")
    await cluster.patch_pipeline("docs", {"spec": {"pools": {"io": {"autoscaling": "external"}}}})
    await eventually(lambda: pool_says(cluster, "io", autoscaling="external"))
    await eventually(lambda: not replica_owners(cluster, "io") & {"docpipe-operator-autoscaler"})
    assert replica_owners(cluster, "io") == set()
    assert replicas(cluster, "io") == 1, "released, not removed"
    await scale_by_hand(cluster, "io", 3)
    await eventually(lambda: pool_says(cluster, "io", currentReplicas=3))

    # And back: the operator's autoscaler takes replicas over at their current value.
    await cluster.patch_pipeline("docs", {"spec": {"pools": {"io": {"autoscaling": "operator"}}}})
    await eventually(lambda: "docpipe-operator-autoscaler" in replica_owners(cluster, "io"))
    await eventually(lambda: pool_says(cluster, "io", autoscaling="operator"))
    assert replicas(cluster, "io") == 3, "the scale-down window starts afresh"
    assert reason_events(cluster, "ReplicasOverridden") == []


async def test_pools_get_the_disruption_budgets_they_ask_for(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    """full.yaml's workflow pool (minReplicas 2) keeps one pod; io gets the default
    budget once it runs two; a budget turned off is deleted."""
    await cluster.create_pipeline(pipeline("docs", temporal.address))
    workflow = await eventually(lambda: cluster.get(BUDGETS, "docs-workflow"))
    assert workflow["spec"]["minAvailable"] == 1
    (owner,) = workflow["metadata"]["ownerReferences"]
    assert owner["uid"] == cluster.pipeline("docs")["metadata"]["uid"]  # type: ignore[index]
    assert cluster.get(BUDGETS, "docs-io") is None, "one replica: no budget by default"

    await cluster.patch_pipeline(
        "docs",
        {
            "spec": {
                "pools": {
                    "io": {"minReplicas": 2},
                    "workflow": {"podDisruptionBudget": {"enabled": False}},
                }
            }
        },
    )
    io = await eventually(lambda: cluster.get(BUDGETS, "docs-io"))
    assert io["spec"]["maxUnavailable"] == 1
    await eventually(lambda: cluster.get(BUDGETS, "docs-workflow") is None)
    await eventually(  # the Event is posted when the handler returns
        lambda: any(
            "deleted" in event["message"]
            and "PodDisruptionBudget/docs-workflow" in event["message"]
            for event in cluster.events()
        )
    )
    rules = deploy_rbac_rules()
    assert [call for call in cluster.api.calls if not granted(rules, *call)] == []
    assert ("policy", "poddisruptionbudgets", "delete") in cluster.api.calls
