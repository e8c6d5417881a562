"""The few Kubernetes API calls the operator makes besides kopf's own.

kopf watches and patches the DocumentPipelines; this module creates and
patches what they own (Deployments, Services), scales Deployments and reads
the Temporal API-key Secret, with ``kubernetes_asyncio``. Both use the same
credentials: :func:`load_configuration` is the operator's login handler's
source too, so a kubeconfig (a developer, the tests) and a service account (in
cluster) behave alike.

Writes are idempotent: ``create``, and on 409 read the object and patch it
only when our fingerprint (``docpipe.io/spec-hash``) differs. A replayed
event, a resumed operator or a racing replica therefore changes nothing.
"""

from __future__ import annotations

import base64
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import kopf
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from docpipe_operator.resources import SPEC_HASH_ANNOTATION
from docpipe_operator.trust import ALLOW_LABEL

log = logging.getLogger(__name__)

# kubernetes_asyncio logs every response body at DEBUG, a Secret's data included:
# keep that logger quiet whatever level the operator runs at.
logging.getLogger("kubernetes_asyncio.client.rest").setLevel(logging.INFO)

MERGE_PATCH = "application/merge-patch+json"


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


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class SecretNotAllowedError(PermissionError):
    """A Secret the operator may not use for this pipeline (trust.py); it was not decoded."""


class NotOwnedError(kopf.PermanentError):
    """An object with our name exists but another owner controls it: hands off."""


@dataclass(frozen=True)
class DeploymentState:
    replicas: int
    ready_replicas: int
    updated_replicas: int


class Kube:
    """One shared API client for the operator's lifetime."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    @classmethod
    async def connect(cls) -> Kube:
        return cls(client.ApiClient(await load_configuration()))

    async def close(self) -> None:
        await self.api_client.close()

    # ----------------------------------------------------------- owned objects

    async def apply(self, manifest: Mapping[str, Any], owner_uid: str) -> Outcome:
        """Create ``manifest``, or bring the existing object in line with it."""
        kind = manifest["kind"]
        namespace = manifest["metadata"]["namespace"]
        name = manifest["metadata"]["name"]
        ops = self._ops(kind)
        try:
            await ops.create(namespace, manifest)
            return Outcome.CREATED
        except ApiException as exc:
            if exc.status != 409:
                raise
        existing = await ops.read(namespace, name)
        if not _controlled_by(existing.metadata, owner_uid):
            raise NotOwnedError(
                f"{kind} {namespace}/{name} exists and is not controlled by this DocumentPipeline; "
                "delete or rename it"
            )
        wanted = manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        if (existing.metadata.annotations or {}).get(SPEC_HASH_ANNOTATION) == wanted:
            return Outcome.UNCHANGED
        await ops.patch(namespace, name, _update_patch(manifest))
        log.info("updated %s %s/%s to spec %s", kind, namespace, name, wanted)
        return Outcome.UPDATED

    def _ops(self, kind: str) -> _Ops:
        if kind == "Deployment":
            return _Ops(
                self.apps.create_namespaced_deployment,
                self.apps.read_namespaced_deployment,
                self.apps.patch_namespaced_deployment,
            )
        if kind == "Service":
            return _Ops(
                self.core.create_namespaced_service,
                self.core.read_namespaced_service,
                self.core.patch_namespaced_service,
            )
        raise ValueError(f"unsupported kind {kind}")

    # ------------------------------------------------------------ deployments

    async def deployment(self, namespace: str, name: str) -> DeploymentState | None:
        try:
            found = await self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        status = found.status
        return DeploymentState(
            replicas=found.spec.replicas if found.spec.replicas is not None else 1,
            ready_replicas=(status.ready_replicas or 0) if status else 0,
            updated_replicas=(status.updated_replicas or 0) if status else 0,
        )

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        await self.apps.patch_namespaced_deployment(
            name, namespace, {"spec": {"replicas": replicas}}, _content_type=MERGE_PATCH
        )

    # ---------------------------------------------------------------- secrets

    async def secret_value(
        self,
        namespace: str,
        name: str,
        key: str,
        *,
        permit: Callable[[Mapping[str, str]], bool] | None = None,
    ) -> str:
        return (await self.secret_data(namespace, name, [key], permit=permit))[key].decode()

    async def secret_data(
        self,
        namespace: str,
        name: str,
        keys: list[str],
        *,
        permit: Callable[[Mapping[str, str]], bool] | None = None,
    ) -> dict[str, bytes]:
        """The decoded values of ``keys``; errors name the Secret and key, never a value.

        ``permit`` judges the Secret by its labels before anything is decoded
        (:class:`SecretNotAllowedError` if it says no).
        """
        secret = await self.core.read_namespaced_secret(name, namespace)
        if permit is not None and not permit(_labels(secret)):
            raise SecretNotAllowedError(
                f'Secret {namespace}/{name} is not labelled {ALLOW_LABEL}: "true"'
            )
        data = secret.data or {}
        missing = [key for key in keys if key not in data]
        if missing:
            raise KeyError(f"Secret {namespace}/{name} has no key {', '.join(missing)}")
        return {key: base64.b64decode(data[key]) for key in keys}

    async def secret_labels(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's labels (None: it does not exist). Read by name: the role grants
        ``get`` only, never ``list``; the data is read but neither kept nor decoded."""
        try:
            secret = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _labels(secret)


def _labels(obj: Any) -> dict[str, str]:
    metadata = getattr(obj, "metadata", None)
    return dict(getattr(metadata, "labels", None) or {})


@dataclass(frozen=True)
class _Ops:
    _create: Any
    _read: Any
    _patch: Any

    async def create(self, namespace: str, body: Mapping[str, Any]) -> Any:
        return await self._create(namespace, dict(body))

    async def read(self, namespace: str, name: str) -> Any:
        return await self._read(name, namespace)

    async def patch(self, namespace: str, name: str, body: Mapping[str, Any]) -> Any:
        return await self._patch(name, namespace, dict(body), _content_type=MERGE_PATCH)


def _controlled_by(metadata: Any, owner_uid: str) -> bool:
    return any(ref.uid == owner_uid and ref.controller for ref in metadata.owner_references or [])


def _update_patch(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch carrying our spec, minus what must not change on update.

    ``replicas`` belongs to the scaler; a Deployment's selector and a
    Service's clusterIP are immutable (and ours never change).
    """
    spec = {
        key: value
        for key, value in manifest["spec"].items()
        if key not in ("replicas", "selector", "clusterIP")
    }
    metadata = manifest["metadata"]
    return {
        "metadata": {"labels": metadata["labels"], "annotations": metadata["annotations"]},
        "spec": spec,
    }
