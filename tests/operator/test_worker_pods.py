"""The worker pods the operator generates: hardened, and wired for Temporal mTLS.

Pure functions of the spec (resources.py), so these tests need no cluster:
every pool's pod runs as the images' non-root user on a read-only root
filesystem with emptyDirs where workers write; a ``temporal.tlsSecretRef``
mounts the Secret read-only and points the TEMPORAL_TLS_* settings at it,
and those settings load (config.py) into the TLS config the workers use.
"""

from __future__ import annotations

import base64
import copy
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from crd_admission import admit
from pipeline_examples import example

from docpipe.config import load_settings
from docpipe_operator import POOLS, crd, reconcile, resources
from docpipe_operator.kube import Kube
from docpipe_operator.spec import parse

FULL = example("full")
OWNER = {**FULL["metadata"], "namespace": "docpipe", "uid": "0000-test"}


def manifests(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    body = {**FULL, "metadata": OWNER, "spec": spec}
    return {kind: resources.deployment(body, parse(spec), kind) for kind in POOLS}


def with_temporal(**temporal: Any) -> dict[str, Any]:
    spec = copy.deepcopy(FULL["spec"])
    spec["temporal"] = {"address": "temporal.internal:7233", **temporal}
    return spec


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("kind", POOLS)
def test_every_worker_pod_is_non_root_read_only_and_unprivileged(kind: str) -> None:
    pod = manifests(FULL["spec"])[kind]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # Where workers write: /tmp (easyocr's network dir, spooled uploads) and ~/.cache.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/tmp", "/home/docpipe/.cache"):
        assert volumes[mounts[path]] == {"name": mounts[path], "emptyDir": {}}


@pytest.mark.parametrize("kind", POOLS)
def test_no_worker_pod_gets_a_service_account_token(kind: str) -> None:
    """Workers never call the Kubernetes API; code that gets into one (a hostile
    document, a compromised dependency) must not find a token to act with, even
    when the pool names a ServiceAccount."""
    spec = copy.deepcopy(FULL["spec"])
    spec["pools"][kind]["serviceAccountName"] = "docpipe-worker"
    pod = manifests(spec)[kind]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "docpipe-worker"


def test_without_a_tls_secret_nothing_is_mounted_and_no_tls_paths_are_set() -> None:
    for deployment in manifests(with_temporal()).values():
        env = env_of(deployment)
        assert env["TEMPORAL_TLS"]["value"] == "false"
        assert not [name for name in env if name.startswith("TEMPORAL_TLS_")]
        assert not [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v]


@pytest.mark.parametrize("kind", POOLS)
def test_a_tls_secret_is_mounted_read_only_and_named_by_the_worker_settings(kind: str) -> None:
    spec = with_temporal(tlsSecretRef={"name": "temporal-client"}, serverName="temporal.example")
    deployment = manifests(spec)[kind]
    pod = deployment["spec"]["template"]["spec"]
    (tls,) = [v for v in pod["volumes"] if "secret" in v]
    assert tls["secret"] == {
        "secretName": "temporal-client",
        "defaultMode": 0o440,
        "items": [
            {"key": "tls.crt", "path": "tls.crt"},
            {"key": "tls.key", "path": "tls.key"},
            {"key": "ca.crt", "path": "ca.crt"},
        ],
    }
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == tls["name"]]
    assert mount == {
        "name": tls["name"],
        "mountPath": "/etc/docpipe/temporal-tls",
        "readOnly": True,
    }
    env = {name: item.get("value") for name, item in env_of(deployment).items()}
    assert env["TEMPORAL_TLS"] == "true"
    assert env["TEMPORAL_TLS_CA_PATH"] == "/etc/docpipe/temporal-tls/ca.crt"
    assert env["TEMPORAL_TLS_CERT_PATH"] == "/etc/docpipe/temporal-tls/tls.crt"
    assert env["TEMPORAL_TLS_KEY_PATH"] == "/etc/docpipe/temporal-tls/tls.key"
    assert env["TEMPORAL_TLS_SERVER_NAME"] == "temporal.example"


