"""The few Kubernetes API calls the operator makes besides kopf's own.

kopf watches and patches the DocumentPipelines; this module creates and
patches what they own (Deployments, Services, PodDisruptionBudgets), deletes
budgets a pool no longer has, scales Deployments, sets the deletion cost of a
shrinking pool's pods (drain.py) and reads
the Temporal API-key Secret, with ``kubernetes_asyncio``. Both use the same
credentials (kube_login.py).

Owned objects are written by server-side apply under the field manager
``docpipe-operator`` (field_managers.py): the API server removes a field the operator applied
before and no longer renders (a nodeSelector taken out of the spec), which a
merge patch never does. ``spec.replicas`` belongs to a second manager,
``docpipe-operator-autoscaler``, so applying the template never resets them;
a pool with ``autoscaling: external`` has neither manager own them (an HPA or
KEDA does), so its value is never written or removed by the operator.
Writes are idempotent: the object is read first and applied only when our
fingerprint (``docpipe.io/spec-hash``) differs. A replayed event, a resumed
operator or a racing replica therefore changes nothing.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import kopf
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from docpipe_operator.drain import PodRef, pod_ref
from docpipe_operator.field_managers import (
    FIELD_MANAGER,
    SCALER_FIELD_MANAGER,
    owns,
    release_replicas,
    take_over_legacy_fields,
)
from docpipe_operator.kube_login import load_configuration
from docpipe_operator.resources import SPEC_HASH_ANNOTATION
from docpipe_operator.trust import ALLOW_LABEL

log = logging.getLogger(__name__)

T = TypeVar("T")

# kubernetes_asyncio logs every response body at DEBUG, a Secret's data included:
# keep that logger quiet whatever level the operator runs at.
logging.getLogger("kubernetes_asyncio.client.rest").setLevel(logging.INFO)

JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED = "deleted"


class SecretNotAllowedError(PermissionError):
    """A Secret the operator may not use for this pipeline (trust.py); it was not decoded."""


class NotOwnedError(kopf.PermanentError):
    """An object with our name exists but another owner controls it: hands off."""


@dataclass(frozen=True)
class DeploymentState:
    replicas: int
    ready_replicas: int
    updated_replicas: int
    generation: int | None = None
    observed_generation: int | None = None
    stuck: str | None = None
    """The message of the Deployment's Progressing condition when its reason is
    ProgressDeadlineExceeded (the controller gave up waiting for progress)."""


class Kube:
    """One shared API client for the operator's lifetime."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)

    @classmethod
    async def connect(cls) -> Kube:
        return cls(client.ApiClient(await load_configuration()))

    async def close(self) -> None:
        await self.api_client.close()

    # ----------------------------------------------------------- owned objects

    async def apply(self, manifest: Mapping[str, Any], owner_uid: str) -> Outcome:
        """Create ``manifest``, or make the existing object equal what it renders.

        A new Deployment is applied with its initial replicas, which then pass to
        the autoscaler's manager; an existing one is applied without replicas.
        """
        kind = manifest["kind"]
        namespace = manifest["metadata"]["namespace"]
        name = manifest["metadata"]["name"]
        ops = self._ops(kind)
        existing = await ops.read(namespace, name)
        if existing is None:
            await ops.apply(namespace, name, manifest)
            if "replicas" in manifest["spec"]:
                await self.scale(namespace, name, manifest["spec"]["replicas"])
            return Outcome.CREATED
        if not _controlled_by(existing.metadata, owner_uid):
            raise NotOwnedError(
                f"{kind} {namespace}/{name} exists and is not controlled by this DocumentPipeline; "
                "delete or rename it"
            )
        wanted = manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        if (existing.metadata.annotations or {}).get(SPEC_HASH_ANNOTATION) == wanted:
            return Outcome.UNCHANGED
        entries = self.api_client.sanitize_for_serialization(existing.metadata.managed_fields or [])
        owners = take_over_legacy_fields(entries) or entries
        external = kind == "Deployment" and "replicas" not in manifest["spec"]
        if external:
            # An HPA/KEDA owns replicas now: let go of them without changing the value
            # (applying without them while still owning them would remove them).
            owners = release_replicas(owners) or owners
        if owners != entries:
            await ops.json_patch(
                namespace,
                name,
                [
                    {
                        "op": "test",
                        "path": "/metadata/resourceVersion",
                        "value": existing.metadata.resource_version,
                    },
                    {"op": "replace", "path": "/metadata/managedFields", "value": owners},
                ],
            )
            entries = owners
        if (
            kind == "Deployment"
            and not external
            and not owns(entries, SCALER_FIELD_MANAGER, "f:replicas")
        ):
            # Replicas still owned by the template's manager only (a create cut short),
            # or by an external autoscaler until now: the operator's autoscaler takes
            # them over at their current value, or applying without them would remove them.
            await self.scale(namespace, name, existing.spec.replicas)
        await ops.apply(namespace, name, _without_replicas(manifest))
        log.info("updated %s %s/%s to spec %s", kind, namespace, name, wanted)
        return Outcome.UPDATED

    def _ops(self, kind: str) -> _Ops:
        if kind == "Deployment":
            return _Ops(
                self.apps.read_namespaced_deployment,
                self.apps.patch_namespaced_deployment,
                # A drained version's Deployment (rollout.py).
                self.apps.delete_namespaced_deployment,
            )
        if kind == "Service":
            return _Ops(
                self.core.read_namespaced_service,
                self.core.patch_namespaced_service,
            )
        if kind == "PodDisruptionBudget":
            return _Ops(
                self.policy.read_namespaced_pod_disruption_budget,
                self.policy.patch_namespaced_pod_disruption_budget,
                self.policy.delete_namespaced_pod_disruption_budget,
            )
        raise ValueError(f"unsupported kind {kind}")

    async def delete_owned(self, kind: str, namespace: str, name: str, owner_uid: str) -> bool:
        """Delete an object this pipeline controls and no longer wants (a budget turned
        off); one it does not control is left alone. True if something was deleted."""
        ops = self._ops(kind)
        existing = await ops.read(namespace, name)
        if existing is None or not _controlled_by(existing.metadata, owner_uid):
            return False
        await ops.delete(namespace, name)
        log.info("deleted %s %s/%s: the spec no longer asks for it", kind, namespace, name)
        return True

    # ------------------------------------------------------------ deployments

    async def deployment(self, namespace: str, name: str) -> DeploymentState | None:
        found = await _unless_missing(self.apps.read_namespaced_deployment(name, namespace))
        if found is None:
            return None
        status = found.status
        stuck = None
        for condition in (status.conditions if status else None) or []:
            if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
                stuck = condition.message or "progress deadline exceeded"
        return DeploymentState(
            replicas=found.spec.replicas if found.spec.replicas is not None else 1,
            ready_replicas=(status.ready_replicas or 0) if status else 0,
            updated_replicas=(status.updated_replicas or 0) if status else 0,
            generation=found.metadata.generation,
            observed_generation=status.observed_generation if status else None,
            stuck=stuck,
        )

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set replicas as the autoscaler's field manager (forced: after a
        ``kubectl scale`` the operator takes them back)."""
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        }
        await self.apps.patch_namespaced_deployment(
            name,
            namespace,
            body,
            field_manager=SCALER_FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
        )

    # ------------------------------------------------------------------- pods

    async def pods(
        self, namespace: str, selector: Mapping[str, str], container: str, metrics_port: int
    ) -> list[PodRef]:
        """The live pods matching ``selector`` (not those already being deleted), with
        their IP, metrics port and deletion cost: what drain-aware scale-down needs."""
        label_selector = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        found = await self.core.list_namespaced_pod(namespace, label_selector=label_selector)
        pods = []
        for pod in found.items or []:
            if pod.metadata.deletion_timestamp is not None:
                continue
            raw = self.api_client.sanitize_for_serialization(pod)
            pods.append(pod_ref(raw, container, metrics_port))
        return pods

    async def annotate_pod(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """Set annotations on a pod (a merge patch: the kubelet owns the rest of it);
        a None value removes that annotation."""
        await self.core.patch_namespaced_pod(
            name,
            namespace,
            {"metadata": {"annotations": dict(annotations)}},
            _content_type=MERGE_PATCH,
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
        secret = await _unless_missing(self.core.read_namespaced_secret(name, namespace))
        return None if secret is None else _labels(secret)


async def _unless_missing(call: Awaitable[T]) -> T | None:
    """The API's answer, or None where it says 404 (the object does not exist)."""
    try:
        return await call
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _labels(obj: Any) -> dict[str, str]:
    metadata = getattr(obj, "metadata", None)
    return dict(getattr(metadata, "labels", None) or {})


@dataclass(frozen=True)
class _Ops:
    _read: Any
    _patch: Any
    _delete: Any = None

    async def read(self, namespace: str, name: str) -> Any | None:
        return await _unless_missing(self._read(name, namespace))

    async def apply(self, namespace: str, name: str, body: Mapping[str, Any]) -> Any:
        """Server-side apply as :data:`FIELD_MANAGER`, forced: the operator is the
        controller, and a hand edit of a field it renders is drift to undo."""
        return await self._patch(
            name,
            namespace,
            dict(body),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
        )

    async def json_patch(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> Any:
        return await self._patch(name, namespace, ops, _content_type=JSON_PATCH)

    async def delete(self, namespace: str, name: str) -> None:
        try:
            await self._delete(name, namespace)
        except ApiException as exc:
            if exc.status != 404:  # gone already: what we wanted
                raise


def _controlled_by(metadata: Any, owner_uid: str) -> bool:
    return any(ref.uid == owner_uid and ref.controller for ref in metadata.owner_references or [])


def _without_replicas(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What an update applies: replicas belong to the autoscaler's manager."""
    spec = {key: value for key, value in manifest["spec"].items() if key != "replicas"}
    return {**manifest, "spec": spec}
