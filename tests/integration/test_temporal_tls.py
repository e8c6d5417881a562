"""Temporal over mTLS, end to end: docpipe's one connect path against a server
that demands a client certificate.

``temporal server start-dev`` speaks plain gRPC, so the test puts a small
TLS-terminating proxy in front of it (asyncio, ALPN h2, ``CERT_REQUIRED``)
with a CA, a server and a client certificate made here (tests/support/tls_kit.py).
A client configured through the TEMPORAL_TLS_* settings connects and
describes the namespace; one without a client certificate, or trusting the
wrong CA, is refused.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from tls_kit import make_certificates, mtls_temporal, tls_env

from docpipe.config import ConfigError, load_settings

pytestmark = pytest.mark.integration


async def _namespace_answers(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    connection = load_settings().temporal_connection()
    client = await asyncio.wait_for(connection.connect(), 20)
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace="default"), timeout=datetime.timedelta(seconds=10)
    )
    return described.namespace_info.name


async def test_a_client_with_the_right_certificate_connects_over_mtls(
    devstack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with mtls_temporal(tmp_path / "pki", devstack.temporal.address) as (certs, proxy):
        assert await _namespace_answers(tls_env(certs, proxy.address), monkeypatch) == "default"
        assert proxy.accepted >= 1


async def test_a_client_without_a_certificate_is_refused(
    devstack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with mtls_temporal(tmp_path / "pki", devstack.temporal.address) as (certs, proxy):
        env = tls_env(certs, proxy.address)
        del env["TEMPORAL_TLS_CERT_PATH"], env["TEMPORAL_TLS_KEY_PATH"]
        with pytest.raises(Exception) as refused:
            await _namespace_answers(env, monkeypatch)
        assert not isinstance(refused.value, ConfigError)  # refused by the server, not by us
        assert proxy.accepted == 0  # no handshake completed


async def test_a_client_trusting_another_ca_refuses_the_server(
    devstack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with mtls_temporal(tmp_path / "pki", devstack.temporal.address) as (certs, proxy):
        other = make_certificates(tmp_path / "other", ca_name="someone else's CA")
        env = tls_env(certs, proxy.address) | {"TEMPORAL_TLS_CA_PATH": str(other.ca)}
        with pytest.raises(Exception):  # noqa: B017 - the core's error type varies
            await _namespace_answers(env, monkeypatch)
        assert proxy.accepted == 0
