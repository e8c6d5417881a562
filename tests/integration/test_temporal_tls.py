"""Temporal over mTLS, end to end: docpipe's one connect path against a server
that demands a client certificate.

``temporal server start-dev`` speaks plain gRPC, so the test puts a small
TLS-terminating proxy in front of it (asyncio, ALPN h2, ``CERT_REQUIRED``)
with a CA, a server and a client certificate made here with ``cryptography``.
A client configured through the TEMPORAL_TLS_* settings connects and
describes the namespace; one without a client certificate, or trusting the
wrong CA, is refused. The helpers are reused by test_secrets_not_logged.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from docpipe.config import ConfigError, load_settings

pytestmark = pytest.mark.integration

SERVER_NAME = "temporal.docpipe.test"
"""The name in the server certificate; the client reaches 127.0.0.1 and overrides SNI."""


@dataclass(frozen=True)
class Certificates:
    """PEM files: a CA, a server certificate for SERVER_NAME, a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName(SERVER_NAME),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(directory: Path, ca_name: str = "docpipe test CA") -> Certificates:
    """A fresh CA with one server and one client certificate, as PEM files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_cert = _certificate(ca_name, ca_key, None, ca_key, ca=True)
    server_key, client_key = _key(), _key()
    server_cert = _certificate(SERVER_NAME, server_key, ca_cert.subject, ca_key, server=True)
    client_cert = _certificate("docpipe-worker", client_key, ca_cert.subject, ca_key)

    def pem(name: str, cert: x509.Certificate) -> Path:
        path = directory / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    return Certificates(
        ca=pem("ca.crt", ca_cert),
        server_cert=pem("server.crt", server_cert),
        server_key=_write_key(directory / "server.key", server_key),
        client_cert=pem("tls.crt", client_cert),
        client_key=_write_key(directory / "tls.key", client_key),
    )


class MutualTlsProxy:
    """TLS in front of a plain gRPC server: requires a client certificate from our CA."""

    def __init__(self, certificates: Certificates, upstream: str) -> None:
        self.upstream = upstream
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificates.server_cert, certificates.server_key)
        context.load_verify_locations(cafile=certificates.ca)
        context.verify_mode = ssl.CERT_REQUIRED
        context.set_alpn_protocols(["h2"])
        self.context = context
        self.accepted = 0
        """Connections whose handshake succeeded (a verified client certificate)."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def __aenter__(self) -> MutualTlsProxy:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, ssl=self.context, ssl_handshake_timeout=10
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        host, _, port = self.upstream.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            try:
                await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
            finally:
                up_writer.close()
        except (OSError, asyncio.CancelledError):
            pass  # upstream gone, or the proxy is closing: just hang up
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()


@contextlib.asynccontextmanager
async def mtls_temporal(
    directory: Path, upstream: str
) -> AsyncIterator[tuple[Certificates, MutualTlsProxy]]:
    """Certificates, and an mTLS endpoint (``.address``) for the Temporal at ``upstream``."""
    certificates = make_certificates(directory)
    async with MutualTlsProxy(certificates, upstream) as proxy:
        yield certificates, proxy


def tls_env(certificates: Certificates, address: str) -> dict[str, str]:
    """The worker environment for this endpoint (what the operator sets from tlsSecretRef)."""
    return {
        "TEMPORAL_HOST": address,
        "TEMPORAL_TLS": "true",
        "TEMPORAL_TLS_CA_PATH": str(certificates.ca),
        "TEMPORAL_TLS_CERT_PATH": str(certificates.client_cert),
        "TEMPORAL_TLS_KEY_PATH": str(certificates.client_key),
        "TEMPORAL_TLS_SERVER_NAME": SERVER_NAME,
    }


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