def test_the_generated_tls_env_loads_into_the_workers_tls_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The names and paths the operator writes are the ones config.py reads: with the
    Secret's files where the kubelet would put them, the settings give an mTLS config."""
    spec = with_temporal(tlsSecretRef={"name": "temporal-client"}, serverName="temporal.example")
    env = env_of(manifests(spec)["io"])
    for key in ("ca.crt", "tls.crt", "tls.key"):
        (tmp_path / key).write_bytes(f"pem of {key}".encode())
    for name, item in env.items():
        if "value" in item:
            value = item["value"].replace("/etc/docpipe/temporal-tls", str(tmp_path))
            monkeypatch.setenv(name, value)
    tls = load_settings().temporal_connection().tls_config()
    assert not isinstance(tls, bool)
    assert (tls.server_root_ca_cert, tls.client_cert, tls.client_private_key) == (
        b"pem of ca.crt",
        b"pem of tls.crt",
        b"pem of tls.key",
    )
    assert tls.domain == "temporal.example"


def test_ca_false_verifies_the_server_with_the_system_cas() -> None:
    """Temporal Cloud mTLS: a client certificate, a publicly trusted server."""
    deployment = manifests(with_temporal(tlsSecretRef={"name": "cloud-client", "ca": False}))["cpu"]
    env = env_of(deployment)
    assert "TEMPORAL_TLS_CA_PATH" not in env
    assert "TEMPORAL_TLS_CERT_PATH" in env and "TEMPORAL_TLS_KEY_PATH" in env
    (tls,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert [item["key"] for item in tls["secret"]["items"]] == ["tls.crt", "tls.key"]


def test_the_crd_admits_tls_fields_and_defaults_ca_to_true() -> None:
    body = {**FULL, "spec": with_temporal(tlsSecretRef={"name": "c"}, serverName="t.example")}
    stored, errors = admit(crd.build(), body)
    assert errors == []
    assert stored["spec"]["temporal"]["tlsSecretRef"] == {"name": "c", "ca": True}
    _, errors = admit(crd.build(), {**FULL, "spec": with_temporal(tlsSecretRef={})})
    assert any("name" in error for error in errors)


class SecretsApi:
    """CoreV1Api's read_namespaced_secret over a dict of Secrets (data base64, as served)."""

    def __init__(self, secrets: dict[str, dict[str, bytes]]) -> None:
        self.secrets = secrets
        self.reads: list[str] = []

    async def read_namespaced_secret(self, name: str, namespace: str) -> SimpleNamespace:
        self.reads.append(name)
        data = {k: base64.b64encode(v).decode() for k, v in self.secrets[name].items()}
        labels = {"docpipe.io/allow-reference": "true"}  # their owner let pipelines use them
        return SimpleNamespace(data=data, metadata=SimpleNamespace(labels=labels))


def kube_with(secrets: dict[str, dict[str, bytes]]) -> tuple[Kube, SecretsApi]:
    """The operator's real Kube layer, its Secret reads answered from ``secrets``."""
    kube = Kube.__new__(Kube)
    kube.core = SecretsApi(secrets)  # type: ignore[assignment]
    return kube, kube.core  # type: ignore[return-value]


async def test_the_operator_connects_with_the_same_secret_material() -> None:
    kube, api = kube_with(
        {
            "client": {"ca.crt": b"CA", "tls.crt": b"CERT", "tls.key": b"KEY"},
            "cloud": {"api-key": b"k-123"},
        }
    )
    spec = parse(
        with_temporal(
            tlsSecretRef={"name": "client"},
            serverName="t.example",
            apiKeySecretRef={"name": "cloud"},
        )
    )
    where = await reconcile.endpoint(kube, "docpipe", spec)
    assert api.reads == ["cloud", "client"]
    assert (where.server_root_ca_cert, where.client_cert, where.client_private_key) == (
        b"CA",
        b"CERT",
        b"KEY",
    )
    assert (where.api_key, where.server_name, where.uses_tls) == ("k-123", "t.example", True)
    assert "KEY" not in repr(where) and "k-123" not in repr(where)


async def test_a_tls_secret_without_its_key_names_the_key_not_the_values() -> None:
    kube, _ = kube_with({"client": {"ca.crt": b"CA-VALUE", "tls.crt": b"CERT-VALUE"}})
    spec = parse(with_temporal(tlsSecretRef={"name": "client"}))
    with pytest.raises(KeyError) as error:
        await reconcile.endpoint(kube, "docpipe", spec)
    assert "Secret docpipe/client has no key tls.key" in str(error.value)
    assert "VALUE" not in str(error.value)


def test_kubernetes_client_response_bodies_are_never_logged() -> None:
    """kubernetes_asyncio logs each response body (a Secret's data too) at DEBUG."""
    import docpipe_operator.kube  # noqa: F401  (pins the level)

    assert not logging.getLogger("kubernetes_asyncio.client.rest").isEnabledFor(logging.DEBUG)
