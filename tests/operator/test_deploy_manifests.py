"""The plain manifests in deploy/ (operator, RBAC, kopf peering, the cluster-wide
alternative) are valid Kubernetes, and the operator's process settings mean what
deploy/ says: namespaced, in the namespace the examples use, trusting only the
examples' images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from docpipe_operator.__main__ import run_kwargs
from docpipe_operator.config import OperatorConfig
from docpipe_operator.spec import parse
from docpipe_operator.trust import workload_problems

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = sorted(
    [
        *(REPO / "deploy" / "operator").glob("*.yaml"),
        *(REPO / "deploy" / "rbac").glob("*.yaml"),
        *(REPO / "deploy" / "cluster-wide").glob("*.yaml"),
        REPO / "deploy" / "crds" / "kopf-peering.yaml",
    ]
)
BUILTIN_GROUPS = ("v1", "apps/", "rbac.authorization.k8s.io/", "apiextensions.k8s.io/")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_deploy_manifests_are_valid_kubernetes(path: Path) -> None:
    for doc in documents(path):
        if doc["apiVersion"].startswith(BUILTIN_GROUPS):
            kubernetes_validate.validate(doc, "1.37.0", strict=True)
        else:  # kopf.dev peering objects: their CRD is in deploy/crds/kopf-peering.yaml
            assert doc["apiVersion"] == "kopf.dev/v1"


def test_the_operator_runs_as_the_service_account_the_roles_are_bound_to() -> None:
    (deployment,) = documents(REPO / "deploy" / "operator" / "deployment.yaml")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    bindings = [
        *(REPO / "deploy" / "rbac").glob("*binding.yaml"),
        REPO / "deploy" / "cluster-wide" / "clusterrolebinding.yaml",
    ]
    assert len(bindings) == 3
    for path in bindings:
        for binding in documents(path):
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": account, "namespace": "docpipe-system"}
            ]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "docpipe_operator"]


def config_of_deploy_operator(monkeypatch: pytest.MonkeyPatch) -> OperatorConfig:
    """The settings deploy/operator/deployment.yaml gives the operator, the downward API
    resolved as the kubelet would."""
    (deployment,) = documents(REPO / "deploy" / "operator" / "deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for item in container["env"]:
        if "valueFrom" in item:
            assert item["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
            monkeypatch.setenv(item["name"], deployment["metadata"]["namespace"])
        else:
            monkeypatch.setenv(item["name"], item["value"])
    return OperatorConfig()


def test_namespaced_in_its_own_namespace_by_default() -> None:
    """Cluster-wide only when asked for: the operator's rights should reach no further
    than the pipelines it serves."""
    config = OperatorConfig(priority=7, own_namespace="docpipe-system")
    assert run_kwargs(config) == {
        "clusterwide": False,
        "namespaces": ["docpipe-system"],
        "standalone": False,
        "priority": 7,
        "peering_name": "docpipe",
        "liveness_endpoint": "http://0.0.0.0:8080/healthz",
    }
    with pytest.raises(ValueError, match="DOCPIPE_OPERATOR_NAMESPACES"):
        run_kwargs(OperatorConfig(own_namespace=""))


def test_cluster_wide_when_asked_for() -> None:
    config = OperatorConfig(cluster_wide=True, own_namespace="docpipe-system")
    assert run_kwargs(config)["clusterwide"] is True
    assert run_kwargs(config)["namespaces"] == []
    with pytest.raises(ValueError, match="leave DOCPIPE_OPERATOR_NAMESPACES empty"):
        OperatorConfig(cluster_wide=True, namespaces=["docpipe"]).watched()  # type: ignore[arg-type]


def test_deploy_rbac_and_peering_cover_exactly_the_watched_namespaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = config_of_deploy_operator(monkeypatch)
    watched = config.watched()
    assert watched == ["docpipe"]
    rbac = [doc for path in (REPO / "deploy" / "rbac").glob("*.yaml") for doc in documents(path)]
    for kind in ("Role", "RoleBinding"):
        assert [d["metadata"]["namespace"] for d in rbac if d["kind"] == kind] == watched
    assert not [
        d
        for d in rbac
        if d["kind"] == "ClusterRoleBinding" and "discovery" not in d["metadata"]["name"]
    ]
    peering = documents(REPO / "deploy" / "operator" / "peering.yaml")
    assert [(p["kind"], p["metadata"]["namespace"]) for p in peering] == [
        ("KopfPeering", namespace) for namespace in watched
    ]
    namespaces = documents(REPO / "deploy" / "operator" / "namespace.yaml")
    assert set(watched) <= {n["metadata"]["name"] for n in namespaces}


@pytest.mark.parametrize(
    "example", sorted((REPO / "deploy" / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_the_examples_live_where_deploy_operator_looks_and_run_images_it_trusts(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_of_deploy_operator(monkeypatch)
    (pipeline,) = documents(example)
    assert pipeline["metadata"]["namespace"] in config.watched()
    assert workload_problems(parse(pipeline["spec"]), config.trust()) == []


def test_namespaces_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCPIPE_OPERATOR_NAMESPACES", "docpipe, search ,")
    monkeypatch.setenv("DOCPIPE_OPERATOR_STANDALONE", "true")
    monkeypatch.setenv("DOCPIPE_OPERATOR_OWN_NAMESPACE", "docpipe-system")
    kwargs = run_kwargs(OperatorConfig())
    assert kwargs["namespaces"] == ["docpipe", "search"]
    assert kwargs["clusterwide"] is False
    assert kwargs["standalone"] is True
    assert "peering_name" not in kwargs


def test_each_replica_draws_its_own_peering_priority() -> None:
    """kopf freezes every replica when two share a priority."""
    priorities = {OperatorConfig().priority for _ in range(20)}
    assert len(priorities) > 1
