"""The DocumentPipeline spec as typed Python, with its defaults applied and its rules checked.

Just over 400 lines: the types, the parser and the checks follow the CRD field by field
and change together.

The defaults live once, in defaults.py: crd.py writes them into the CRD's schema
(so the API server fills them in) and :func:`parse` applies them again, because
an object created before a CRD upgrade, or stored by a server that skipped
defaulting, must still mean the same thing. :func:`problems` repeats the
CRD's CEL rules for the same reason (and for clusters too old for CEL); the
operator reports them in status rather than acting on a spec it cannot honour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from docpipe import durations
from docpipe_operator import POOLS
from docpipe_operator.defaults import (
    ADDRESS_PATTERN,
    AUTOSCALING_MODES,
    DEFAULT_TERMINATION_GRACE_S,
    EXTENDED_RESOURCE_PATTERN,
    GO_DURATION_UNITS,
    MAX_NAME_LENGTH,
    MIN_TERMINATION_GRACE_S,
    NAME_PATTERN,
    POOL_DEFAULTS,
    QUEUE_DEFAULTS,
    RESERVED_VOLUMES,
    ROLLOUT_DEFAULTS,
    ROLLOUT_STRATEGIES,
    SCALING_DEFAULTS,
    SECRET_KEY_DEFAULTS,
    SHUTDOWN_MARGIN_S,
    TEMPORAL_DEFAULTS,
)
from docpipe_operator.names import build_id_for
from docpipe_operator.scaling import ScalingKnobs
from docpipe_operator.versioning import RampStep, Rollout, Strategy

METRICS_PORT = 9100
SDK_METRICS_PORT = 9101

PAUSED_ANNOTATION = "docpipe.io/paused"
"""``"true"`` on a DocumentPipeline freezes every pool's replicas (incidents: a
``kubectl scale`` then sticks); removing it, or any other value, resumes scaling."""


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


# A kubernetes.io/tls-style Secret (cert-manager writes exactly these keys).
TLS_CA_KEY = "ca.crt"
TLS_CERT_KEY = "tls.crt"
TLS_PRIVATE_KEY_KEY = "tls.key"


@dataclass(frozen=True)
class TlsSecretRef:
    """Temporal TLS material: ``ca.crt`` (unless ``ca`` is False) and ``tls.crt``/``tls.key``."""

    name: str
    ca: bool = True
    """Verify the server with the Secret's ca.crt; False: the system CAs (Temporal Cloud)."""

    @property
    def keys(self) -> list[str]:
        """The Secret's keys in use: the client pair, and ca.crt unless ``ca`` is False."""
        return [TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY] + ([TLS_CA_KEY] if self.ca else [])


@dataclass(frozen=True)
class TemporalSpec:
    address: str
    namespace: str = "default"
    tls: bool = False
    api_key: SecretKeyRef | None = None
    tls_secret: TlsSecretRef | None = None
    """Client certificate (mTLS) and server CA, mounted into every worker pod."""
    server_name: str | None = None
    """TLS server name (SNI) override."""

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.api_key is not None or self.tls_secret is not None


@dataclass(frozen=True)
class DisruptionBudget:
    """A pool's PodDisruptionBudget: exactly one of the two is set (int or "N%")."""

    min_available: int | str | None = None
    max_unavailable: int | str | None = None


DEFAULT_DISRUPTION_BUDGET = DisruptionBudget(max_unavailable=1)
"""One pod evicted at a time: a node drain never takes a whole pool down, and a
budget that counts no fixed number of pods never blocks a drain at minReplicas."""


def is_paused(metadata: Mapping[str, Any]) -> bool:
    """Does the object carry ``docpipe.io/paused: "true"``?"""
    value = (metadata.get("annotations") or {}).get(PAUSED_ANNOTATION, "")
    return str(value).strip().lower() == "true"


@dataclass(frozen=True)
class VersioningSpec:
    """A versioned pool: a Temporal Worker Deployment with one version per Build ID."""

    build_id: str
    """The version the spec asks for (explicit, else the image's tag or digest)."""
    rollout: Rollout


