"""The plain manifests in deploy/ (operator, RBAC, kopf peering) are valid
Kubernetes, and the operator's process settings mean what deploy/ says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from docpipe_operator.__main__ import run_kwargs
from docpipe_operator.config import OperatorConfig

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = sorted(
    [
        *(REPO / "deploy" / "operator").glob("*.yaml"),
        *(REPO / "deploy" / "rbac").glob("*.yaml"),
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
    for binding in documents(REPO / "deploy" / "rbac" / "clusterrolebinding.yaml"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": "docpipe-system"}
        ]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "docpipe_operator"]


def test_cluster_wide_with_peering_by_default() -> None:
    config = OperatorConfig(priority=7)
    assert run_kwargs(config) == {
        "clusterwide": True,
        "namespaces": [],
        "standalone": False,
        "priority": 7,
        "peering_name": "docpipe",
        "liveness_endpoint": "http://0.0.0.0:8080/healthz",
    }


def test_namespaces_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCPIPE_OPERATOR_NAMESPACES", "docpipe, search ,")
    monkeypatch.setenv("DOCPIPE_OPERATOR_STANDALONE", "true")
    kwargs = run_kwargs(OperatorConfig())
    assert kwargs["namespaces"] == ["docpipe", "search"]
    assert kwargs["clusterwide"] is False
    assert kwargs["standalone"] is True
    assert "peering_name" not in kwargs


def test_each_replica_draws_its_own_peering_priority() -> None:
    """kopf freezes every replica when two share a priority."""
    priorities = {OperatorConfig().priority for _ in range(20)}
    assert len(priorities) > 1
