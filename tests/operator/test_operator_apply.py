"""Owned objects equal what the spec renders: fields taken out of the spec leave
the live Deployment (server-side apply), replicas stay the autoscaler's."""

from __future__ import annotations

import copy

import server_side_apply as ssa
from operator_harness import NAMESPACE, Cluster, eventually, running_operator
from test_operator import pipeline, pools

from docpipe.local.devstack import TemporalServer
from docpipe_operator import resources
from docpipe_operator.spec import parse

REMOVE_GPU_PLACEMENT = {
    "spec": {
        "pools": {
            "gpu": {
                "nodeSelector": None,
                "tolerations": None,
                "priorityClassName": None,
                "gpusPerPod": 0,
            }
        }
    }
}


def gpu_pod(cluster: Cluster) -> dict:
    deployment = cluster.deployment("docs-gpu")
    assert deployment is not None
    return deployment["spec"]["template"]["spec"]


def placement_gone(cluster: Cluster) -> bool:
    pod = gpu_pod(cluster)
    limits = pod["containers"][0].get("resources", {}).get("limits", {})
    return (
        "nodeSelector" not in pod
        and "tolerations" not in pod
        and "priorityClassName" not in pod
        and "nvidia.com/gpu" not in limits
    )


async def test_fields_removed_from_the_spec_leave_the_deployment(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    await cluster.create_pipeline(pipeline("docs", temporal.address))
    await eventually(lambda: gpu_pod(cluster).get("nodeSelector"))
    await eventually(lambda: pools(cluster, "docs")["gpu"].get("desiredReplicas") is not None)
    # The operator scaled it meanwhile, or someone did: replicas are not the template's.
    await cluster.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/docs-cpu",
        {"spec": {"replicas": 1}},
        "application/merge-patch+json",
    )

    await cluster.patch_pipeline("docs", REMOVE_GPU_PLACEMENT)

    await eventually(lambda: placement_gone(cluster))
    env = {e["name"]: e.get("value") for e in gpu_pod(cluster)["containers"][0]["env"]}
    assert env["GPU_COUNT"] == "0"
    assert cluster.deployment("docs-cpu")["spec"]["replicas"] == 1  # type: ignore[index]
    assert "replicas" in cluster.deployment("docs-gpu")["spec"]  # type: ignore[index]


async def test_an_upgrade_from_merge_patches_removes_fields_too(
    cluster: Cluster, temporal: TemporalServer
) -> None:
    """Deployments an older operator created (POST, merge patches: owned by its
    user agent's manager) are taken over, so a removed field still goes."""
    created = await cluster.create_pipeline(pipeline("docs", temporal.address))
    spec = parse(created["spec"], "docs")
    for manifest in resources.manifests(created, spec):
        body = copy.deepcopy(manifest)
        body["metadata"] |= {"uid": f"uid-{body['metadata']['name']}", "resourceVersion": "1"}
        owned = {("OpenAPI-Generator", "Update"): ssa.field_set(body)}
        body["metadata"]["managedFields"] = ssa.managed_fields(owned, body["apiVersion"])
        plural = "apps/v1/deployments" if body["kind"] == "Deployment" else "v1/services"
        cluster.api.objects[plural, NAMESPACE, body["metadata"]["name"]] = body
    await cluster.patch_pipeline("docs", REMOVE_GPU_PLACEMENT)

    async with running_operator():
        await eventually(lambda: placement_gone(cluster))
        await eventually(lambda: pools(cluster, "docs")["gpu"].get("currentReplicas") is not None)
    owners = ssa.owners(cluster.deployment("docs-gpu"))  # type: ignore[arg-type]
    assert ("OpenAPI-Generator", "Update") not in owners
    assert ("spec", "replicas") in owners[("docpipe-operator-autoscaler", "Apply")]
