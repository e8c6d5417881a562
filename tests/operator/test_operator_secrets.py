"""The operator reads Secrets (the Temporal API key, the mTLS client certificate)
and must never repeat them: not in its logs at DEBUG, not in Events, not in
the DocumentPipeline's status, not in the Deployments it writes (those refer
to the Secrets; the kubelet resolves them).

The pipeline's Temporal is a dev server behind a TLS proxy that demands a
client certificate from the test's CA, so "TemporalReachable" proves the
operator really read the TLS Secret and connected with it.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
from operator_harness import ALLOWED, NAMESPACE, Cluster, eventually, running_operator
from test_operator import deploy_rbac_rules, granted, pipeline
from test_operator_faults import condition
from tls_kit import SERVER_NAME, mtls_temporal

from docpipe.local.devstack import TemporalServer
from docpipe_operator import POOLS

API_KEY = "op-api-key-Rk58wQz2TESTONLY"


def forms(secret: str) -> set[str]:
    """The secret as itself and base64-encoded (how a Secret's data travels)."""
    encoded = base64.b64encode(secret.encode()).decode()
    return {secret, encoded, encoded.rstrip("=")}


async def add_secret(cluster: Cluster, name: str, data: dict[str, bytes], kind: str) -> None:
    await cluster.request(
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": kind,
            "metadata": {"name": name, "labels": ALLOWED},
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
        },
    )


async def test_the_operator_connects_with_secret_material_and_never_repeats_it(
    cluster: Cluster,
    temporal: TemporalServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with mtls_temporal(tmp_path / "pki", temporal.address) as (certs, proxy):
        await add_secret(cluster, "temporal", {"api-key": API_KEY.encode()}, "Opaque")
        await add_secret(
            cluster,
            "temporal-tls",
            {
                "ca.crt": certs.ca.read_bytes(),
                "tls.crt": certs.client_cert.read_bytes(),
                "tls.key": certs.client_key.read_bytes(),
            },
            "kubernetes.io/tls",
        )
        key_file = certs.client_key.read_text()
        key_material = key_file.splitlines()[1]
        body = pipeline("docs", proxy.address)
        body["spec"]["temporal"] |= {
            "apiKeySecretRef": {"name": "temporal"},
            "tlsSecretRef": {"name": "temporal-tls"},
            "serverName": SERVER_NAME,
        }
        async with running_operator():
            await cluster.create_pipeline(body)
            await eventually(
                lambda: (
                    condition(cluster.pipeline("docs"), "TemporalReachable")["status"] == "True"
                ),
                timeout=30,
            )
            assert proxy.accepted >= 1
            await eventually(lambda: cluster.events("WorkloadsCreated"))

    # The worker pods get references and mounted files, never the values.
    cpu = cluster.deployment("docs-cpu")
    assert cpu is not None
    pod = cpu["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["TEMPORAL_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "temporal",
        "key": "api-key",
    }
    assert env["TEMPORAL_TLS_KEY_PATH"]["value"] == "/etc/docpipe/temporal-tls/tls.key"
    assert env["TEMPORAL_TLS_SERVER_NAME"]["value"] == SERVER_NAME
    (tls_volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert tls_volume["secret"]["secretName"] == "temporal-tls"

    written = json.dumps(
        {
            "status": cluster.pipeline("docs")["status"],  # type: ignore[index]
            "events": cluster.events(),
            "deployments": [cluster.deployment(f"docs-{kind}") for kind in POOLS],
            "services": [cluster.service(f"docs-{kind}-metrics") for kind in POOLS],
        }
    )
    logged = caplog.text
    assert "kopf" in logged and "DEBUG" in logged  # the operator did log, at DEBUG
    leaks = [
        f"{name} in {where}"
        for name, secret in {
            "API key": API_KEY,
            "TLS private key": key_material,
            "TLS private key file": key_file,
        }.items()
        for where, text in {"objects": written, "logs": logged}.items()
        if any(form in text for form in forms(secret))
    ]
    assert leaks == []

    # Least privilege: both Secrets were read by name, which the RBAC role grants; none
    # was listed or watched (a list would hand the operator every Secret in the namespace).
    secret_verbs = {verb for _, resource, verb in cluster.api.calls if resource == "secrets"}
    assert secret_verbs == {"get"}
    rules = deploy_rbac_rules()
    assert [call for call in cluster.api.calls if not granted(rules, *call)] == []
