"""What a DocumentPipeline may make the operator do on its author's behalf. Pure.

The operator holds rights its users may not have: it reads Secrets and creates
Deployments in every namespace it watches. Without limits, anyone allowed to
create a DocumentPipeline could borrow those rights (a confused deputy): name
any Secret of the namespace in ``apiKeySecretRef`` or ``env`` and run it in an
image of their choice that sends it anywhere, under any ServiceAccount. So:

* **Secrets**: a Secret is used (read by the operator, or referenced by a
  worker pod it renders) only if it carries :data:`ALLOW_LABEL` ``"true"``,
  or lives in the operator's own namespace (whoever may create pipelines
  there is already trusted with the operator's configuration). Labelling is
  the Secret owner's consent; a pipeline author cannot give it.
* **Images**: a worker image must match one of the operator's allowed
  patterns (``fnmatch`` globs over the whole reference, e.g.
  ``ghcr.io/docpipe/*``). None configured: no image is allowed.
* **ServiceAccounts**: a pool runs under the namespace's ``default`` account
  unless its ``serviceAccountName`` matches an allowed pattern.
* **Volumes**: a pool's extra volumes are of the kinds that stay inside the
  namespace (:data:`ALLOWED_VOLUME_TYPES`): no ``hostPath`` (the node's files),
  no projected ServiceAccount token (worker pods get none), and their Secrets
  follow the Secret rule.

The functions here decide; reconcile.py fetches the Secrets' labels and
reports refusals as conditions and Events. A refused pipeline gets nothing
rendered.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from docpipe_operator.spec import PipelineSpec

ALLOW_LABEL = "docpipe.io/allow-reference"
"""The label (value ``"true"``) by which a Secret's owner lets pipelines reference it."""

DEFAULT_SERVICE_ACCOUNT = "default"

ALLOWED_VOLUME_TYPES = frozenset(
    {
        "emptyDir",
        "configMap",
        "secret",
        "projected",
        "downwardAPI",
        "persistentVolumeClaim",
        "ephemeral",
        "image",
    }
)
"""Volume sources a pool may add: namespace-scoped data and scratch space. hostPath,
nfs and the other node- or network-level sources are refused: a pipeline author
could otherwise read the node, or mount storage the namespace's quota never saw."""
ALLOWED_PROJECTIONS = frozenset({"configMap", "secret", "downwardAPI", "clusterTrustBundle"})

# An OCI image reference: [registry[:port]/]path[:tag][@sha256:digest]. Anything
# else (spaces, uppercase paths, odd separators) is refused before glob matching,
# so a pattern cannot be satisfied by a string the kubelet would read differently.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"(?:{_HOST}(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)


@dataclass(frozen=True)
class TrustPolicy:
    """The operator's limits (its DOCPIPE_OPERATOR_* settings)."""

    allowed_images: tuple[str, ...] = ()
    """Globs over the whole image reference; empty: every image is refused."""
    allowed_service_accounts: tuple[str, ...] = ()
    """Globs over ServiceAccount names a pool may name besides ``default``."""
    operator_namespace: str | None = None
    """Where the operator runs: its Secrets need no label (None: no such exemption)."""


@dataclass(frozen=True)
class SecretUse:
    """A Secret the pipeline names, and where (for the message)."""

    name: str
    field: str


def secret_uses(spec: PipelineSpec) -> list[SecretUse]:
    """Every Secret the operator would read or a rendered worker pod would reference.

    The Temporal API key and TLS Secrets (read by the operator, and given to
    the workers), the stores' credentials, and ``env`` ``secretKeyRef`` and
    ``envFrom`` ``secretRef`` of the pipeline and of each pool. (Image pull
    Secrets are not here: the kubelet sends them only to their own registry,
    and the image allowlist decides which registries are used.)
    """
    uses: list[SecretUse] = []
    t = spec.temporal
    if t.api_key is not None:
        uses.append(SecretUse(t.api_key.name, "spec.temporal.apiKeySecretRef"))
    if t.tls_secret is not None:
        uses.append(SecretUse(t.tls_secret.name, "spec.temporal.tlsSecretRef"))
    stores = (("s3", spec.s3), ("metadataDb", spec.metadata_db), ("vectorDb", spec.vector_db))
    for section, store in stores:
        if creds := store.get("credentialsSecretRef"):
            uses.append(SecretUse(creds["name"], f"spec.{section}.credentialsSecretRef"))
    uses += _env_secrets("spec", spec.env, spec.env_from)
    for kind, pool in spec.pools.items():
        uses += _env_secrets(f"spec.pools.{kind}", pool.env, pool.env_from)
        uses += _volume_secrets(f"spec.pools.{kind}", pool.volumes)
    return uses


