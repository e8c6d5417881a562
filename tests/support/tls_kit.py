"""Certificates and an mTLS endpoint for Temporal, made at test time.

``temporal server start-dev`` speaks plain gRPC, so an mTLS Temporal is a
TLS-terminating :class:`tcp_proxy.Forwarder` (ALPN h2, ``CERT_REQUIRED``) in
front of it, with a CA, a server and a client certificate generated here with
``cryptography``. Used by the TLS, secrets and operator tests alike.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tcp_proxy import Forwarder

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


def mutual_tls_context(certificates: Certificates) -> ssl.SSLContext:
    """The server side: our server certificate, and a client certificate from our CA required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.server_cert, certificates.server_key)
    context.load_verify_locations(cafile=certificates.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    return context


@contextlib.asynccontextmanager
async def mtls_temporal(
    directory: Path, upstream: str
) -> AsyncIterator[tuple[Certificates, Forwarder]]:
    """Certificates, and an mTLS endpoint (``.address``) for the Temporal at ``upstream``.

    The endpoint's ``accepted`` counts completed handshakes (verified client certificates).
    """
    certificates = make_certificates(directory)
    async with Forwarder(upstream, ssl=mutual_tls_context(certificates)) as proxy:
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