def parse_duration(text: str | int | float) -> timedelta:
    """A Go-style duration ("90s", "5m", "1h30m", "0"); plain numbers are seconds."""
    if isinstance(text, int | float):
        return timedelta(seconds=float(text))
    seconds = durations.duration_seconds(text, GO_DURATION_UNITS)
    if seconds is None:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h30m")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class PoolSpec:
    """One worker pool: its Deployment's shape and its scaling knobs."""

    kind: str
    image: str
    knobs: ScalingKnobs
    poll_interval_s: float
    image_pull_policy: str = "IfNotPresent"
    gpus_per_pod: int = 0
    resources: Mapping[str, Any] = field(default_factory=dict)
    env: tuple[Mapping[str, Any], ...] = ()
    env_from: tuple[Mapping[str, Any], ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)
    priority_class_name: str | None = None
    service_account_name: str | None = None
    termination_grace_s: int = DEFAULT_TERMINATION_GRACE_S["cpu"]
    """The pod's SIGTERM-to-SIGKILL time; the worker finishes in-flight work within
    :func:`worker_shutdown_grace_s` of it."""
    autoscaling: str = "operator"
    """``external``: replicas are left to an HPA/KEDA; the operator never writes them."""
    disruption_budget: DisruptionBudget | None = None
    """None: no PodDisruptionBudget (the default below 2 minReplicas)."""
    topology_spread: tuple[Mapping[str, Any], ...] = ()
    runtime_class_name: str | None = None
    volumes: tuple[Mapping[str, Any], ...] = ()
    volume_mounts: tuple[Mapping[str, Any], ...] = ()
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    gpu_resource_name: str = "nvidia.com/gpu"
    versioning: VersioningSpec | None = None
    """None: the pool runs unversioned, one Deployment (versioning.enabled false)."""

    @property
    def external(self) -> bool:
        return self.autoscaling == "external"

    @property
    def initial_replicas(self) -> int:
        """Replicas a new Deployment starts with: none for a pool that may idle at zero."""
        return 0 if self.knobs.scale_to_zero else self.knobs.min_replicas


