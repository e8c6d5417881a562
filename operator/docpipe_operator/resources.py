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
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from docpipe_operator.spec import (
    METRICS_PORT,
    SDK_METRICS_PORT,
    TLS_CA_KEY,
    TLS_CERT_KEY,
    TLS_PRIVATE_KEY_KEY,
    PipelineSpec,
    PoolSpec,
    worker_shutdown_grace_s,
)

Manifest = dict[str, Any]

GPU_RESOURCE = "nvidia.com/gpu"
"""The GPU taint's key on most clusters (the device plugin's resource name; a MIG
profile such as nvidia.com/mig-1g.10gb is a resource of its own on the same nodes)."""
SPEC_HASH_ANNOTATION = "docpipe.io/spec-hash"
AUTOSCALING_ANNOTATION = "docpipe.io/autoscaling"
"""On each Deployment: who owns its replicas (``operator`` or ``external``). Part of
the fingerprint, so switching a pool's mode re-applies it and moves the ownership."""
NO_GPU = {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}
"""For pods that request no GPU: CUDA images set NVIDIA_VISIBLE_DEVICES=all, and on a
node whose default runtime is NVIDIA's, that would hand them every GPU of the node
outside the scheduler's accounting. ``void`` exposes none."""
PIPELINE_LABEL = "docpipe.io/pipeline"
POOL_LABEL = "docpipe.io/pool"
MANAGED_BY = "docpipe-operator"
CONTAINER_NAME = "worker"

# The GPU device plugin taints GPU nodes with this key on most clusters.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

# The images' non-root user (Dockerfile.*: USER 65532:65532).
WORKER_UID = 65532

# Where the Temporal TLS Secret is mounted in every worker pod.
TEMPORAL_TLS_VOLUME = "temporal-tls"
TEMPORAL_TLS_DIR = "/etc/docpipe/temporal-tls"

# The root filesystem is read-only; these are the only places a worker writes:
# /tmp (easyocr's user_network_directory, spooled S3 uploads, tempfile) and the
# home cache (HF_HOME, torch and other libraries' caches under ~/.cache).
WRITABLE_DIRS = {"tmp": "/tmp", "cache": "/home/docpipe/.cache"}
PODINFO_VOLUME = "podinfo"
PODINFO_DIR = "/etc/podinfo"
"""The pod's own annotations (a downward API volume): the worker's drain switch reads
``docpipe.io/drain`` there (cordon.py)."""

# The variable that sets each worker's slots (services/docpipe/config.py).
# The workflow worker's task slots are the SDK's; its cache is not a slot count.
CONCURRENCY_ENV = {
    "cpu": "WORKER_CPU_THREADS",
    "io": "MAX_CONCURRENT_IO_ACTIVITIES",
    "gpu": "MAX_CONCURRENT_GPU_ACTIVITIES_PER_GPU",
}


def deployment_name(pipeline: str, kind: str) -> str:
    return f"{pipeline}-{kind}"


def service_name(pipeline: str, kind: str) -> str:
    return f"{pipeline}-{kind}-metrics"


def selector_labels(pipeline: str, kind: str) -> dict[str, str]:
    """Immutable once a Deployment exists: keep these two forever."""
    return {PIPELINE_LABEL: pipeline, POOL_LABEL: kind}


def labels(pipeline: str, kind: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "docpipe",
        "app.kubernetes.io/instance": pipeline,
        "app.kubernetes.io/component": f"{kind}-worker",
        "app.kubernetes.io/part-of": "docpipe",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **selector_labels(pipeline, kind),
    }


def spec_hash(manifest: Mapping[str, Any]) -> str:
    """Fingerprint of a generated manifest, ignoring replicas (the scaler owns them)."""
    body = copy.deepcopy(dict(manifest))
    body.get("spec", {}).pop("replicas", None)
    body.get("metadata", {}).get("annotations", {}).pop(SPEC_HASH_ANNOTATION, None)
    blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _env(name: str, value: object) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def worker_env(spec: PipelineSpec, pool: PoolSpec) -> list[dict[str, Any]]:
    """The worker's configuration (services/docpipe/config.py variables).

    Generated variables come first; the pipeline's ``env`` and then the pool's
    replace any of them by name, so a user can override everything.
    """
    t = spec.temporal
    env = [
        _env("TEMPORAL_HOST", t.address),
        _env("TEMPORAL_NAMESPACE", t.namespace),
        _env("TEMPORAL_TLS", str(t.uses_tls).lower()),
        _env("WORKFLOW_TASK_QUEUE", spec.queues["workflow"]),
        _env("CPU_TASK_QUEUE", spec.queues["cpu"]),
        _env("GPU_TASK_QUEUE", spec.queues["gpu"]),
        _env("IO_TASK_QUEUE", spec.queues["io"]),
        _env("METRICS_PORT", METRICS_PORT),
        _env("SDK_METRICS_PORT", SDK_METRICS_PORT),
        # Below the pod's grace: in-flight activities finish, the rest is handed back.
        _env("WORKER_SHUTDOWN_GRACE_S", worker_shutdown_grace_s(pool.termination_grace_s)),
        _env("WORKER_POD_ANNOTATIONS_FILE", f"{PODINFO_DIR}/annotations"),
    ]
    if t.api_key is not None:
        env.append(_secret_env("TEMPORAL_API_KEY", t.api_key.name, t.api_key.key))
    if t.tls_secret is not None:
        if t.tls_secret.ca:
            env.append(_env("TEMPORAL_TLS_CA_PATH", f"{TEMPORAL_TLS_DIR}/{TLS_CA_KEY}"))
        env.append(_env("TEMPORAL_TLS_CERT_PATH", f"{TEMPORAL_TLS_DIR}/{TLS_CERT_KEY}"))
        env.append(_env("TEMPORAL_TLS_KEY_PATH", f"{TEMPORAL_TLS_DIR}/{TLS_PRIVATE_KEY_KEY}"))
    if t.server_name:
        env.append(_env("TEMPORAL_TLS_SERVER_NAME", t.server_name))
    env += _store_env(spec)
    if pool.kind == "gpu":
        gpus = pool.gpus_per_pod
        env.append(_env("GPU_COUNT", gpus))
        env.append(_env(CONCURRENCY_ENV["gpu"], max(1, pool.knobs.concurrency // max(gpus, 1))))
    elif pool.kind in CONCURRENCY_ENV:
        env.append(_env(CONCURRENCY_ENV[pool.kind], pool.knobs.concurrency))
    return _override(env, [*spec.env, *pool.env])


def _store_env(spec: PipelineSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    s3 = spec.s3
    for field, name in (
        ("endpoint", "S3_ENDPOINT"),
        ("bucket", "S3_BUCKET"),
        ("region", "S3_REGION"),
    ):
        if s3.get(field):
            env.append(_env(name, s3[field]))
    if creds := s3.get("credentialsSecretRef"):
        env.append(_secret_env("S3_ACCESS_KEY", creds["name"], creds["accessKeyKey"]))
        env.append(_secret_env("S3_SECRET_KEY", creds["name"], creds["secretKeyKey"]))
    db = spec.metadata_db
    for field, name in (
        ("host", "METADATA_DB_HOST"),
        ("port", "METADATA_DB_PORT"),
        ("database", "METADATA_DB_NAME"),
    ):
        if db.get(field):
            env.append(_env(name, db[field]))
    if creds := db.get("credentialsSecretRef"):
        env.append(_secret_env("METADATA_DB_USER", creds["name"], creds["usernameKey"]))
        env.append(_secret_env("METADATA_DB_PASSWORD", creds["name"], creds["passwordKey"]))
    vector = spec.vector_db
    if vector.get("url"):
        env.append(_env("VECTOR_DB_URL", vector["url"]))
    if vector.get("collection"):
        env.append(_env("VECTOR_COLLECTION", vector["collection"]))
    return env


def _override(
    env: list[dict[str, Any]], overrides: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Replace variables by name (a later one wins), keeping first-seen order."""
    merged: dict[str, dict[str, Any]] = {item["name"]: item for item in env}
    for item in overrides:
        merged[item["name"]] = dict(item)
    return list(merged.values())


def _resources(pool: PoolSpec) -> dict[str, Any]:
    resources = {key: dict(value) for key, value in pool.resources.items() if value}
    if pool.kind == "gpu" and pool.gpus_per_pod > 0:
        # Extended resources: the limit is the request (Kubernetes requires equality).
        gpu = pool.gpu_resource_name
        resources.setdefault("limits", {})[gpu] = pool.gpus_per_pod
        if gpu in resources.get("requests", {}):
            resources["requests"][gpu] = pool.gpus_per_pod
    return resources


def requests_gpu(resources: Mapping[str, Any]) -> bool:
    """Does a container with these resources get a GPU (whole or a MIG slice)?"""
    return any(
        name.startswith("nvidia.com/") and str(amount) not in ("0", "")
        for section in resources.values()
        for name, amount in (section or {}).items()
    )


def _tolerations(pool: PoolSpec) -> list[dict[str, Any]]:
    tolerations = [dict(t) for t in pool.tolerations]
    if pool.kind == "gpu" and pool.gpus_per_pod > 0:
        if not any(t.get("key") == GPU_RESOURCE for t in tolerations):
            tolerations.append(dict(GPU_TOLERATION))
    return tolerations


def _probe(initial_delay_s: int, period_s: int, failures: int) -> dict[str, Any]:
    # Workers serve /metrics from their first second (before connecting to
    # Temporal or loading models), so the probe says "process alive and not
    # wedged"; Temporal connectivity shows in the queue's live pollers.
    return {
        "httpGet": {"path": "/metrics", "port": "metrics"},
        "initialDelaySeconds": initial_delay_s,
        "periodSeconds": period_s,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _container(spec: PipelineSpec, pool: PoolSpec) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": pool.image,
        "imagePullPolicy": pool.image_pull_policy,
        "command": ["docpipe", "worker", pool.kind],
        "env": worker_env(spec, pool),
        "ports": [
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
            {"name": "sdk-metrics", "containerPort": SDK_METRICS_PORT, "protocol": "TCP"},
        ],
        # Model loading can take minutes on a cold GPU node: a generous start-up window.
        "startupProbe": _probe(
            initial_delay_s=2, period_s=5, failures=60 if pool.kind == "gpu" else 24
        ),
        "livenessProbe": _probe(initial_delay_s=0, period_s=20, failures=3),
        "readinessProbe": _probe(initial_delay_s=0, period_s=10, failures=3),
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": _volume_mounts(spec, pool),
    }
    if pool.env_from or spec.env_from:
        container["envFrom"] = [dict(e) for e in (*spec.env_from, *pool.env_from)]
    resources = _resources(pool)
    if resources:
        container["resources"] = resources
    if not requests_gpu(resources):
        # Set last: no env entry may give a pod GPUs the scheduler did not count.
        env = [e for e in container["env"] if e["name"] != NO_GPU["name"]]
        container["env"] = [*env, dict(NO_GPU)]
    return container


def _volume_mounts(spec: PipelineSpec, pool: PoolSpec) -> list[dict[str, Any]]:
    mounts = [{"name": name, "mountPath": path} for name, path in WRITABLE_DIRS.items()]
    mounts.append({"name": PODINFO_VOLUME, "mountPath": PODINFO_DIR, "readOnly": True})
    if spec.temporal.tls_secret is not None:
        mounts.append(
            {"name": TEMPORAL_TLS_VOLUME, "mountPath": TEMPORAL_TLS_DIR, "readOnly": True}
        )
    return mounts + [copy.deepcopy(dict(m)) for m in pool.volume_mounts]


def _topology_spread(pipeline: str, pool: PoolSpec) -> list[dict[str, Any]]:
    """The pool's constraints; one without a labelSelector spreads the pool's own pods
    (what it almost always means, and the pods' labels are the operator's to name)."""
    constraints = []
    for raw in pool.topology_spread:
        constraint = copy.deepcopy(dict(raw))
        constraint.setdefault(
            "labelSelector", {"matchLabels": selector_labels(pipeline, pool.kind)}
        )
        constraints.append(constraint)
    return constraints


def _volumes(spec: PipelineSpec) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [{"name": name, "emptyDir": {}} for name in WRITABLE_DIRS]
    volumes.append(
        {
            "name": PODINFO_VOLUME,
            "downwardAPI": {
                "items": [
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
                ]
            },
        }
    )
    if (tls := spec.temporal.tls_secret) is not None:
        keys = [TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY] + ([TLS_CA_KEY] if tls.ca else [])
        volumes.append(
            {
                "name": TEMPORAL_TLS_VOLUME,
                "secret": {
                    "secretName": tls.name,
                    # Owner and group may read (the group is fsGroup), nobody writes.
                    "defaultMode": 0o440,
                    "items": [{"key": key, "path": key} for key in keys],
                },
            }
        )
    return volumes


def pod_security_context() -> dict[str, Any]:
    """Non-root (the images' user), group-readable mounted Secrets, default seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": WORKER_UID,
        "runAsGroup": WORKER_UID,
        "fsGroup": WORKER_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def deployment(body: Mapping[str, Any], spec: PipelineSpec, kind: str) -> Manifest:
    """The pool's Deployment, owned by the DocumentPipeline ``body``."""
    pipeline = body["metadata"]["name"]
    pool = spec.pools[kind]
    pod_spec: dict[str, Any] = {
        "containers": [_container(spec, pool)],
        # Longer than the workers' graceful shutdown, so in-flight tasks finish or
        # are handed back before SIGKILL.
        "terminationGracePeriodSeconds": pool.termination_grace_s,
        "enableServiceLinks": False,
        # Workers never call the Kubernetes API: no token in the pod, so code
        # that gets into a worker (a hostile document, a compromised dependency)
        # cannot act as its ServiceAccount.
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "volumes": _volumes(spec) + [copy.deepcopy(dict(v)) for v in pool.volumes],
    }
    if pool.runtime_class_name:
        pod_spec["runtimeClassName"] = pool.runtime_class_name
    if pool.topology_spread:
        pod_spec["topologySpreadConstraints"] = _topology_spread(pipeline, pool)
    if pool.node_selector:
        pod_spec["nodeSelector"] = dict(pool.node_selector)
    if tolerations := _tolerations(pool):
        pod_spec["tolerations"] = tolerations
    if pool.affinity:
        pod_spec["affinity"] = copy.deepcopy(dict(pool.affinity))
    if pool.priority_class_name:
        pod_spec["priorityClassName"] = pool.priority_class_name
    if pool.service_account_name:
        pod_spec["serviceAccountName"] = pool.service_account_name
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in spec.image_pull_secrets]
    # A GPU node rarely has a spare GPU for a surge pod: replace in place instead.
    rolling = (
        {"maxSurge": 0, "maxUnavailable": 1}
        if kind == "gpu" and pool.gpus_per_pod > 0
        else {"maxSurge": "25%", "maxUnavailable": 0}
    )
    manifest: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(pipeline, kind),
            "namespace": body["metadata"]["namespace"],
            "labels": labels(pipeline, kind),
            "annotations": {AUTOSCALING_ANNOTATION: pool.autoscaling},
        },
        "spec": {
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
                "spec": pod_spec,
            },
        },
    }
    if pool.external:
        # An HPA or KEDA owns replicas: the operator neither creates nor applies them
        # (a new Deployment starts at the API server's default, 1, until it scales).
        del manifest["spec"]["replicas"]
    return _owned(manifest, body)


def disruption_budget_name(pipeline: str, kind: str) -> str:
    return f"{pipeline}-{kind}"


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
    manifest: Manifest = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": disruption_budget_name(pipeline, kind),
            "namespace": body["metadata"]["namespace"],
            "labels": labels(pipeline, kind),
            "annotations": {},
        },
        "spec": pdb_spec,
    }
    return _owned(manifest, body)


