"""The worker pod of a pool: its container (image, command, env, ports, probes,
resources, a locked-down security context), its volumes and where it may run.
Pure: resources.py puts it into the pool's Deployment.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from docpipe_operator.names import selector_labels
from docpipe_operator.spec import (
    METRICS_PORT,
    SDK_METRICS_PORT,
    PipelineSpec,
    PoolSpec,
)
from docpipe_operator.worker_env import PODINFO_DIR, TEMPORAL_TLS_DIR, worker_env

GPU_RESOURCE = "nvidia.com/gpu"
"""The GPU taint's key on most clusters (the device plugin's resource name; a MIG
profile such as nvidia.com/mig-1g.10gb is a resource of its own on the same nodes)."""
NO_GPU = {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}
"""For pods that request no GPU: CUDA images set NVIDIA_VISIBLE_DEVICES=all, and on a
node whose default runtime is NVIDIA's, that would hand them every GPU of the node
outside the scheduler's accounting. ``void`` exposes none."""
CONTAINER_NAME = "worker"

# The GPU device plugin taints GPU nodes with this key on most clusters.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

# The images' non-root user (Dockerfile.*: USER 65532:65532).
WORKER_UID = 65532

# The Temporal TLS Secret's volume (mounted at worker_env.TEMPORAL_TLS_DIR).
TEMPORAL_TLS_VOLUME = "temporal-tls"

# The root filesystem is read-only; these are the only places a worker writes:
# /tmp (easyocr's user_network_directory, spooled S3 uploads, tempfile) and the
# home cache (HF_HOME, torch and other libraries' caches under ~/.cache).
WRITABLE_DIRS = {"tmp": "/tmp", "cache": "/home/docpipe/.cache"}
PODINFO_VOLUME = "podinfo"


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
        volumes.append(
            {
                "name": TEMPORAL_TLS_VOLUME,
                "secret": {
                    "secretName": tls.name,
                    # Owner and group may read (the group is fsGroup), nobody writes.
                    "defaultMode": 0o440,
                    "items": [{"key": key, "path": key} for key in tls.keys],
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


def pod_spec(pipeline: str, spec: PipelineSpec, pool: PoolSpec) -> dict[str, Any]:
    """The pod template's spec of one pool of pipeline ``pipeline``."""
    pod: dict[str, Any] = {
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
        pod["runtimeClassName"] = pool.runtime_class_name
    if pool.topology_spread:
        pod["topologySpreadConstraints"] = _topology_spread(pipeline, pool)
    if pool.node_selector:
        pod["nodeSelector"] = dict(pool.node_selector)
    if tolerations := _tolerations(pool):
        pod["tolerations"] = tolerations
    if pool.affinity:
        pod["affinity"] = copy.deepcopy(dict(pool.affinity))
    if pool.priority_class_name:
        pod["priorityClassName"] = pool.priority_class_name
    if pool.service_account_name:
        pod["serviceAccountName"] = pool.service_account_name
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in spec.image_pull_secrets]
    return pod
