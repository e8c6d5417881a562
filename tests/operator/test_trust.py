"""The trust model (trust.py), rule by rule: what a DocumentPipeline's author may
make the operator do with the operator's own rights. Pure functions, no cluster."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pipeline_examples import example

from docpipe_operator import POOLS, resources
from docpipe_operator.config import OperatorConfig
from docpipe_operator.spec import parse
from docpipe_operator.trust import (
    ALLOW_LABEL,
    TrustPolicy,
    image_allowed,
    secret_allowed,
    secret_problems,
    secret_uses,
    service_account_allowed,
    workload_problems,
)

FULL = example("full")
LABELLED = {ALLOW_LABEL: "true"}
POLICY = TrustPolicy(
    allowed_images=("ghcr.io/example/docpipe-*",),
    allowed_service_accounts=("docpipe-*",),
    operator_namespace="docpipe-system",
)


def full_spec(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(FULL["spec"])
    spec.update(changes)
    return spec


# ----------------------------------------------------------------- Secrets


def test_every_secret_a_pod_or_the_operator_would_use_is_found() -> None:
    spec = full_spec(
        env=[
            {"name": "PLAIN", "value": "x"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "ci-token", "key": "t"}}},
            {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
        ],
        envFrom=[{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "shared"}}],
    )
    spec["temporal"]["tlsSecretRef"] = {"name": "temporal-client"}
    spec["pools"]["gpu"]["env"].append(
        {"name": "HF", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    )
    uses = {(use.name, use.field) for use in secret_uses(parse(spec))}
    assert uses == {
        ("temporal-cloud", "spec.temporal.apiKeySecretRef"),
        ("temporal-client", "spec.temporal.tlsSecretRef"),
        ("docpipe-s3", "spec.s3.credentialsSecretRef"),
        ("docpipe-postgres", "spec.metadataDb.credentialsSecretRef"),
        ("docpipe-chroma", "spec.vectorDb.credentialsSecretRef"),
        ("ci-token", "spec.env[TOKEN]"),
        ("shared", "spec.envFrom[1]"),
        ("hf", "spec.pools.gpu.env[HF]"),
        ("docpipe-webhook", "spec.pools.io.envFrom[0]"),
    }


def test_the_found_secrets_are_exactly_those_the_rendered_pods_reference() -> None:
    """No Secret reaches a worker pod without passing through the check."""
    spec = full_spec(
        env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "ci-token", "key": "t"}}}]
    )
    spec["temporal"]["tlsSecretRef"] = {"name": "temporal-client"}
    parsed = parse(spec)
    body = {"metadata": {"name": "docs", "namespace": "docpipe", "uid": "u"}}
    referenced: set[str] = set()
    for kind in POOLS:
        pod = resources.deployment(body, parsed, kind)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        for item in container["env"]:
            if ref := (item.get("valueFrom") or {}).get("secretKeyRef"):
                referenced.add(ref["name"])
        for item in container.get("envFrom", []):
            if ref := item.get("secretRef"):
                referenced.add(ref["name"])
        referenced |= {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert referenced == {use.name for use in secret_uses(parsed)}


def test_a_secret_is_usable_only_when_its_owner_labelled_it() -> None:
    assert secret_allowed(LABELLED, "docpipe", POLICY)
    assert not secret_allowed({}, "docpipe", POLICY)
    assert not secret_allowed(None, "docpipe", POLICY)
    assert not secret_allowed({ALLOW_LABEL: "yes"}, "docpipe", POLICY)
    assert not secret_allowed({"docpipe.io/allow": "true"}, "docpipe", POLICY)


def test_secrets_in_the_operators_own_namespace_need_no_label() -> None:
    assert secret_allowed({}, "docpipe-system", POLICY)
    assert not secret_allowed({}, "docpipe-system", TrustPolicy())  # no namespace configured
    uses = secret_uses(parse(full_spec()))
    labels = {use.name: None for use in uses}
    assert secret_problems(uses, labels, "docpipe-system", POLICY) == []


def test_an_unlabelled_or_missing_secret_is_refused_by_name_and_field() -> None:
    uses = secret_uses(parse(full_spec()))
    labels: dict[str, dict[str, str] | None] = {
        "temporal-cloud": {},
        "docpipe-s3": None,
        "docpipe-postgres": LABELLED,
        "docpipe-chroma": {"app": "chroma"},
        "docpipe-webhook": LABELLED,
    }
    assert secret_problems(uses, labels, "docpipe", POLICY) == [
        "secret temporal-cloud (spec.temporal.apiKeySecretRef) is not labelled "
        'docpipe.io/allow-reference: "true"; its owner must label it before a pipeline '
        "may use it",
        "secret docpipe-s3 (spec.s3.credentialsSecretRef) does not exist; create it with "
        'the label docpipe.io/allow-reference: "true"',
        "secret docpipe-chroma (spec.vectorDb.credentialsSecretRef) is not labelled "
        'docpipe.io/allow-reference: "true"; its owner must label it before a pipeline '
        "may use it",
    ]


# -------------------------------------------------------- images and accounts


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("ghcr.io/example/docpipe-cpu:0.1.0", True),
        ("ghcr.io/example/docpipe-io@sha256:" + "a" * 64, True),
        ("ghcr.io/example/other:1", False),
        ("docker.io/attacker/docpipe-cpu:0.1.0", False),
        ("ghcr.io/example/docpipe-cpu:0.1.0 ", False),  # not a reference the kubelet reads
        ("ghcr.io/example/docpipe-cpu:bad tag", False),
        ("ghcr.io/example/docpipe-cpu@sha256:short", False),
    ],
)
def test_images_must_match_an_allowed_pattern(image: str, allowed: bool) -> None:
    assert image_allowed(image, POLICY) is allowed


def test_no_pattern_configured_allows_no_image() -> None:
    assert not image_allowed("ghcr.io/example/docpipe-cpu:0.1.0", TrustPolicy())


def test_service_accounts_default_only_unless_allowed() -> None:
    assert service_account_allowed(None, TrustPolicy())
    assert service_account_allowed("default", TrustPolicy())
    assert not service_account_allowed("docpipe-gpu", TrustPolicy())
    assert service_account_allowed("docpipe-gpu", POLICY)
    assert not service_account_allowed("cluster-admin-sa", POLICY)


def test_workload_problems_name_the_pool_and_the_setting_to_widen() -> None:
    spec = full_spec()
    spec["pools"]["cpu"]["image"] = "docker.io/attacker/exfil:1"
    spec["pools"]["gpu"]["serviceAccountName"] = "ci-deployer"
    assert workload_problems(parse(spec), POLICY) == [
        "spec.pools.cpu.image 'docker.io/attacker/exfil:1' is not allowed "
        "(DOCPIPE_OPERATOR_ALLOWED_IMAGES: ghcr.io/example/docpipe-*)",
        "spec.pools.gpu.serviceAccountName 'ci-deployer' is not allowed "
        "(DOCPIPE_OPERATOR_ALLOWED_SERVICE_ACCOUNTS: docpipe-*)",
    ]
    assert workload_problems(parse(full_spec()), POLICY) == []


def test_the_policy_comes_from_the_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCPIPE_OPERATOR_ALLOWED_IMAGES", "ghcr.io/a/*, ghcr.io/b/x:* ,")
    monkeypatch.setenv("DOCPIPE_OPERATOR_ALLOWED_SERVICE_ACCOUNTS", "docpipe-gpu")
    monkeypatch.setenv("DOCPIPE_OPERATOR_OWN_NAMESPACE", "docpipe-system")
    assert OperatorConfig().trust() == TrustPolicy(
        allowed_images=("ghcr.io/a/*", "ghcr.io/b/x:*"),
        allowed_service_accounts=("docpipe-gpu",),
        operator_namespace="docpipe-system",
    )


def test_by_default_nothing_beyond_the_default_account_is_trusted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("ALLOWED_IMAGES", "ALLOWED_SERVICE_ACCOUNTS", "OWN_NAMESPACE"):
        monkeypatch.delenv(f"DOCPIPE_OPERATOR_{name}", raising=False)
    policy = OperatorConfig().trust()
    assert policy.allowed_images == () and policy.allowed_service_accounts == ()