def service(body: Mapping[str, Any], spec: PipelineSpec, kind: str) -> Manifest:
    """A headless Service over the pool's pods: Prometheus scrapes each pod."""
    pipeline = body["metadata"]["name"]
    manifest: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(pipeline, kind),
            "namespace": body["metadata"]["namespace"],
            "labels": labels(pipeline, kind),
            "annotations": {},
        },
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(pipeline, kind),
            "ports": [
                {
                    "name": "metrics",
                    "port": METRICS_PORT,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                },
                {
                    "name": "sdk-metrics",
                    "port": SDK_METRICS_PORT,
                    "targetPort": "sdk-metrics",
                    "protocol": "TCP",
                },
            ],
        },
    }
    return _owned(manifest, body)


def _owned(manifest: Manifest, body: Mapping[str, Any]) -> Manifest:
    """Owner reference (garbage collection on delete), then the fingerprint."""
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


# --- Versioned pools: one Deployment per live Build ID ("rainbow") ------------------
# docs/operator.md, "Rollouts": the spec renders the target version's Deployment;
# the others keep the template they were made with (rollout.py scales and deletes them).

VERSION_LABEL = "docpipe.io/version"
"""Label (and selector) of a version's Deployment and pods: a DNS-safe form of the Build ID."""
BUILD_ID_ANNOTATION = "docpipe.io/build-id"
"""The exact Build ID, which a label value may not be able to hold."""
_SLUG_MAX = 24
_NAME_MAX = 63


