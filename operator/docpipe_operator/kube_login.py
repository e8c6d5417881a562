"""The operator's Kubernetes credentials, for its own API client (kube.py) and for kopf.

:func:`load_configuration` is also the source of kopf's login handler
(:func:`connection_info`), so a kubeconfig (a developer, the tests) and a service
account (in cluster) behave alike for both.
"""

from __future__ import annotations

import inspect
import os

import kopf
from kubernetes_asyncio import client, config


async def load_configuration() -> client.Configuration:
    """In a pod: its service account; elsewhere: $KUBECONFIG (read now) or ~/.kube/config."""
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        await config.load_kube_config(config_file=path, client_configuration=configuration)
    return configuration


async def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """The same credentials, in the form kopf's login handler returns."""
    header = None
    for identifier in ("BearerToken", "authorization"):
        found = configuration.get_api_key_with_prefix(identifier)
        header = await found if inspect.isawaitable(found) else found  # async since 33.3
        if header:
            break
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    assert configuration.host, "the Kubernetes configuration has no server"
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )
