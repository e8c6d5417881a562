"""The Kubernetes objects one DocumentPipeline owns: per pool, a Deployment
of ``docpipe worker <kind>``, a headless Service for its metrics and, when the
pool has one, a PodDisruptionBudget.

Pure functions of the CR: the same spec gives the same manifests, and
:func:`spec_hash` fingerprints what we generated, so the operator can tell
"nothing changed" without comparing against fields the API server defaults.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import kopf

from docpipe_operator.names import (
    BUILD_ID_ANNOTATION,
    VERSION_LABEL,
    deployment_name,
    disruption_budget_name,
    labels,
    selector_labels,
    service_name,
    temporal_deployment_name,
    version_deployment_name,
    version_slug,
)
from docpipe_operator.spec import (
    METRICS_PORT,
    SDK_METRICS_PORT,
    PipelineSpec,
)
from docpipe_operator.worker_env import env_var
from docpipe_operator.worker_pod import pod_spec

Manifest = dict[str, Any]

SPEC_HASH_ANNOTATION = "docpipe.io/spec-hash"
AUTOSCALING_ANNOTATION = "docpipe.io/autoscaling"
"""On each Deployment: who owns its replicas (``operator`` or ``external``). Part of
the fingerprint, so switching a pool's mode re-applies it and moves the ownership."""


def spec_hash(manifest: Mapping[str, Any]) -> str:
    """Fingerprint of a generated manifest, ignoring replicas (the scaler owns them)."""
    body = copy.deepcopy(dict(manifest))
    body.get("spec", {}).pop("replicas", None)
    body.get("metadata", {}).get("annotations", {}).pop(SPEC_HASH_ANNOTATION, None)
    blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def deployment(body: Mapping[str, Any], spec: PipelineSpec, kind: str) -> Manifest:
    """The pool's Deployment, owned by the DocumentPipeline ``body``."""
    pipeline = body["metadata"]["name"]
    pool = spec.pools[kind]
    # A GPU node rarely has a spare GPU for a surge pod: replace in place instead.
    rolling = (
        {"maxSurge": 0, "maxUnavailable": 1}
        if kind == "gpu" and pool.gpus_per_pod > 0
        else {"maxSurge": "25%", "maxUnavailable": 0}
    )
    deployment_spec: dict[str, Any] = {
        "replicas": pool.initial_replicas,
        "revisionHistoryLimit": 3,
        "selector": {"matchLabels": selector_labels(pipeline, kind)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
        "template": {
            "metadata": {
                "labels": labels(pipeline, kind),
                # The user's annotations first: the scrape settings stay the operator's.
                "annotations": {
                    **pool.pod_annotations,
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(METRICS_PORT),
                },
            },
            "spec": pod_spec(pipeline, spec, pool),
        },
    }
    if pool.external:
        # An HPA or KEDA owns replicas: the operator neither creates nor applies them
        # (a new Deployment starts at the API server's default, 1, until it scales).
        del deployment_spec["replicas"]
    return _owned(
        body,
        kind,
        ("apps/v1", "Deployment", deployment_name(pipeline, kind)),
        deployment_spec,
        annotations={AUTOSCALING_ANNOTATION: pool.autoscaling},
    )


def disruption_budget(body: Mapping[str, Any], spec: PipelineSpec, kind: str) -> Manifest | None:
    """The pool's PodDisruptionBudget (policy/v1), or None when it has none."""
    budget = spec.pools[kind].disruption_budget
    if budget is None:
        return None
    pipeline = body["metadata"]["name"]
    pdb_spec: dict[str, Any] = {"selector": {"matchLabels": selector_labels(pipeline, kind)}}
    if budget.min_available is not None:
        pdb_spec["minAvailable"] = budget.min_available
    else:
        pdb_spec["maxUnavailable"] = budget.max_unavailable
    # Pods that never got ready may always be evicted: a crash-looping pool must not
    # block a node drain.
    pdb_spec["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
    what = ("policy/v1", "PodDisruptionBudget", disruption_budget_name(pipeline, kind))
    return _owned(body, kind, what, pdb_spec)


def service(body: Mapping[str, Any], spec: PipelineSpec, kind: str) -> Manifest:
    """A headless Service over the pool's pods: Prometheus scrapes each pod."""
    pipeline = body["metadata"]["name"]
    service_spec = {
        "clusterIP": "None",
        "selector": selector_labels(pipeline, kind),
        "ports": [
            {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            {
                "name": "sdk-metrics",
                "port": SDK_METRICS_PORT,
                "targetPort": "sdk-metrics",
                "protocol": "TCP",
            },
        ],
    }
    return _owned(body, kind, ("v1", "Service", service_name(pipeline, kind)), service_spec)


def _owned(
    body: Mapping[str, Any],
    kind: str,
    what: tuple[str, str, str],
    spec: dict[str, Any],
    annotations: Mapping[str, str] | None = None,
) -> Manifest:
    """An object of pool ``kind``: ``what`` is its (apiVersion, kind, name). With the
    pipeline's labels, its owner reference (garbage collection on delete), and then
    the fingerprint."""
    api_version, object_kind, name = what
    manifest: Manifest = {
        "apiVersion": api_version,
        "kind": object_kind,
        "metadata": {
            "name": name,
            "namespace": body["metadata"]["namespace"],
            "labels": labels(body["metadata"]["name"], kind),
            "annotations": dict(annotations or {}),
        },
        "spec": spec,
    }
    kopf.adopt(manifest, owner=dict(body))  # type: ignore[arg-type]
    manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(manifest)
    return manifest


def manifests(body: Mapping[str, Any], spec: PipelineSpec) -> list[Manifest]:
    """Everything one DocumentPipeline owns, Deployments first."""
    budgets = [disruption_budget(body, spec, kind) for kind in spec.pools]
    return [
        *(pool_deployment(body, spec, kind) for kind in spec.pools),
        *(service(body, spec, kind) for kind in spec.pools),
        *(budget for budget in budgets if budget is not None),
    ]


def unwanted(body: Mapping[str, Any], spec: PipelineSpec) -> list[tuple[str, str]]:
    """(kind, name) of owned objects the spec no longer asks for: the budgets of pools
    that have none (deleted if they exist and this pipeline controls them)."""
    pipeline = body["metadata"]["name"]
    return [
        ("PodDisruptionBudget", disruption_budget_name(pipeline, kind))
        for kind, pool in spec.pools.items()
        if pool.disruption_budget is None
    ]


def versioned_deployment(
    manifest: Manifest, *, build_id: str, temporal_deployment: str, name: str
) -> Manifest:
    """The Deployment of one version of a pool, derived from the pool's Deployment.

    Its name, labels and selector carry the version, so each live Build ID has
    its own ReplicaSets and pods (an old version keeps running for its pinned
    workflows while the new one serves), and its workers get the Worker Deployment
    and Build ID to poll as. Those two are set last: a pipeline or pool ``env``
    entry must not be able to move a version's pods to another version.
    """
    versioned = copy.deepcopy(manifest)
    slug = version_slug(build_id)
    metadata = versioned["metadata"]
    metadata["name"] = name
    metadata["labels"] = {**metadata.get("labels", {}), VERSION_LABEL: slug}
    metadata["annotations"] = {**metadata.get("annotations", {}), BUILD_ID_ANNOTATION: build_id}
    spec = versioned["spec"]
    spec["selector"]["matchLabels"] = {**spec["selector"]["matchLabels"], VERSION_LABEL: slug}
    template = spec["template"]
    template["metadata"]["labels"] = {**template["metadata"]["labels"], VERSION_LABEL: slug}
    template["metadata"]["annotations"] = {
        **template["metadata"].get("annotations", {}),
        BUILD_ID_ANNOTATION: build_id,
    }
    pinned = {"WORKER_DEPLOYMENT_NAME": temporal_deployment, "WORKER_BUILD_ID": build_id}
    for container in template["spec"]["containers"]:
        env = [e for e in container.get("env", []) if e["name"] not in pinned]
        container["env"] = env + [env_var(k, v) for k, v in pinned.items()]
    return versioned


def pool_deployment_name(pipeline: str, spec: PipelineSpec, kind: str) -> str:
    """The Deployment the spec renders for a pool: its target version's when versioned."""
    versioning = spec.pools[kind].versioning
    if versioning is None:
        return deployment_name(pipeline, kind)
    return version_deployment_name(pipeline, kind, versioning.build_id)


def pool_deployment(body: Mapping[str, Any], spec: PipelineSpec, kind: str) -> Manifest:
    """The pool's Deployment, or for a versioned pool its target version's."""
    versioning = spec.pools[kind].versioning
    if versioning is None:
        return deployment(body, spec, kind)
    return version_deployment(body, spec, kind, versioning.build_id)


def version_deployment(
    body: Mapping[str, Any],
    spec: PipelineSpec,
    kind: str,
    build_id: str,
    image: str | None = None,
) -> Manifest:
    """The Deployment of version ``build_id`` of a pool, fingerprinted; ``image``
    (default: the spec's) recreates an older version that went missing."""
    if image is not None and image != spec.pools[kind].image:
        pools = dict(spec.pools)
        pools[kind] = dataclasses.replace(pools[kind], image=image)
        spec = dataclasses.replace(spec, pools=pools)
    pipeline, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    manifest = versioned_deployment(
        deployment(body, spec, kind),
        build_id=build_id,
        temporal_deployment=temporal_deployment_name(namespace, pipeline, kind),
        name=version_deployment_name(pipeline, kind, build_id),
    )
    manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(manifest)
    return manifest