def build_id_for(image: str, explicit: str | None = None) -> str:
    """The Build ID of a pool's workers: the explicit one, else the image's tag or digest.

    A Build ID names the workflow code; an image without a tag or digest (or
    tagged ``latest``) names nothing stable, so it is refused rather than guessed.
    """
    if explicit:
        return explicit
    name, at, digest = image.partition("@")
    if at:
        return digest
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    if not tag or tag == "latest":
        raise ValueError(
            f"image {image!r} has no tag or digest: a versioned pool needs one, or a buildId"
        )
    return tag


def temporal_deployment_name(namespace: str, pipeline: str, kind: str) -> str:
    """The pool's Temporal Worker Deployment: one per namespace, pipeline and pool.

    Temporal refuses a '.' in it (a DocumentPipeline name may have dots); '/' is fine.
    """
    return f"{namespace}/{pipeline}-{kind}".replace(".", "-")


def version_slug(build_id: str) -> str:
    """A label-value and DNS-label-safe form of ``build_id``, unique per Build ID.

    Kept verbatim when it already is one (``v42``, ``1-4-0``); otherwise cleaned
    and suffixed with a hash of the original, so ``1.4.0`` and ``1-4-0`` differ.
    """
    cleaned = "".join(c if c.isalnum() else "-" for c in build_id.lower()).strip("-")
    if cleaned == build_id and 0 < len(cleaned) <= _SLUG_MAX:
        return cleaned
    digest = hashlib.sha256(build_id.encode()).hexdigest()[:8]
    head = cleaned[: _SLUG_MAX - len(digest) - 1].strip("-")
    return f"{head}-{digest}" if head else digest


def version_deployment_name(pipeline: str, kind: str, build_id: str) -> str:
    """``<pipeline>-<pool>-<slug>``, at most 63 characters (pod names derive from it)."""
    slug = version_slug(build_id)
    prefix = deployment_name(pipeline, kind)[: _NAME_MAX - len(slug) - 1].rstrip("-")
    return f"{prefix}-{slug}"


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
        container["env"] = env + [_env(k, v) for k, v in pinned.items()]
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
