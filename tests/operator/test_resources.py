"""The Deployments and Services the operator generates, validated offline
against the Kubernetes 1.37 schemas (kubernetes-validate, strict)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from docpipe_operator import POOLS, resources, worker_pod
from docpipe_operator.defaults import SHUTDOWN_MARGIN_S
from docpipe_operator.spec import parse

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {p.stem: p for p in (REPO / "deploy" / "examples").glob("*.yaml")}
K8S_VERSION = "1.37.0"
UID = "5d6c7a0e-1111-4c3e-9a00-000000000001"


def cr(example: str = "full") -> dict[str, Any]:
    body = yaml.safe_load(EXAMPLES[example].read_text())
    body["metadata"]["uid"] = UID
    return body


def built(body: dict[str, Any]) -> list[dict[str, Any]]:
    return resources.manifests(body, parse(body["spec"], body["metadata"]["name"]))


def by_name(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {
        item["name"]: item.get("value", item.get("valueFrom"))
        for item in container(deployment)["env"]
    }


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_every_generated_manifest_is_valid_kubernetes(example: str) -> None:
    manifests = built(cr(example))
    workloads = [m for m in manifests if m["kind"] != "PodDisruptionBudget"]
    assert len(workloads) == 2 * len(POOLS)
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_one_deployment_and_one_metrics_service_per_pool() -> None:
    names = {(m["kind"], m["metadata"]["name"]) for m in built(cr())}
    assert names == {
        *(("Deployment", f"docs-prod-{kind}") for kind in POOLS),
        *(("Service", f"docs-prod-{kind}-metrics") for kind in POOLS),
        ("PodDisruptionBudget", "docs-prod-workflow"),  # the one pool with minReplicas >= 2
    }


def test_everything_is_owned_by_the_pipeline() -> None:
    for manifest in built(cr()):
        assert manifest["metadata"]["namespace"] == "docpipe"
        (owner,) = manifest["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "docpipe.io/v1alpha1",
            "kind": "DocumentPipeline",
            "name": "docs-prod",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_recommended_labels_and_a_stable_selector() -> None:
    deployment = by_name(built(cr()), "Deployment", "docs-prod-cpu")
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "docpipe"
    assert labels["app.kubernetes.io/instance"] == "docs-prod"
    assert labels["app.kubernetes.io/component"] == "cpu-worker"
    assert labels["app.kubernetes.io/managed-by"] == "docpipe-operator"
    assert labels["team"] == "search"  # the CR's own labels are passed on
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {"docpipe.io/pipeline": "docs-prod", "docpipe.io/pool": "cpu"}
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("kind", POOLS)
def test_each_worker_runs_its_kind_with_a_grace_period_longer_than_its_shutdown(kind: str) -> None:
    deployment = by_name(built(cr()), "Deployment", f"docs-prod-{kind}")
    assert container(deployment)["command"] == ["docpipe", "worker", kind]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    assert int(env["WORKER_SHUTDOWN_GRACE_S"]) == grace - SHUTDOWN_MARGIN_S > 0


def test_the_gpu_pool_asks_for_gpus_on_gpu_nodes() -> None:
    deployment = by_name(built(cr()), "Deployment", "docs-prod-gpu")
    pod = deployment["spec"]["template"]["spec"]
    assert container(deployment)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"accelerator": "nvidia-tesla-v100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert len(pod["tolerations"]) == 1  # the example's own toleration is not doubled
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert env_of(deployment)["GPU_COUNT"] == "1"
    assert env_of(deployment)["MAX_CONCURRENT_GPU_ACTIVITIES_PER_GPU"] == "4"


def test_the_gpu_toleration_is_added_when_the_spec_has_none() -> None:
    deployment = by_name(built(cr("minimal")), "Deployment", "docs-gpu")
    assert deployment["spec"]["template"]["spec"]["tolerations"] == [worker_pod.GPU_TOLERATION]


def test_a_gpu_pool_without_gpus_runs_anywhere() -> None:
    body = cr("minimal")
    body["spec"]["pools"]["gpu"]["gpusPerPod"] = 0
    deployment = by_name(built(body), "Deployment", "docs-gpu")
    pod = deployment["spec"]["template"]["spec"]
    assert "tolerations" not in pod
    assert "nvidia.com/gpu" not in str(container(deployment).get("resources"))
    assert env_of(deployment)["GPU_COUNT"] == "0"


def test_cpu_and_io_pods_ask_for_no_gpu() -> None:
    for name in ("docs-prod-cpu", "docs-prod-io", "docs-prod-workflow"):
        deployment = by_name(built(cr()), "Deployment", name)
        assert "nvidia.com/gpu" not in str(deployment)


def test_workers_get_their_configuration_from_the_spec() -> None:
    env = env_of(by_name(built(cr()), "Deployment", "docs-prod-cpu"))
    assert env["TEMPORAL_HOST"] == "docpipe.a1b2c.tmprl.cloud:7233"
    assert env["TEMPORAL_NAMESPACE"] == "docpipe.a1b2c"
    assert env["TEMPORAL_TLS"] == "true"
    assert env["TEMPORAL_API_KEY"] == {"secretKeyRef": {"name": "temporal-cloud", "key": "api-key"}}
    assert env["CPU_TASK_QUEUE"] == "cpu-bound-queue"
    assert env["WORKFLOW_TASK_QUEUE"] == "document-pipeline-queue"
    assert env["S3_ENDPOINT"] == "https://s3.eu-west-1.amazonaws.com"
    assert env["S3_ACCESS_KEY"] == {"secretKeyRef": {"name": "docpipe-s3", "key": "access-key"}}
    assert env["METADATA_DB_PASSWORD"] == {
        "secretKeyRef": {"name": "docpipe-postgres", "key": "password"}
    }
    assert env["METADATA_DB_PORT"] == "5432"
    assert env["VECTOR_DB_URL"] == "http://chroma.databases.svc:8000"
    assert env["VECTOR_DB_TOKEN"] == {"secretKeyRef": {"name": "docpipe-chroma", "key": "token"}}
    assert env["VECTOR_DB_AUTH_HEADER"] == "Authorization"
    assert env["METRICS_PORT"] == "9100"
    assert env["SDK_METRICS_PORT"] == "9101"
    assert (
        env["WORKER_CPU_THREADS"] == "8"
    )  # the pool's concurrency, so the model and the worker agree
    assert env["DOWNLOAD_MAX_BYTES"] == "104857600"


def test_user_env_overrides_generated_env_by_name() -> None:
    body = cr()
    body["spec"]["pools"]["io"]["env"] = [{"name": "TEMPORAL_NAMESPACE", "value": "other"}]
    deployment = by_name(built(body), "Deployment", "docs-prod-io")
    names = [item["name"] for item in container(deployment)["env"]]
    assert names.count("TEMPORAL_NAMESPACE") == 1
    assert env_of(deployment)["TEMPORAL_NAMESPACE"] == "other"


def test_probes_and_metrics_ports() -> None:
    deployment = by_name(built(cr()), "Deployment", "docs-prod-io")
    worker = container(deployment)
    assert {p["name"]: p["containerPort"] for p in worker["ports"]} == {
        "metrics": 9100,
        "sdk-metrics": 9101,
    }
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_the_metrics_service_is_headless_over_the_pool() -> None:
    service = by_name(built(cr()), "Service", "docs-prod-gpu-metrics")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {
        "docpipe.io/pipeline": "docs-prod",
        "docpipe.io/pool": "gpu",
    }
    assert [p["port"] for p in service["spec"]["ports"]] == [9100, 9101]


def test_new_deployments_start_at_min_replicas_or_zero_for_scale_to_zero_pools() -> None:
    manifests = built(cr())
    assert by_name(manifests, "Deployment", "docs-prod-workflow")["spec"]["replicas"] == 2
    assert by_name(manifests, "Deployment", "docs-prod-gpu")["spec"]["replicas"] == 0


def test_the_spec_hash_is_stable_and_tracks_what_matters() -> None:
    first, again = built(cr()), built(cr())
    hashes = [m["metadata"]["annotations"][resources.SPEC_HASH_ANNOTATION] for m in first]
    assert hashes == [m["metadata"]["annotations"][resources.SPEC_HASH_ANNOTATION] for m in again]
    assert len(set(hashes)) == len(hashes)

    deployment = by_name(first, "Deployment", "docs-prod-cpu")
    scaled = copy.deepcopy(deployment)
    scaled["spec"]["replicas"] = 17
    assert resources.spec_hash(scaled) == resources.spec_hash(deployment)

    body = cr()
    body["spec"]["pools"]["cpu"]["image"] = "ghcr.io/example/docpipe-cpu:0.2.0"
    changed = by_name(built(body), "Deployment", "docs-prod-cpu")
    assert resources.spec_hash(changed) != resources.spec_hash(deployment)
