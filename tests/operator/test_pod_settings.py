"""Per-pool pod settings, PodDisruptionBudgets and who owns replicas, as rendered
(pure: spec in, manifests out, each validated against the Kubernetes schemas)."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
from crd_admission import admit
from pipeline_examples import example

from docpipe_operator import POOLS, crd, resources, trust
from docpipe_operator.field_managers import FIELD_MANAGER, SCALER_FIELD_MANAGER, release_replicas
from docpipe_operator.spec import is_paused, parse, problems

MINIMAL = example("minimal")
K8S_VERSION = "1.37.0"


def body(**pools: dict[str, Any]) -> dict[str, Any]:
    """The minimal example with ``pools`` merged into its pools, with a uid."""
    found = copy.deepcopy(MINIMAL)
    found["metadata"] |= {"uid": "u-1", "namespace": "docpipe"}
    for kind, fields in pools.items():
        found["spec"]["pools"][kind] |= fields
    return found


def built(cr: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = resources.manifests(cr, parse(cr["spec"], cr["metadata"]["name"]))
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    return manifests


def deployment(cr: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(m for m in built(cr) if m["kind"] == "Deployment" and kind in m["metadata"]["name"])


def pod(cr: dict[str, Any], kind: str) -> dict[str, Any]:
    return deployment(cr, kind)["spec"]["template"]["spec"]


def env(cr: dict[str, Any], kind: str) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in pod(cr, kind)["containers"][0]["env"]}


def budgets(cr: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["name"]: m["spec"] for m in built(cr) if m["kind"] == "PodDisruptionBudget"
    }


def admitted(cr: dict[str, Any]) -> list[str]:
    """The API server's (CRD schema and CEL) errors, then the operator's own problems."""
    _, errors = admit(crd.build(), cr)
    return [*errors, *problems(cr["spec"], cr["metadata"]["name"])]


# ------------------------------------------------------------ who owns replicas


def test_an_operator_pool_renders_replicas_and_says_who_owns_them() -> None:
    found = deployment(body(), "cpu")
    assert found["spec"]["replicas"] == 1
    assert found["metadata"]["annotations"][resources.AUTOSCALING_ANNOTATION] == "operator"


def test_an_external_pool_renders_no_replicas_at_all() -> None:
    """An HPA or KEDA owns them: not even the first apply sets them."""
    found = deployment(body(cpu={"autoscaling": "external"}), "cpu")
    assert "replicas" not in found["spec"]
    assert found["metadata"]["annotations"][resources.AUTOSCALING_ANNOTATION] == "external"


def test_switching_the_mode_changes_the_fingerprint() -> None:
    """Otherwise the switch would never reach the Deployment (the hash ignores replicas)."""
    hashes = {
        deployment(body(cpu={"autoscaling": mode}), "cpu")["metadata"]["annotations"][
            resources.SPEC_HASH_ANNOTATION
        ]
        for mode in ("operator", "external")
    }
    assert len(hashes) == 2


def test_an_unknown_mode_is_refused() -> None:
    assert any("autoscaling" in e for e in admitted(body(cpu={"autoscaling": "keda"})))


def managed(manager: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"manager": manager, "operation": "Apply", "fieldsV1": fields}


def test_releasing_replicas_drops_only_the_operators_ownership_of_them() -> None:
    template = {"f:spec": {"f:replicas": {}, "f:template": {}}}
    entries = [
        managed(FIELD_MANAGER, template),
        managed(SCALER_FIELD_MANAGER, {"f:spec": {"f:replicas": {}}}),
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale"}
        | {"fieldsV1": {"f:spec": {"f:replicas": {}}}},
    ]
    released = release_replicas(entries)
    assert released == [
        managed(FIELD_MANAGER, {"f:spec": {"f:template": {}}}),
        entries[2],  # the HPA's stays; the scaler's entry owned nothing else: gone
    ]
    assert release_replicas(released) is None, "nothing left to release"


# -------------------------------------------------------- PodDisruptionBudgets


def test_a_budget_by_default_from_two_replicas_up() -> None:
    found = budgets(body(io={"minReplicas": 2, "maxReplicas": 5}))
    assert list(found) == ["docs-io"]
    assert found["docs-io"]["maxUnavailable"] == 1
    assert found["docs-io"]["selector"] == {
        "matchLabels": {"docpipe.io/pipeline": "docs", "docpipe.io/pool": "io"}
    }
    assert found["docs-io"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_a_budget_can_be_turned_off_or_on_and_sized() -> None:
    assert budgets(body(io={"minReplicas": 3, "podDisruptionBudget": {"enabled": False}})) == {}
    chosen = budgets(body(cpu={"podDisruptionBudget": {"enabled": True, "minAvailable": "50%"}}))
    assert chosen["docs-cpu"]["minAvailable"] == "50%"
    assert "maxUnavailable" not in chosen["docs-cpu"]


def test_a_budget_with_both_bounds_is_refused() -> None:
    cr = body(cpu={"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}})
    errors = admitted(cr)
    assert any("not both" in e for e in errors)
    assert any(e.startswith("spec.pools.cpu.podDisruptionBudget") for e in errors)


def test_budgets_the_spec_no_longer_asks_for_are_unwanted() -> None:
    cr = body(workflow={"minReplicas": 2})
    unwanted = resources.unwanted(cr, parse(cr["spec"]))
    assert ("PodDisruptionBudget", "docs-workflow") not in unwanted
    assert ("PodDisruptionBudget", "docs-cpu") in unwanted


def test_a_budget_is_owned_by_the_pipeline() -> None:
    found = next(
        m for m in built(body(io={"minReplicas": 2})) if m["kind"] == "PodDisruptionBudget"
    )
    (owner,) = found["metadata"]["ownerReferences"]
    assert owner["uid"] == "u-1" and owner["controller"] is True


# ------------------------------------------------------------------ pod fields


def test_topology_spread_without_a_selector_spreads_the_pools_own_pods() -> None:
    zone = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone"}
    mine = zone | {"whenUnsatisfiable": "ScheduleAnyway"}
    theirs = zone | {
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "x"}},
    }
    cr = body(cpu={"topologySpreadConstraints": [mine, theirs]})
    assert admitted(cr) == []
    first, second = pod(cr, "cpu")["topologySpreadConstraints"]
    assert first["labelSelector"] == {
        "matchLabels": {"docpipe.io/pipeline": "docs", "docpipe.io/pool": "cpu"}
    }
    assert second["labelSelector"] == {"matchLabels": {"app": "x"}}


def test_runtime_class_and_pod_annotations_reach_the_pods() -> None:
    cr = body(
        gpu={
            "runtimeClassName": "nvidia",
            "podAnnotations": {"team": "search", "prometheus.io/port": "1"},
        }
    )
    assert admitted(cr) == []
    assert pod(cr, "gpu")["runtimeClassName"] == "nvidia"
    annotations = deployment(cr, "gpu")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["team"] == "search"
    assert annotations["prometheus.io/port"] == "9100", "the scrape settings stay the operator's"
    assert "runtimeClassName" not in pod(cr, "cpu")


def test_extra_volumes_and_mounts_come_after_the_operators_own() -> None:
    cr = body(
        cpu={
            "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
            "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
        }
    )
    assert admitted(cr) == []
    spec = pod(cr, "cpu")
    assert [v["name"] for v in spec["volumes"]] == ["tmp", "cache", "podinfo", "models"]
    mounts = spec["containers"][0]["volumeMounts"]
    assert mounts[-1] == {"name": "models", "mountPath": "/models", "readOnly": True}


def test_every_worker_sees_its_own_annotations_for_the_drain_switch() -> None:
    """Drain before remove (cordon.py): the worker reads docpipe.io/drain from a
    downward API file, named by WORKER_POD_ANNOTATIONS_FILE."""
    cr = body()
    for kind in ("workflow", "cpu", "gpu", "io"):
        spec = pod(cr, kind)
        (podinfo,) = [v for v in spec["volumes"] if v["name"] == "podinfo"]
        assert podinfo["downwardAPI"]["items"] == [
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
        ]
        container = spec["containers"][0]
        assert {"name": "podinfo", "mountPath": "/etc/podinfo", "readOnly": True} in container[
            "volumeMounts"
        ]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["WORKER_POD_ANNOTATIONS_FILE"] == "/etc/podinfo/annotations"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"volumes": [{"name": "tmp", "emptyDir": {}}]}, "operator's own volume"),
        ({"volumeMounts": [{"name": "nowhere", "mountPath": "/x"}]}, "names no volume"),
    ],
)
def test_volumes_that_clash_or_mounts_of_nothing_are_refused(
    fields: dict[str, Any], expected: str
) -> None:
    assert any(expected in p for p in problems(body(cpu=fields)["spec"], "docs"))


def test_node_level_volumes_and_service_account_tokens_are_not_allowed() -> None:
    cr = body(
        cpu={
            "volumes": [
                {"name": "node", "hostPath": {"path": "/"}},
                {"name": "token", "projected": {"sources": [{"serviceAccountToken": {}}]}},
                {"name": "ok", "emptyDir": {}},
            ]
        }
    )
    refused = trust.workload_problems(parse(cr["spec"]), trust.TrustPolicy(("ghcr.io/*",)))
    assert len(refused) == 2
    assert "volumes[node]: hostPath is not allowed" in refused[0]
    assert "volumes[token]: projected serviceAccountToken" in refused[1]


def test_secret_volumes_follow_the_secret_rule() -> None:
    cr = body(
        io={
            "volumes": [
                {"name": "certs", "secret": {"secretName": "webhook-ca"}},
                {"name": "both", "projected": {"sources": [{"secret": {"name": "extra"}}]}},
            ]
        }
    )
    uses = {(u.name, u.field) for u in trust.secret_uses(parse(cr["spec"]))}
    assert ("webhook-ca", "spec.pools.io.volumes[certs]") in uses
    assert ("extra", "spec.pools.io.volumes[both]") in uses


# ------------------------------------------------------------------------- GPUs


def test_a_mig_profile_is_the_gpu_resource_requested() -> None:
    cr = body(gpu={"gpuResourceName": "nvidia.com/mig-1g.10gb", "gpusPerPod": 2})
    assert admitted(cr) == []
    container = pod(cr, "gpu")["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/mig-1g.10gb": 2}
    assert "NVIDIA_VISIBLE_DEVICES" not in env(cr, "gpu"), "the device plugin sets it"
    # The GPU nodes' taint keeps its usual key.
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod(
        cr, "gpu"
    )["tolerations"]


def test_a_malformed_gpu_resource_name_is_refused() -> None:
    assert admitted(body(gpu={"gpuResourceName": "gpu"}))


def test_pods_without_a_gpu_see_none_even_if_env_asks() -> None:
    """CUDA images set NVIDIA_VISIBLE_DEVICES=all: without a GPU request the pod must
    not get the node's GPUs outside the scheduler's accounting."""
    cr = body(cpu={"env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]})
    cr["spec"]["pools"]["gpu"]["gpusPerPod"] = 0
    for kind in POOLS:
        assert env(cr, kind)["NVIDIA_VISIBLE_DEVICES"] == "void", kind
    assert env(body(), "gpu").get("NVIDIA_VISIBLE_DEVICES") is None


# ------------------------------------------------------------------------ pause


@pytest.mark.parametrize(
    ("annotations", "paused"),
    [
        ({"docpipe.io/paused": "true"}, True),
        ({"docpipe.io/paused": "True"}, True),
        ({"docpipe.io/paused": "false"}, False),
        ({}, False),
        (None, False),
    ],
)
def test_the_pause_annotation(annotations: dict[str, str] | None, paused: bool) -> None:
    assert is_paused({"name": "docs", "annotations": annotations}) is paused