def _volume_secrets(where: str, volumes: Iterable[Mapping[str, object]]) -> list[SecretUse]:
    uses = []
    for volume in volumes:
        field = f"{where}.volumes[{volume.get('name')}]"
        if secret := volume.get("secret"):
            uses.append(SecretUse(secret["secretName"], field))  # type: ignore[index]
        for source in (volume.get("projected") or {}).get("sources") or ():  # type: ignore[union-attr]
            if ref := source.get("secret"):
                uses.append(SecretUse(ref["name"], field))
    return uses


def _env_secrets(
    where: str, env: Iterable[Mapping[str, object]], env_from: Iterable[Mapping[str, object]]
) -> list[SecretUse]:
    uses = []
    for item in env:
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")  # type: ignore[union-attr]
        if ref:
            uses.append(SecretUse(ref["name"], f"{where}.env[{item.get('name')}]"))
    for index, item in enumerate(env_from):
        ref = item.get("secretRef")
        if ref:
            uses.append(SecretUse(ref["name"], f"{where}.envFrom[{index}]"))  # type: ignore[index]
    return uses


def secret_allowed(labels: Mapping[str, str] | None, namespace: str, policy: TrustPolicy) -> bool:
    """May a pipeline in ``namespace`` use a Secret there carrying ``labels``?"""
    if policy.operator_namespace and namespace == policy.operator_namespace:
        return True
    return (labels or {}).get(ALLOW_LABEL) == "true"


def secret_problems(
    uses: Iterable[SecretUse],
    labels: Mapping[str, Mapping[str, str] | None],
    namespace: str,
    policy: TrustPolicy,
) -> list[str]:
    """Refusals for ``uses``, given each Secret's labels (None: the Secret does not exist).

    A missing Secret is refused too: whoever creates it later under that name
    would otherwise hand it to pods rendered before anyone could check it.
    """
    if policy.operator_namespace and namespace == policy.operator_namespace:
        return []
    found: list[str] = []
    for use in uses:
        if use.name not in labels:
            continue  # not looked up (the caller decides what to fetch)
        if labels[use.name] is None:
            found.append(
                f"secret {use.name} ({use.field}) does not exist; create it with the label "
                f'{ALLOW_LABEL}: "true"'
            )
        elif not secret_allowed(labels[use.name], namespace, policy):
            found.append(
                f"secret {use.name} ({use.field}) is not labelled {ALLOW_LABEL}: "
                '"true"; its owner must label it before a pipeline may use it'
            )
    return found


def image_allowed(image: str, policy: TrustPolicy) -> bool:
    return IMAGE_REFERENCE.fullmatch(image) is not None and any(
        fnmatch.fnmatchcase(image, pattern) for pattern in policy.allowed_images
    )


def service_account_allowed(name: str | None, policy: TrustPolicy) -> bool:
    if not name or name == DEFAULT_SERVICE_ACCOUNT:
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in policy.allowed_service_accounts)


def workload_problems(spec: PipelineSpec, policy: TrustPolicy) -> list[str]:
    """Refusals for the pools' images and ServiceAccounts (no API call needed)."""
    found: list[str] = []
    for kind, pool in spec.pools.items():
        if not image_allowed(pool.image, policy):
            allowed = ", ".join(policy.allowed_images) or "none configured"
            found.append(
                f"spec.pools.{kind}.image {pool.image!r} is not allowed "
                f"(DOCPIPE_OPERATOR_ALLOWED_IMAGES: {allowed})"
            )
        if not service_account_allowed(pool.service_account_name, policy):
            allowed = ", ".join(policy.allowed_service_accounts) or "none besides default"
            found.append(
                f"spec.pools.{kind}.serviceAccountName {pool.service_account_name!r} is not "
                f"allowed (DOCPIPE_OPERATOR_ALLOWED_SERVICE_ACCOUNTS: {allowed})"
            )
        found += _volume_problems(f"spec.pools.{kind}", pool.volumes)
    return found


def _volume_problems(where: str, volumes: Iterable[Mapping[str, object]]) -> list[str]:
    found = []
    for volume in volumes:
        sources = set(volume) - {"name"}
        field = f"{where}.volumes[{volume.get('name')}]"
        if refused := sorted(sources - ALLOWED_VOLUME_TYPES):
            allowed = ", ".join(sorted(ALLOWED_VOLUME_TYPES))
            found.append(f"{field}: {', '.join(refused)} is not allowed (allowed: {allowed})")
        for source in (volume.get("projected") or {}).get("sources") or ():  # type: ignore[union-attr]
            if refused := sorted(set(source) - ALLOWED_PROJECTIONS):
                found.append(
                    f"{field}: projected {', '.join(refused)} is not allowed "
                    "(worker pods get no ServiceAccount token)"
                )
    return found