@dataclass(frozen=True)
class PipelineSpec:
    temporal: TemporalSpec
    queues: Mapping[str, str]
    pools: Mapping[str, PoolSpec]
    env: tuple[Mapping[str, Any], ...] = ()
    env_from: tuple[Mapping[str, Any], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    s3: Mapping[str, Any] = field(default_factory=dict)
    metadata_db: Mapping[str, Any] = field(default_factory=dict)
    vector_db: Mapping[str, Any] = field(default_factory=dict)


class SpecError(ValueError):
    """The spec cannot be honoured; the message lists every problem."""


def problems(spec: Mapping[str, Any], name: str = "") -> list[str]:
    """What is wrong with a raw spec (the CRD's rules, checked again here)."""
    found = []
    if name and (len(name) > MAX_NAME_LENGTH or not re.match(NAME_PATTERN, name)):
        found.append(
            f"metadata.name {name!r}: must be a DNS label of at most {MAX_NAME_LENGTH} characters"
        )
    address = (spec.get("temporal") or {}).get("address", "")
    if not re.match(ADDRESS_PATTERN, str(address)):
        found.append(f"spec.temporal.address {address!r}: must be host:port ([v6]:port for IPv6)")
    pools = spec.get("pools") or {}
    for kind in POOLS:
        pool = pools.get(kind)
        if not isinstance(pool, Mapping):
            found.append(f"spec.pools.{kind}: missing")
            continue
        merged = POOL_DEFAULTS[kind] | dict(pool)
        scaling = SCALING_DEFAULTS[kind] | dict(pool.get("scaling") or {})
        where = f"spec.pools.{kind}"
        if not merged.get("image"):
            found.append(f"{where}.image: required")
        low, high = merged["minReplicas"], merged["maxReplicas"]
        if not isinstance(low, int) or low < 0:
            found.append(f"{where}.minReplicas: must be an integer >= 0 (got {low!r})")
        elif not isinstance(high, int) or high < 1:
            found.append(f"{where}.maxReplicas: must be an integer >= 1 (got {high!r})")
        elif low > high:
            found.append(f"{where}: minReplicas must not exceed maxReplicas ({low} > {high})")
        if merged["concurrency"] < 1:
            found.append(f"{where}.concurrency: must be >= 1")
        if merged.get("gpusPerPod", 0) < 0:
            found.append(f"{where}.gpusPerPod: must be >= 0")
        found += _pod_problems(where, merged)
        found += _versioning_problems(where, merged)
        if merged["terminationGracePeriodSeconds"] < MIN_TERMINATION_GRACE_S:
            found.append(
                f"{where}.terminationGracePeriodSeconds: must be at least "
                f"{MIN_TERMINATION_GRACE_S} s (the worker's shutdown gets "
                f"{SHUTDOWN_MARGIN_S} s less)"
            )
        for knob in (
            "taskSeconds",
            "targetBacklogAgeSeconds",
            "targetBacklogPerReplica",
            "pollIntervalSeconds",
        ):
            if not scaling[knob] > 0:
                found.append(f"{where}.scaling.{knob}: must be > 0")
        if scaling["maxScaleDownStep"] < 1:
            found.append(f"{where}.scaling.maxScaleDownStep: must be >= 1")
        for knob in ("scaleUpHorizonSeconds", "scaleDownStabilizationSeconds"):
            if scaling[knob] < 0:
                found.append(f"{where}.scaling.{knob}: must be >= 0")
        if not 0 <= scaling["upstreamFraction"] <= 10:
            found.append(f"{where}.scaling.upstreamFraction: must be between 0 and 10")
    return found


def _pod_problems(where: str, pool: Mapping[str, Any]) -> list[str]:
    """The new per-pool pod settings' rules (also in the CRD, where a schema can say them)."""
    found = []
    if pool.get("autoscaling") not in AUTOSCALING_MODES:
        found.append(f"{where}.autoscaling: must be one of {', '.join(AUTOSCALING_MODES)}")
    budget = pool.get("podDisruptionBudget") or {}
    if "minAvailable" in budget and "maxUnavailable" in budget:
        found.append(f"{where}.podDisruptionBudget: set minAvailable or maxUnavailable, not both")
    resource = pool.get("gpuResourceName", "nvidia.com/gpu")
    if not re.match(EXTENDED_RESOURCE_PATTERN, str(resource)):
        found.append(f"{where}.gpuResourceName {resource!r}: must be <domain>/<name>")
    names = [v.get("name") for v in pool.get("volumes") or ()]
    for name in names:
        if name in RESERVED_VOLUMES:
            found.append(f"{where}.volumes: {name!r} is the operator's own volume; rename it")
    if len(set(names)) != len(names):
        found.append(f"{where}.volumes: names must be unique")
    known = set(names) | set(RESERVED_VOLUMES)
    for mount in pool.get("volumeMounts") or ():
        if mount.get("name") not in known:
            found.append(f"{where}.volumeMounts: {mount.get('name')!r} names no volume")
    return found


def _versioning_problems(where: str, pool: Mapping[str, Any]) -> list[str]:
    """A versioned pool needs a Build ID and a rollout versioning.Rollout accepts."""
    raw = pool.get("versioning") or {}
    if not raw.get("enabled", False):
        return []
    found = []
    try:
        _build_id(pool)
    except ValueError as exc:
        found.append(f"{where}.versioning.buildId: {exc}")
    if pool.get("autoscaling") == "external":
        # An HPA targets one Deployment by name; a versioned pool has one per Build ID.
        found.append(f"{where}.versioning: not supported with autoscaling: external")
    try:
        _rollout(raw.get("rollout") or {})
    except ValueError as exc:
        found.append(f"{where}.versioning.rollout: {exc}")
    return found


def _build_id(pool: Mapping[str, Any]) -> str:
    return build_id_for(str(pool.get("image") or ""), (pool.get("versioning") or {}).get("buildId"))


def _rollout(raw: Mapping[str, Any]) -> Rollout:
    """The CRD's ``rollout`` block as the policy's input (ValueError says what is wrong)."""
    merged = ROLLOUT_DEFAULTS | dict(raw)
    if merged["strategy"] not in ROLLOUT_STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(ROLLOUT_STRATEGIES)}")
    steps = tuple(
        RampStep(float(step["rampPercentage"]), parse_duration(step.get("pauseDuration", "0")))
        for step in merged.get("steps") or ()
    )
    return Rollout(
        strategy=Strategy(merged["strategy"]),
        steps=steps,
        scale_down_delay=parse_duration(merged["scaleDownDelay"]),
        delete_delay=parse_duration(merged["deleteDelay"]),
    )


def _versioning(pool: Mapping[str, Any]) -> VersioningSpec | None:
    raw = pool.get("versioning") or {}
    if not raw.get("enabled", False):
        return None
    return VersioningSpec(build_id=_build_id(pool), rollout=_rollout(raw.get("rollout") or {}))


def parse(spec: Mapping[str, Any], name: str = "") -> PipelineSpec:
    """The typed spec with defaults applied; :class:`SpecError` if it is invalid."""
    found = problems(spec, name)
    if found:
        raise SpecError("; ".join(found))
    raw_temporal = TEMPORAL_DEFAULTS | dict(spec["temporal"])
    api_key = None
    if raw_temporal.get("apiKeySecretRef"):
        ref = raw_temporal["apiKeySecretRef"]
        api_key = SecretKeyRef(ref["name"], ref.get("key", SECRET_KEY_DEFAULTS["temporalApiKey"]))
    tls_secret = None
    if raw_temporal.get("tlsSecretRef"):
        ref = raw_temporal["tlsSecretRef"]
        tls_secret = TlsSecretRef(ref["name"], bool(ref.get("ca", True)))
    temporal = TemporalSpec(
        address=raw_temporal["address"],
        namespace=raw_temporal["namespace"],
        tls=bool(raw_temporal["tls"]),
        api_key=api_key,
        tls_secret=tls_secret,
        server_name=raw_temporal.get("serverName") or None,
    )
    return PipelineSpec(
        temporal=temporal,
        queues=QUEUE_DEFAULTS | dict(spec.get("queues") or {}),
        pools={kind: _pool(kind, spec["pools"][kind]) for kind in POOLS},
        env=tuple(spec.get("env") or ()),
        env_from=tuple(spec.get("envFrom") or ()),
        image_pull_secrets=tuple(s["name"] for s in spec.get("imagePullSecrets") or ()),
        s3=_store(spec.get("s3"), accessKeyKey="s3AccessKey", secretKeyKey="s3SecretKey"),
        metadata_db=_store(spec.get("metadataDb"), usernameKey="dbUser", passwordKey="dbPassword"),
        vector_db=_store(spec.get("vectorDb"), tokenKey="vectorDbToken"),
    )


