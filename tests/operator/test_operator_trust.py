"""The operator is no confused deputy: the real kopf operator against the emulated
API server refuses a DocumentPipeline that asks it to use a Secret whose owner did
not label it for docpipe, to run an image outside its allowlist, or to run under a
ServiceAccount outside its allowlist. A refused pipeline gets a condition and a
Warning that say why, and nothing is rendered with what it named."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from operator_harness import ALLOWED, NAMESPACE, Cluster, eventually, running_operator
from test_operator import condition, creates, pipeline, pools, reason_events

from docpipe.local.devstack import TemporalServer
from docpipe_operator import handlers

WORKER_IMAGE = "ghcr.io/example/docpipe-cpu:0.1.0"


def add_secret(cluster: Cluster, name: str, labels: dict[str, str] | None = None) -> None:
    """A Secret as its owner stored it (the test plays the namespace's admin)."""
    cluster.api.objects["v1/secrets", NAMESPACE, name] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {}},
        "data": {"api-key": "c2VjcmV0", "password": "aHVudGVyMg=="},
    }


def label(cluster: Cluster, name: str) -> None:
    cluster.api.objects["v1/secrets", NAMESPACE, name].patch({"metadata": {"labels": ALLOWED}})


def phase(cluster: Cluster, name: str = "docs") -> str | None:
    return ((cluster.pipeline(name) or {}).get("status") or {}).get("phase")


def image_of(cluster: Cluster, deployment: str) -> str:
    return cluster.deployment(deployment)["spec"]["template"]["spec"]["containers"][0]["image"]  # type: ignore[index]


async def test_unlabelled_secrets_are_refused_until_their_owner_labels_them(
    cluster: Cluster, temporal: TemporalServer
) -> None:
    """The API key and an env secretKeyRef name Secrets nobody labelled: nothing is
    created, Ready says which Secrets and why, one Warning. Once the owner labels
    them, the operator notices on its own and rolls the pipeline out."""
    add_secret(cluster, "temporal")
    add_secret(cluster, "cluster-admin-kubeconfig")
    body = pipeline("docs", temporal.address)
    body["spec"]["temporal"]["apiKeySecretRef"] = {"name": "temporal"}
    body["spec"]["env"].append(
        {
            "name": "STOLEN",
            "valueFrom": {"secretKeyRef": {"name": "cluster-admin-kubeconfig", "key": "password"}},
        }
    )
    async with running_operator():
        await cluster.create_pipeline(body)
        warning = await eventually(lambda: reason_events(cluster, "NotAllowed"))
        assert "secret temporal (spec.temporal.apiKeySecretRef) is not labelled" in warning[0]
        assert "secret cluster-admin-kubeconfig (spec.env[STOLEN]) is not labelled" in warning[0]
        assert 'docpipe.io/allow-reference: "true"' in warning[0]
        await eventually(lambda: phase(cluster) == "Invalid")
        ready = condition(cluster.pipeline("docs"), "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "NotAllowed")
        assert "cluster-admin-kubeconfig" in ready["message"]
        await asyncio.sleep(2)  # several timer rounds, each checking again
        assert creates(cluster) == 0, "something was rendered with an unlabelled Secret"
        assert len(reason_events(cluster, "NotAllowed")) == 1, "one Warning per refusal"
        assert phase(cluster) == "Invalid"

        label(cluster, "temporal")
        label(cluster, "cluster-admin-kubeconfig")
        await eventually(lambda: cluster.deployment("docs-io") is not None)
        await eventually(lambda: phase(cluster) != "Invalid")
        await eventually(
            lambda: condition(cluster.pipeline("docs"), "Ready")["reason"] != "NotAllowed"
        )
    secret_verbs = {verb for _, resource, verb in cluster.api.calls if resource == "secrets"}
    assert secret_verbs == {"get"}, "Secrets are read by name, never listed"


async def test_a_missing_secret_is_refused_until_it_exists_labelled(
    cluster: Cluster, temporal: TemporalServer
) -> None:
    body = pipeline("docs", temporal.address)
    body["spec"]["pools"]["io"]["envFrom"] = [{"secretRef": {"name": "created-later"}}]
    async with running_operator():
        await cluster.create_pipeline(body)
        warning = await eventually(lambda: reason_events(cluster, "NotAllowed"))
        assert "secret created-later (spec.pools.io.envFrom[0]) does not exist" in warning[0]
        add_secret(cluster, "created-later")  # unlabelled: still refused
        await asyncio.sleep(1.5)
        assert creates(cluster) == 0
        label(cluster, "created-later")
        await eventually(lambda: cluster.deployment("docs-io") is not None)


async def test_an_image_or_service_account_outside_the_allowlist_is_never_rendered(
    cluster: Cluster, temporal: TemporalServer
) -> None:
    """A running pipeline updated to an attacker's image and a privileged account:
    refused, and its Deployments keep what they had."""
    async with running_operator():
        await cluster.create_pipeline(pipeline("docs", temporal.address))
        await eventually(lambda: pools(cluster, "docs")["io"]["currentReplicas"] == 1)
        await asyncio.sleep(1)  # the first rounds have settled the replicas
        assert image_of(cluster, "docs-cpu") == WORKER_IMAGE
        before = {
            name: cluster.versions("apps/v1/deployments", name) for name in ("docs-cpu", "docs-gpu")
        }
        await cluster.patch_pipeline(
            "docs",
            {
                "spec": {
                    "pools": {
                        "cpu": {"image": "docker.io/attacker/exfiltrate:1"},
                        "gpu": {"serviceAccountName": "ci-deployer"},
                    }
                }
            },
        )
        warning = await eventually(lambda: reason_events(cluster, "NotAllowed"))
        assert "spec.pools.cpu.image 'docker.io/attacker/exfiltrate:1' is not allowed" in warning[0]
        assert "spec.pools.gpu.serviceAccountName 'ci-deployer' is not allowed" in warning[0]
        await eventually(lambda: phase(cluster) == "Invalid")
        await asyncio.sleep(1.5)
        assert image_of(cluster, "docs-cpu") == WORKER_IMAGE
        pod = cluster.deployment("docs-gpu")["spec"]["template"]["spec"]  # type: ignore[index]
        assert "serviceAccountName" not in pod
        assert {name: cluster.versions("apps/v1/deployments", name) for name in before} == before, (
            "a refused spec patched or scaled a Deployment"
        )


async def test_secrets_in_the_operators_own_namespace_need_no_label(
    cluster: Cluster, temporal: TemporalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever may create pipelines where the operator runs is trusted with its Secrets."""
    monkeypatch.setattr(
        handlers, "TRUST", dataclasses.replace(handlers.TRUST, operator_namespace=NAMESPACE)
    )
    add_secret(cluster, "temporal")
    body = pipeline("docs", temporal.address)
    body["spec"]["temporal"]["apiKeySecretRef"] = {"name": "temporal"}
    async with running_operator():
        await cluster.create_pipeline(body)
        await eventually(lambda: cluster.deployment("docs-io") is not None)
    assert not reason_events(cluster, "NotAllowed")
