"""The DocumentPipeline's defaults, patterns and limits, in one place.

crd.py writes them into the CRD's schema (so the API server fills them in and
refuses what breaks a rule) and spec.py applies and checks them again, because an
object created before a CRD upgrade, or stored by a server that skipped
defaulting, must still mean the same thing.
"""

from __future__ import annotations

from typing import Any

from docpipe import durations, queues
from docpipe_operator import POOLS
from docpipe_operator.versioning import Strategy

# On SIGTERM a worker stops polling at once and lets its in-flight activities
# finish for WORKER_SHUTDOWN_GRACE_S (services/docpipe/workers/common.py), which the
# operator renders SHUTDOWN_MARGIN_S below the pod's terminationGracePeriodSeconds:
# the margin is for cancelling what is left, reporting it back to Temporal (retried
# elsewhere at once, not after a heartbeat timeout) and exiting before SIGKILL.
SHUTDOWN_MARGIN_S = 10
MIN_TERMINATION_GRACE_S = SHUTDOWN_MARGIN_S + 5
STEP_BUDGET_S: dict[str, int] = {"workflow": 35, "cpu": 120, "gpu": 300, "io": 120}
"""Per pool, how long its longest step normally runs, so a scale-down or a rollout
lets it finish: workflow tasks take milliseconds; cpu and io steps get the CLI's
default step budget (``--timeout`` 120 s); a GPU batch (OCR pages, embeddings of long
documents) the workflow's default GPU budget (StepTimeouts.gpu_start_to_close)."""
DEFAULT_TERMINATION_GRACE_S: dict[str, int] = {
    kind: budget + SHUTDOWN_MARGIN_S for kind, budget in STEP_BUDGET_S.items()
}


def worker_shutdown_grace_s(termination_grace_s: int) -> int:
    """The worker's own graceful shutdown for a pod's grace period: slightly below it,
    so the worker hands back what is still running before the kubelet's SIGKILL."""
    return max(1, termination_grace_s - SHUTDOWN_MARGIN_S)


# Longest CR name whose children's names stay valid DNS labels:
# "<name>-workflow-metrics" must fit in 63 characters.
MAX_NAME_LENGTH = 63 - len("-workflow-metrics")

# host:port, where host is a name, an IPv4 address or a bracketed IPv6 address
# ("[::1]:7233", "[fd00::5]:7233"), as gRPC and Go's net.JoinHostPort write them.
ADDRESS_PATTERN = r"^([^:\s\[\]]+|\[[0-9A-Fa-f:.]+\]):[0-9]+$"
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

QUEUE_DEFAULTS: dict[str, str] = {
    "workflow": queues.WORKFLOW_QUEUE,
    "cpu": queues.CPU_QUEUE,
    "gpu": queues.GPU_QUEUE,
    "io": queues.IO_QUEUE,
}

# Per pool: replicas, slots and resources (CRD field names).
POOL_DEFAULTS: dict[str, dict[str, Any]] = {
    "workflow": {"minReplicas": 1, "maxReplicas": 10, "concurrency": 100},
    "cpu": {"minReplicas": 1, "maxReplicas": 20, "concurrency": 4},
    "gpu": {
        "minReplicas": 1,
        "maxReplicas": 4,
        "concurrency": 4,
        "gpusPerPod": 1,
        "gpuResourceName": "nvidia.com/gpu",
    },
    "io": {"minReplicas": 1, "maxReplicas": 10, "concurrency": 200},
}
for _pool in POOLS:
    POOL_DEFAULTS[_pool] |= {
        "imagePullPolicy": "IfNotPresent",
        "terminationGracePeriodSeconds": DEFAULT_TERMINATION_GRACE_S[_pool],
        "autoscaling": "operator",
    }

# Per pool: the policy's knobs (CRD field names; docs/scaling.md explains each).
SCALING_DEFAULTS: dict[str, dict[str, Any]] = {
    "workflow": {"taskSeconds": 0.1, "targetBacklogAgeSeconds": 5, "targetBacklogPerReplica": 100},
    "cpu": {"taskSeconds": 5, "targetBacklogAgeSeconds": 30, "targetBacklogPerReplica": 4},
    "gpu": {"taskSeconds": 2, "targetBacklogAgeSeconds": 30, "targetBacklogPerReplica": 4},
    "io": {"taskSeconds": 1, "targetBacklogAgeSeconds": 10, "targetBacklogPerReplica": 200},
}
for _pool in POOLS:
    SCALING_DEFAULTS[_pool] = {
        "pollIntervalSeconds": 15,
        "scaleUpHorizonSeconds": 60 if _pool == "gpu" else 30,
        "scaleDownStabilizationSeconds": 300,
        "maxScaleDownStep": 2,
        "scaleToZero": _pool == "gpu",
        "upstreamFraction": 1.0,
    } | SCALING_DEFAULTS[_pool]

AUTOSCALING_MODES = ("operator", "external")
"""Who owns a pool's ``spec.replicas``: the operator's policy, or an HPA/KEDA the user attaches."""

# --- Worker Versioning (docs/operator.md, "Rollouts") ---------------------------------
ROLLOUT_STRATEGIES = tuple(strategy.value for strategy in Strategy)
ROLLOUT_DEFAULTS: dict[str, Any] = {
    "strategy": Strategy.ALL_AT_ONCE.value,
    "scaleDownDelay": "1h",
    "deleteDelay": "24h",
}
"""temporal-worker-controller's defaults: a drained version keeps its pods an hour
(queries on its closed workflows), then its Deployment a day at zero (a rollback
within that day only scales it up)."""
# Go-style durations, as temporal-worker-controller and kubectl write them: 30s, 5m, 1h30m.
GO_DURATION_UNITS = ("ms", "s", "m", "h")
DURATION_PATTERN = durations.pattern(GO_DURATION_UNITS)

# Extended resource names (the device plugin's: nvidia.com/gpu, nvidia.com/mig-1g.10gb).
EXTENDED_RESOURCE_PATTERN = (
    r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)

# Volumes the operator mounts itself: an extra volume must not take their names
# (worker_pod.WRITABLE_DIRS and the Temporal TLS volume).
RESERVED_VOLUMES = ("tmp", "cache", "temporal-tls", "podinfo")

TEMPORAL_DEFAULTS: dict[str, Any] = {"namespace": "default", "tls": False}
SECRET_KEY_DEFAULTS = {
    "temporalApiKey": "api-key",
    "s3AccessKey": "access-key",
    "s3SecretKey": "secret-key",
    "dbUser": "username",
    "dbPassword": "password",
    "vectorDbToken": "token",
}