def _store(raw: Mapping[str, Any] | None, **key_defaults: str) -> dict[str, Any]:
    """A store section with its credentials Secret's key names defaulted."""
    store = dict(raw or {})
    if store.get("credentialsSecretRef"):
        defaults = {field: SECRET_KEY_DEFAULTS[name] for field, name in key_defaults.items()}
        store["credentialsSecretRef"] = defaults | dict(store["credentialsSecretRef"])
    return store


def pool_knobs(kind: str, raw: Mapping[str, Any]) -> tuple[ScalingKnobs, float]:
    """A pool's scaling knobs and poll interval, the CRD's defaults filled in."""
    pool = POOL_DEFAULTS[kind] | dict(raw)
    scaling = SCALING_DEFAULTS[kind] | dict(raw.get("scaling") or {})
    knobs = ScalingKnobs(
        min_replicas=pool["minReplicas"],
        max_replicas=pool["maxReplicas"],
        concurrency=pool["concurrency"],
        target_backlog_per_replica=float(scaling["targetBacklogPerReplica"]),
        task_seconds=float(scaling["taskSeconds"]),
        target_backlog_age_s=float(scaling["targetBacklogAgeSeconds"]),
        scale_up_horizon_s=float(scaling["scaleUpHorizonSeconds"]),
        scale_down_stabilization_s=float(scaling["scaleDownStabilizationSeconds"]),
        max_scale_down_step=int(scaling["maxScaleDownStep"]),
        scale_to_zero=bool(scaling["scaleToZero"]),
        upstream_fraction=float(scaling["upstreamFraction"]),
    )
    return knobs, float(scaling["pollIntervalSeconds"])


def _pool(kind: str, raw: Mapping[str, Any]) -> PoolSpec:
    pool = POOL_DEFAULTS[kind] | dict(raw)
    knobs, poll_interval_s = pool_knobs(kind, raw)
    return PoolSpec(
        kind=kind,
        image=pool["image"],
        knobs=knobs,
        poll_interval_s=poll_interval_s,
        image_pull_policy=pool["imagePullPolicy"],
        gpus_per_pod=int(pool.get("gpusPerPod", 0)) if kind == "gpu" else 0,
        resources=dict(pool.get("resources") or {}),
        env=tuple(pool.get("env") or ()),
        env_from=tuple(pool.get("envFrom") or ()),
        node_selector=dict(pool.get("nodeSelector") or {}),
        tolerations=tuple(pool.get("tolerations") or ()),
        affinity=dict(pool.get("affinity") or {}),
        priority_class_name=pool.get("priorityClassName"),
        service_account_name=pool.get("serviceAccountName"),
        termination_grace_s=int(pool["terminationGracePeriodSeconds"]),
        autoscaling=pool["autoscaling"],
        disruption_budget=_disruption_budget(pool),
        topology_spread=tuple(pool.get("topologySpreadConstraints") or ()),
        runtime_class_name=pool.get("runtimeClassName") or None,
        volumes=tuple(pool.get("volumes") or ()),
        volume_mounts=tuple(pool.get("volumeMounts") or ()),
        pod_annotations=dict(pool.get("podAnnotations") or {}),
        gpu_resource_name=pool.get("gpuResourceName", "nvidia.com/gpu"),
        versioning=_versioning(pool),
    )


def _disruption_budget(pool: Mapping[str, Any]) -> DisruptionBudget | None:
    """The pool's budget: on by default from two replicas up (below that, a budget
    would either block every node drain or protect nothing)."""
    raw = pool.get("podDisruptionBudget") or {}
    if not raw.get("enabled", pool["minReplicas"] >= 2):
        return None
    if "minAvailable" in raw:
        return DisruptionBudget(min_available=raw["minAvailable"])
    if "maxUnavailable" in raw:
        return DisruptionBudget(max_unavailable=raw["maxUnavailable"])
    return DEFAULT_DISRUPTION_BUDGET
