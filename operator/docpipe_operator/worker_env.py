"""The environment of a worker container: the variables services/docpipe/config.py
reads, rendered from the pipeline's spec, then the pipeline's and the pool's own ``env``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from docpipe_operator.defaults import worker_shutdown_grace_s
from docpipe_operator.spec import (
    METRICS_PORT,
    SDK_METRICS_PORT,
    TLS_CA_KEY,
    TLS_CERT_KEY,
    TLS_PRIVATE_KEY_KEY,
    PipelineSpec,
    PoolSpec,
)

# Where the Temporal TLS Secret is mounted in every worker pod.
TEMPORAL_TLS_DIR = "/etc/docpipe/temporal-tls"
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


def env_var(name: str, value: object) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def secret_env_var(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def worker_env(spec: PipelineSpec, pool: PoolSpec) -> list[dict[str, Any]]:
    """The worker's configuration (services/docpipe/config.py variables).

    Generated variables come first; the pipeline's ``env`` and then the pool's
    replace any of them by name, so a user can override everything.
    """
    t = spec.temporal
    env = [
        env_var("TEMPORAL_HOST", t.address),
        env_var("TEMPORAL_NAMESPACE", t.namespace),
        env_var("TEMPORAL_TLS", str(t.uses_tls).lower()),
        env_var("WORKFLOW_TASK_QUEUE", spec.queues["workflow"]),
        env_var("CPU_TASK_QUEUE", spec.queues["cpu"]),
        env_var("GPU_TASK_QUEUE", spec.queues["gpu"]),
        env_var("IO_TASK_QUEUE", spec.queues["io"]),
        env_var("METRICS_PORT", METRICS_PORT),
        env_var("SDK_METRICS_PORT", SDK_METRICS_PORT),
        # Below the pod's grace: in-flight activities finish, the rest is handed back.
        env_var("WORKER_SHUTDOWN_GRACE_S", worker_shutdown_grace_s(pool.termination_grace_s)),
        env_var("WORKER_POD_ANNOTATIONS_FILE", f"{PODINFO_DIR}/annotations"),
    ]
    if t.api_key is not None:
        env.append(secret_env_var("TEMPORAL_API_KEY", t.api_key.name, t.api_key.key))
    if t.tls_secret is not None:
        if t.tls_secret.ca:
            env.append(env_var("TEMPORAL_TLS_CA_PATH", f"{TEMPORAL_TLS_DIR}/{TLS_CA_KEY}"))
        env.append(env_var("TEMPORAL_TLS_CERT_PATH", f"{TEMPORAL_TLS_DIR}/{TLS_CERT_KEY}"))
        env.append(env_var("TEMPORAL_TLS_KEY_PATH", f"{TEMPORAL_TLS_DIR}/{TLS_PRIVATE_KEY_KEY}"))
    if t.server_name:
        env.append(env_var("TEMPORAL_TLS_SERVER_NAME", t.server_name))
    env += _store_env(spec)
    if pool.kind == "gpu":
        gpus = pool.gpus_per_pod
        env.append(env_var("GPU_COUNT", gpus))
        env.append(env_var(CONCURRENCY_ENV["gpu"], max(1, pool.knobs.concurrency // max(gpus, 1))))
    elif pool.kind in CONCURRENCY_ENV:
        env.append(env_var(CONCURRENCY_ENV[pool.kind], pool.knobs.concurrency))
    return _override(env, [*spec.env, *pool.env])


STORE_ENV: tuple[tuple[str, dict[str, str], dict[str, str]], ...] = (
    (
        "s3",
        {"endpoint": "S3_ENDPOINT", "bucket": "S3_BUCKET", "region": "S3_REGION"},
        {"accessKeyKey": "S3_ACCESS_KEY", "secretKeyKey": "S3_SECRET_KEY"},
    ),
    (
        "metadata_db",
        {"host": "METADATA_DB_HOST", "port": "METADATA_DB_PORT", "database": "METADATA_DB_NAME"},
        {"usernameKey": "METADATA_DB_USER", "passwordKey": "METADATA_DB_PASSWORD"},
    ),
    (
        "vector_db",
        {
            "url": "VECTOR_DB_URL",
            "collection": "VECTOR_COLLECTION",
            "authHeader": "VECTOR_DB_AUTH_HEADER",
        },
        {"tokenKey": "VECTOR_DB_TOKEN"},
    ),
)
"""Per store section of the spec: its fields' variables, and the variables read from
its ``credentialsSecretRef`` (by the field naming the Secret's key)."""


def _store_env(spec: PipelineSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    for section, fields, secret_keys in STORE_ENV:
        store = getattr(spec, section)
        env += [env_var(name, store[field]) for field, name in fields.items() if store.get(field)]
        if secret_keys and (creds := store.get("credentialsSecretRef")):
            env += [
                secret_env_var(name, creds["name"], creds[key]) for key, name in secret_keys.items()
            ]
    return env


def _override(
    env: list[dict[str, Any]], overrides: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Replace variables by name (a later one wins), keeping first-seen order."""
    merged: dict[str, dict[str, Any]] = {item["name"]: item for item in env}
    for item in overrides:
        merged[item["name"]] = dict(item)
    return list(merged.values())
