"""The DocumentPipeline CustomResourceDefinition, built from defaults.py.

Over 400 lines because it is one declarative schema, field by field, as the API server sees it.

The four pools share one shape but not their defaults, so the schema is
generated rather than written four times by hand. ``python -m docpipe_operator.crd``
writes it to ``deploy/crds/`` and the chart's ``helm/docpipe/crds/`` in one run
(``--check``: exit 1 when a file is out of date; ``--stdout``: print it), and a
test fails when the files and the code drift apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from docpipe_operator import GROUP, KIND, PLURAL, POOLS, SHORT_NAME, VERSION, defaults

Schema = dict[str, Any]

# Kubernetes' own pattern for resource quantities (as in generated CRDs).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _str(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _int(description: str, **extra: Any) -> Schema:
    return {"type": "integer", "description": description, **extra}


def _num(description: str, **extra: Any) -> Schema:
    return {"type": "number", "description": description, **extra}


def _obj(description: str, properties: Schema, **extra: Any) -> Schema:
    return {"type": "object", "description": description, "properties": properties, **extra}


def _secret_ref(description: str, **fields: Schema) -> Schema:
    """A reference to a Secret of the pipeline's namespace: its name and ``fields``
    (which of its keys to read, and how)."""
    return _obj(
        description,
        {"name": _str("Secret name, in the DocumentPipeline's namespace.", minLength=1), **fields},
        required=["name"],
    )


def _secret_key(description: str, default: str, **extra: Any) -> Schema:
    """A key of a referenced Secret; ``default`` names its defaults.SECRET_KEY_DEFAULTS entry."""
    return _str(description, default=defaults.SECRET_KEY_DEFAULTS[default], **extra)


def _local_ref(description: str) -> Schema:
    return _obj(
        description,
        {"name": _str("Name.", minLength=1), "optional": {"type": "boolean"}},
        required=["name"],
    )


S3_CREDENTIALS = _secret_ref(
    "Secret with the access key pair.",
    accessKeyKey=_secret_key("Key of the access key.", "s3AccessKey"),
    secretKeyKey=_secret_key("Key of the secret key.", "s3SecretKey"),
)
DB_CREDENTIALS = _secret_ref(
    "Secret with the user name and password.",
    usernameKey=_secret_key("Key of the user name.", "dbUser"),
    passwordKey=_secret_key("Key of the password.", "dbPassword"),
)
VECTOR_DB_CREDENTIALS = _secret_ref(
    "Secret with the token of a Chroma server with token authentication.",
    tokenKey=_secret_key("Key of the token.", "vectorDbToken"),
)


ENV: Schema = {
    "type": "array",
    "description": "Extra environment variables (Kubernetes EnvVar); they override generated ones.",
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
    "items": _obj(
        "An environment variable.",
        {
            "name": _str("Variable name.", minLength=1),
            "value": _str("Literal value."),
            "valueFrom": {
                "type": "object",
                "description": "A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef...).",
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
        required=["name"],
    ),
}

ENV_FROM: Schema = {
    "type": "array",
    "description": "Whole Secrets/ConfigMaps as environment (Kubernetes EnvFromSource).",
    "items": _obj(
        "One source.",
        {
            "prefix": _str("Prefix for every key."),
            "configMapRef": _local_ref("A ConfigMap."),
            "secretRef": _local_ref("A Secret."),
        },
    ),
}

RESOURCE_LIST: Schema = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
    },
}

RESOURCES: Schema = _obj(
    "Container resources (Kubernetes ResourceRequirements). The GPU pool's "
    "nvidia.com/gpu limit comes from gpusPerPod.",
    {"limits": RESOURCE_LIST, "requests": RESOURCE_LIST},
)

TOLERATIONS: Schema = {
    "type": "array",
    "description": "Kubernetes tolerations. The GPU pool always tolerates nvidia.com/gpu.",
    "items": _obj(
        "A toleration.",
        {
            "key": _str("Taint key."),
            "operator": _str("Exists or Equal.", enum=["Exists", "Equal"]),
            "value": _str("Taint value."),
            "effect": _str("Taint effect.", enum=["NoSchedule", "PreferNoSchedule", "NoExecute"]),
            "tolerationSeconds": _int("For NoExecute: how long to stay.", format="int64"),
        },
    ),
}


def _int_or_string(description: str) -> Schema:
    return {
        "description": description,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    }


DISRUPTION_BUDGET: Schema = _obj(
    "The pool's PodDisruptionBudget (owned by the pipeline). Default: on when "
    "minReplicas >= 2, with maxUnavailable: 1.",
    {
        "enabled": {
            "type": "boolean",
            "description": "Create the budget (default: minReplicas >= 2).",
        },
        "minAvailable": _int_or_string("Pods that must stay (number or percent)."),
        "maxUnavailable": _int_or_string("Pods that may go at once (number or percent)."),
    },
    **{
        "x-kubernetes-validations": [
            {
                "rule": "!(has(self.minAvailable) && has(self.maxUnavailable))",
                "message": "set minAvailable or maxUnavailable, not both",
            }
        ]
    },
)

TOPOLOGY_SPREAD: Schema = {
    "type": "array",
    "description": "Kubernetes topologySpreadConstraints; one without labelSelector "
    "spreads this pool's pods.",
    "items": {
        "type": "object",
        "description": "A TopologySpreadConstraint.",
        "properties": {
            "maxSkew": _int("Most the pod counts may differ.", minimum=1),
            "topologyKey": _str("Node label, e.g. topology.kubernetes.io/zone.", minLength=1),
            "whenUnsatisfiable": _str(
                "What the scheduler does.", enum=["DoNotSchedule", "ScheduleAnyway"]
            ),
            "labelSelector": {
                "type": "object",
                "description": "Pods counted (default: this pool's).",
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
        "required": ["maxSkew", "topologyKey", "whenUnsatisfiable"],
        # minDomains, matchLabelKeys, nodeAffinityPolicy...: passed through.
        "x-kubernetes-preserve-unknown-fields": True,
    },
}

VOLUMES: Schema = {
    "type": "array",
    "description": "Extra pod volumes (Kubernetes Volume): emptyDir, configMap, secret "
    "(labelled like every referenced Secret), projected, downwardAPI, "
    "persistentVolumeClaim, ephemeral or image; hostPath and others are refused.",
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
    "items": {
        "type": "object",
        "description": "A volume.",
        "properties": {"name": _str("Volume name.", minLength=1)},
        "required": ["name"],
        "x-kubernetes-preserve-unknown-fields": True,
    },
}

VOLUME_MOUNTS: Schema = {
    "type": "array",
    "description": "Extra mounts of the worker container.",
    "items": _obj(
        "A VolumeMount.",
        {
            "name": _str("A volume of volumes (or the operator's tmp/cache).", minLength=1),
            "mountPath": _str("Where.", minLength=1),
            "readOnly": {"type": "boolean", "description": "Read-only."},
            "subPath": _str("A path within the volume."),
            "subPathExpr": _str("subPath with $(VAR) expansion."),
        },
        required=["name", "mountPath"],
    ),
}


POSITIVE: Schema = {"exclusiveMinimum": True, "minimum": 0}

SCALING_KNOBS: dict[str, tuple[str, str, Schema]] = {
    "pollIntervalSeconds": (
        "number",
        "How often the queue is read and a decision made.",
        {"minimum": 1},
    ),
    "targetBacklogPerReplica": (
        "number",
        "Waiting tasks one extra replica absorbs (KEDA's targetQueueSize).",
        POSITIVE,
    ),
    "targetBacklogAgeSeconds": (
        "number",
        "A backlog older than this scales up even when it is short.",
        POSITIVE,
    ),
    "taskSeconds": (
        "number",
        "Typical task duration: work in flight = dispatch rate x taskSeconds, and "
        "the scale-down window is never shorter.",
        POSITIVE,
    ),
    "scaleUpHorizonSeconds": (
        "number",
        "How far ahead a growing backlog is projected (about a pod's start-up time).",
        {"minimum": 0},
    ),
    "scaleDownStabilizationSeconds": (
        "number",
        "Scale down only below every recommendation of this window; also the cooldown "
        "after a scale-up.",
        {"minimum": 0},
    ),
    "maxScaleDownStep": ("integer", "Most replicas removed by one decision.", {"minimum": 1}),
    "scaleToZero": (
        "boolean",
        "Go to zero replicas after a whole window without work; back on the first queued task.",
        {},
    ),
    "upstreamFraction": (
        "number",
        "Tasks this pool gets per task of the stage that feeds it (io -> cpu -> gpu "
        "-> io): work queued upstream counts in its replicas before it arrives, so a "
        "cold pool starts in time (pre-scaling); 0 turns it off.",
        {"minimum": 0, "maximum": 10},
    ),
}
"""Each scaling knob: its type, description and bounds (its default is per pool)."""


def _scaling_schema(kind: str) -> Schema:
    knob_defaults = defaults.SCALING_DEFAULTS[kind]
    return _obj(
        "Scaling knobs (docs/scaling.md).",
        {
            name: {
                "type": type_,
                "description": description,
                "default": knob_defaults[name],
                **bounds,
            }
            for name, (type_, description, bounds) in SCALING_KNOBS.items()
        },
        default={},
    )


def _duration(description: str, **extra: Any) -> Schema:
    return _str(
        description + " A duration: 30s, 5m, 1h30m.", pattern=defaults.DURATION_PATTERN, **extra
    )


VERSIONING = _obj(
    "Worker Versioning (docs/operator.md, Rollouts): the pool becomes a Temporal Worker "
    "Deployment with one Kubernetes Deployment per live Build ID; a new Build ID is rolled "
    "out by Temporal's routing and the old version's pods stay until its pinned workflows "
    "are drained.",
    {
        "enabled": {
            "type": "boolean",
            "description": "Run the pool versioned (false: one unversioned Deployment).",
            "default": False,
        },
        "buildId": _str(
            "The version's Build ID (default: the image's tag or digest; an image tagged "
            "latest or untagged needs one).",
            minLength=1,
            maxLength=255,
        ),
        "rollout": _obj(
            "How a new Build ID takes over (temporal-worker-controller's rollout).",
            {
                "strategy": _str(
                    "AllAtOnce: Current as soon as its workers poll; Progressive: ramp "
                    "through steps, then Current; Manual: the pods run, a person routes.",
                    enum=list(defaults.ROLLOUT_STRATEGIES),
                    default=defaults.ROLLOUT_DEFAULTS["strategy"],
                ),
                "steps": {
                    "type": "array",
                    "description": "Progressive: increasing shares of new workflows, each "
                    "held for its pause.",
                    "items": _obj(
                        "One ramp step.",
                        {
                            "rampPercentage": _num(
                                "Share of new workflows routed to the new version.",
                                exclusiveMinimum=True,
                                minimum=0,
                                maximum=100,
                            ),
                            "pauseDuration": _duration("How long to hold it.", default="0"),
                        },
                        required=["rampPercentage"],
                    ),
                },
                "scaleDownDelay": _duration(
                    "How long a drained version keeps its pods (queries on its closed workflows).",
                    default=defaults.ROLLOUT_DEFAULTS["scaleDownDelay"],
                ),
                "deleteDelay": _duration(
                    "How long its Deployment then stays at zero before it is deleted.",
                    default=defaults.ROLLOUT_DEFAULTS["deleteDelay"],
                ),
            },
            default={},
            **{
                "x-kubernetes-validations": [
                    {
                        "rule": "!has(self.strategy) || self.strategy != 'Progressive' || "
                        "(has(self.steps) && self.steps.size() > 0)",
                        "message": "a Progressive rollout needs at least one step",
                    }
                ]
            },
        ),
    },
)


def _pool_schema(kind: str) -> Schema:
    d = defaults.POOL_DEFAULTS[kind]
    properties: Schema = {
        "image": _str("Worker image; runs `docpipe worker " + kind + "`.", minLength=1),
        "imagePullPolicy": _str(
            "Image pull policy.",
            enum=["Always", "IfNotPresent", "Never"],
            default=d["imagePullPolicy"],
        ),
        "minReplicas": _int(
            "Fewest replicas while there is work.", minimum=0, default=d["minReplicas"]
        ),
        "maxReplicas": _int("Most replicas.", minimum=1, default=d["maxReplicas"]),
        "concurrency": _int(
            "Tasks one replica runs at once (its slots); also sets the worker's own limit.",
            minimum=1,
            default=d["concurrency"],
        ),
        "resources": RESOURCES,
        "env": ENV,
        "envFrom": ENV_FROM,
        "nodeSelector": {
            "type": "object",
            "description": "Node labels the pods must match.",
            "additionalProperties": {"type": "string"},
        },
        "tolerations": TOLERATIONS,
        "affinity": {
            "type": "object",
            "description": "Kubernetes Affinity, passed through to the pods.",
            "x-kubernetes-preserve-unknown-fields": True,
        },
        "priorityClassName": _str("PriorityClass of the pods."),
        "serviceAccountName": _str(
            "ServiceAccount of the pods (default: the namespace's default)."
        ),
        "terminationGracePeriodSeconds": _int(
            "SIGTERM-to-SIGKILL time. The worker stops polling at once and finishes "
            f"in-flight activities for {defaults.SHUTDOWN_MARGIN_S} s less (WORKER_SHUTDOWN_GRACE_S); "
            "default: the pool's longest step plus that margin.",
            minimum=defaults.MIN_TERMINATION_GRACE_S,
            default=d["terminationGracePeriodSeconds"],
        ),
        "scaling": _scaling_schema(kind),
        "autoscaling": _str(
            "operator: the operator scales the pool; external: an HPA or KEDA "
            "ScaledObject you attach owns spec.replicas and the operator never writes them.",
            enum=list(defaults.AUTOSCALING_MODES),
            default=d["autoscaling"],
        ),
        "podDisruptionBudget": DISRUPTION_BUDGET,
        "versioning": VERSIONING,
        "topologySpreadConstraints": TOPOLOGY_SPREAD,
        "runtimeClassName": _str("RuntimeClass of the pods (e.g. nvidia)."),
        "volumes": VOLUMES,
        "volumeMounts": VOLUME_MOUNTS,
        "podAnnotations": {
            "type": "object",
            "description": "Annotations of the pods (prometheus.io/* stay the operator's).",
            "additionalProperties": {"type": "string"},
        },
    }
    if kind == "gpu":
        properties["gpusPerPod"] = _int(
            "GPUs (of gpuResourceName) per pod (0: run on CPU, no GPU node needed).",
            minimum=0,
            default=d["gpusPerPod"],
        )
        properties["gpuResourceName"] = _str(
            "The extended resource requested: nvidia.com/gpu, or a MIG profile such as "
            "nvidia.com/mig-1g.10gb.",
            pattern=defaults.EXTENDED_RESOURCE_PATTERN,
            default=d["gpuResourceName"],
        )
    return _obj(
        f"The {kind} worker pool.",
        properties,
        required=["image"],
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.minReplicas) || !has(self.maxReplicas) || "
                    "self.minReplicas <= self.maxReplicas",
                    "message": "minReplicas must not exceed maxReplicas",
                }
            ]
        },
    )


def _spec_schema() -> Schema:
    return _obj(
        "What to run: where Temporal is, the queues, and one pool per worker type.",
        {
            "temporal": _obj(
                "The Temporal frontend the workers (and the operator) connect to.",
                {
                    "address": _str(
                        "host:port of the Temporal frontend ([::1]:7233 for IPv6).",
                        pattern=defaults.ADDRESS_PATTERN,
                    ),
                    "namespace": _str(
                        "Temporal namespace.", default=defaults.TEMPORAL_DEFAULTS["namespace"]
                    ),
                    "tls": {
                        "type": "boolean",
                        "description": "Connect with TLS (system CAs); implied by an API key.",
                        "default": defaults.TEMPORAL_DEFAULTS["tls"],
                    },
                    "apiKeySecretRef": _secret_ref(
                        "Secret holding a Temporal Cloud API key.",
                        key=_secret_key("Key in the Secret.", "temporalApiKey", minLength=1),
                    ),
                    "tlsSecretRef": _secret_ref(
                        "A kubernetes.io/tls Secret (tls.crt, tls.key and, unless ca is "
                        "false, ca.crt) for mTLS: mounted read-only into every worker pod, "
                        "and read by the operator for its own connection. Implies tls.",
                        ca={
                            "type": "boolean",
                            "description": "Verify the server with the Secret's ca.crt; "
                            "false: with the system CAs (e.g. Temporal Cloud).",
                            "default": True,
                        },
                    ),
                    "serverName": _str(
                        "Name the server's certificate is checked against (TLS SNI), "
                        "when it is not the address's host.",
                        minLength=1,
                    ),
                },
                required=["address"],
            ),
            "queues": _obj(
                "Task-queue names.",
                {
                    kind: _str(
                        f"The {kind} queue.", default=defaults.QUEUE_DEFAULTS[kind], minLength=1
                    )
                    for kind in POOLS
                },
                default={},
            ),
            "s3": _obj(
                "Object storage (S3 API) for the claim-check payloads.",
                {
                    "endpoint": _str("S3 endpoint URL."),
                    "bucket": _str("Bucket (created if missing)."),
                    "region": _str("Region."),
                    "credentialsSecretRef": S3_CREDENTIALS,
                },
            ),
            "metadataDb": _obj(
                "PostgreSQL for document metadata.",
                {
                    "host": _str("Host name."),
                    "port": _int("Port.", minimum=1, maximum=65535),
                    "database": _str("Database name."),
                    "credentialsSecretRef": DB_CREDENTIALS,
                },
            ),
            "vectorDb": _obj(
                "ChromaDB for chunk vectors.",
                {
                    "url": _str("Chroma server URL."),
                    "collection": _str("Collection name."),
                    "authHeader": _str(
                        "Header that carries the token: Authorization (Bearer <token>) or "
                        "X-Chroma-Token (the bare token), as the server's "
                        "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER.",
                        enum=["Authorization", "X-Chroma-Token"],
                    ),
                    "credentialsSecretRef": VECTOR_DB_CREDENTIALS,
                },
            ),
            "env": ENV,
            "envFrom": ENV_FROM,
            "imagePullSecrets": {
                "type": "array",
                "description": "Secrets for pulling the worker images.",
                "items": _obj(
                    "A Secret.", {"name": _str("Secret name.", minLength=1)}, required=["name"]
                ),
            },
            "pools": _obj(
                "One pool per worker type; each becomes a Deployment and a metrics Service.",
                {kind: _pool_schema(kind) for kind in POOLS},
                required=list(POOLS),
            ),
        },
        required=["temporal", "pools"],
    )


def _pool_status_schema() -> Schema:
    return _obj(
        "One pool as the operator last saw it.",
        {
            "queue": _str("Task queue."),
            "desiredReplicas": _int("Replicas the policy asked for (serving ones)."),
            "drainingReplicas": _int(
                "Cordoned pods finishing their work before they are removed (drain before remove)."
            ),
            "currentReplicas": _int("The Deployment's spec.replicas."),
            "readyReplicas": _int("The Deployment's ready pods."),
            "updatedReplicas": _int("Pods that run the Deployment's current template."),
            "rollout": _str(
                "Where the current template's rollout stands.",
                enum=["Complete", "Progressing", "Stuck"],
            ),
            "rolloutMessage": _str("Its explanation."),
            "backlog": _int("Approximate tasks waiting."),
            "backlogAgeSeconds": _num("Age of the oldest waiting task."),
            "addRate": _num("Tasks added per second (30 s average)."),
            "dispatchRate": _num("Tasks dispatched per second (30 s average)."),
            "inFlightEstimate": _num("dispatchRate x taskSeconds."),
            "lastDecision": _str("Reason of the last decision."),
            "lastDecisionMessage": _str("Its explanation."),
            "lastScaleTime": _str("When replicas last changed.", format="date-time"),
            "lastScaleReason": _str("Why they changed."),
            "autoscaling": _str("Who owns replicas: operator, external, or paused."),
            "currentBuildId": _str("Versioned pool: the Build ID Temporal routes new work to."),
            "targetBuildId": _str("Versioned pool: the Build ID the spec asks for."),
            "rampingBuildId": _str("Versioned pool: the Build ID taking a share of new work."),
            "rampPercentage": _num("That share, in percent."),
            "versionRollout": _str(
                "Versioned pool: where the rollout of the target stands.",
                enum=["WaitingForPollers", "Ramping", "Steady", "Manual", "Unknown"],
            ),
            "versionRolloutMessage": _str("Its explanation."),
            "versions": {
                "type": "array",
                "description": "Versioned pool: every live version and its Deployment.",
                "items": _obj(
                    "One version.",
                    {
                        "buildId": _str("Build ID."),
                        "status": _str(
                            "As Temporal reports it.",
                            enum=[
                                "Current",
                                "Ramping",
                                "Draining",
                                "Drained",
                                "Inactive",
                                "NotRegistered",
                                "Unknown",
                            ],
                        ),
                        "role": _str(
                            "What its pods do.",
                            enum=["Serve", "Drain", "ScaleToZero", "Delete", "Hold"],
                        ),
                        "rampPercentage": _num("Share of new work, when Ramping."),
                        "drainedSince": _str("When it was drained.", format="date-time"),
                        "deployment": _str("Its Deployment."),
                        "image": _str("The image its Deployment was made with."),
                        "replicas": _int("The Deployment's spec.replicas."),
                        "readyReplicas": _int("Its ready pods."),
                        "backlog": _int("Tasks waiting for this version."),
                    },
                    required=["buildId"],
                ),
            },
        },
    )


def _status_schema() -> Schema:
    condition = _obj(
        "A condition (Ready, Progressing, TemporalReachable, Scaling, Paused, Rollout).",
        {
            "type": _str("Condition type."),
            "status": _str("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": _str("CamelCase reason."),
            "message": _str("Human explanation."),
            "lastTransitionTime": _str("When status last changed.", format="date-time"),
            "observedGeneration": _int("Generation the condition was computed for."),
        },
        required=["type", "status"],
    )
    return _obj(
        "What the operator observed and decided.",
        {
            "phase": _str("Pending, Running, Paused, Degraded or Invalid."),
            "observedGeneration": _int("The spec generation the Deployments reflect."),
            "totalBacklog": _int("Tasks waiting on all four queues."),
            "pools": _obj("Per pool.", {kind: _pool_status_schema() for kind in POOLS}),
            "conditions": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": condition,
            },
        },
        # kopf keeps its own bookkeeping under status; let it through.
        **{"x-kubernetes-preserve-unknown-fields": True},
    )


def build() -> dict[str, Any]:
    """The CRD manifest (apiextensions.k8s.io/v1)."""
    printer_columns = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        *(
            {
                "name": kind.upper() if kind in ("cpu", "gpu", "io") else kind.capitalize(),
                "type": "integer",
                "description": f"Ready {kind} replicas",
                "jsonPath": f".status.pools.{kind}.readyReplicas",
            }
            for kind in POOLS
        ),
        {"name": "Backlog", "type": "integer", "jsonPath": ".status.totalBacklog"},
        {
            "name": "Current",
            "type": "string",
            "description": "Build ID of the workflow pool's Current version (versioned pools)",
            "jsonPath": ".status.pools.workflow.currentBuildId",
        },
        {
            "name": "Target",
            "type": "string",
            "description": "Build ID the workflow pool's spec asks for (versioned pools)",
            "jsonPath": ".status.pools.workflow.targetBuildId",
            "priority": 1,
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    schema = _obj(
        "A document-processing pipeline: its Temporal workers and how they scale.",
        {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _spec_schema(),
            "status": _status_schema(),
        },
        required=["spec"],
        **{
            "x-kubernetes-validations": [
                {
                    "rule": f"self.metadata.name.size() <= {defaults.MAX_NAME_LENGTH} && "
                    f"self.metadata.name.matches('{defaults.NAME_PATTERN}')",
                    "message": f"name must be a DNS label of at most {defaults.MAX_NAME_LENGTH} "
                    "characters (the worker Services are named after it)",
                }
            ]
        },
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "docpipe", "app.kubernetes.io/part-of": "docpipe"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": ["docpipe"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


HEADER = (
    "# Generated by `python -m docpipe_operator.crd` (operator/docpipe_operator/crd.py, defaults.py).\n"
    "# Do not edit by hand: tests/operator/test_crd.py fails when this file drifts.\n"
)

FILE_NAME = f"{PLURAL}.{GROUP}.yaml"
REPO = Path(__file__).resolve().parents[2]
"""The source checkout this module lives in (``--repo`` for another)."""
DEPLOY_CRDS = Path("deploy/crds")
CHART_CRDS = Path("helm/docpipe/crds")
MIRRORED = ("kopf-peering.yaml",)
"""Hand-written files of deploy/crds/ that the chart ships as they are."""


def render() -> str:
    return HEADER + yaml.safe_dump(build(), sort_keys=False, width=100)


def outputs(repo: Path = REPO) -> dict[Path, str]:
    """Every CRD file of deploy/crds/ and the chart's crds/, with its content."""
    files = {FILE_NAME: render()}
    for name in MIRRORED:
        files[name] = (repo / DEPLOY_CRDS / name).read_text(encoding="utf-8")
    return {
        repo / folder / name: text
        for folder in (DEPLOY_CRDS, CHART_CRDS)
        for name, text in files.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the DocumentPipeline CRD files.")
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    parser.add_argument("--stdout", action="store_true", help="print the CRD, write nothing")
    parser.add_argument("--repo", type=Path, default=REPO, help="the docpipe checkout")
    args = parser.parse_args(argv)
    if args.stdout:
        sys.stdout.write(render())
        return 0
    if not (args.repo / DEPLOY_CRDS).is_dir():
        parser.error(f"{args.repo / DEPLOY_CRDS} not found: pass --repo, or --stdout")
    stale = []
    for path, text in outputs(args.repo).items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(args.repo)))
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(
            f"out of date (run python -m docpipe_operator.crd): {', '.join(stale)}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
