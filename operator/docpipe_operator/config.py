"""The operator process's own settings (environment variables, prefix DOCPIPE_OPERATOR_).

Everything about a pipeline is in its DocumentPipeline; these only say how the
operator runs: which namespaces it watches, how it coordinates with other
replicas, how often its timer ticks, where it serves metrics and health.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from docpipe_operator.trust import TrustPolicy

# Mounted into every pod whose ServiceAccount token is mounted (the operator's is).
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _pod_namespace() -> str:
    """The namespace the operator runs in, when it runs in a pod; else empty."""
    try:
        return POD_NAMESPACE_FILE.read_text().strip()
    except OSError:
        return ""


class OperatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCPIPE_OPERATOR_", case_sensitive=False)

    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Namespaces to watch (comma-separated); empty: the operator's own namespace."""
    cluster_wide: bool = False
    """Watch every namespace instead (its RBAC must then be cluster-wide too): only when
    asked for, since the operator's rights then reach every namespace's Secrets."""
    peering: str = "docpipe"
    """kopf peering object shared by the replicas (a KopfPeering per namespace, or a
    ClusterKopfPeering when cluster-wide)."""
    standalone: bool = False
    """No peering: for a single replica, or development."""
    priority: int = Field(default_factory=lambda: random.randint(1, 1_000_000))
    """Peering priority: the highest live replica works, the others wait. kopf freezes
    every replica when two share a priority, so each replica draws its own."""
    tick_seconds: float = Field(2.0, gt=0)
    """Timer interval per DocumentPipeline: a pool is polled when its pollIntervalSeconds is due,
    and a pool at zero is woken by work within a tick (autoscaler._wake_check)."""
    retry_backoff_seconds: float = Field(10.0, gt=0)
    """Wait before retrying a create/update that failed (API server 5xx, a conflict)."""
    temporal_timeout_seconds: float = Field(5.0, gt=0)
    """Deadline of one Temporal connect or DescribeTaskQueue call."""
    log_level: str = "INFO"
    """DEBUG, INFO or WARNING. Secrets the operator reads never reach the log at any level."""
    metrics_port: int = Field(9090, ge=0, le=65535)
    """prometheus-client /metrics; 0 disables it."""
    health_port: int = Field(8080, ge=0, le=65535)
    """kopf's liveness endpoint (/healthz); 0 disables it."""
    allowed_images: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Worker images a pipeline may run (comma-separated globs over the whole reference,
    e.g. ``ghcr.io/docpipe/*``). Empty: none; a pipeline is refused until this is set,
    because an image of the author's choice could carry every Secret its pod sees away."""
    allowed_service_accounts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """ServiceAccounts a pool may name besides ``default`` (comma-separated globs)."""
    own_namespace: str = Field(default_factory=_pod_namespace)
    """The operator's namespace (the chart sets it from the downward API): Secrets there
    need no docpipe.io/allow-reference label. Empty: no namespace is exempt."""

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING"):
            raise ValueError("must be DEBUG, INFO or WARNING")
        return level

    @field_validator("namespaces", "allowed_images", "allowed_service_accounts", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    def trust(self) -> TrustPolicy:
        """What a DocumentPipeline may make the operator do (trust.py)."""
        return TrustPolicy(
            allowed_images=tuple(self.allowed_images),
            allowed_service_accounts=tuple(self.allowed_service_accounts),
            operator_namespace=self.own_namespace or None,
        )

    def watched(self) -> list[str]:
        """The namespaces to watch: ``namespaces``, else the operator's own; [] when
        cluster-wide. Raises ValueError when there is nothing to go on."""
        if self.cluster_wide:
            if self.namespaces:
                raise ValueError(
                    "DOCPIPE_OPERATOR_CLUSTER_WIDE watches every namespace: "
                    "leave DOCPIPE_OPERATOR_NAMESPACES empty"
                )
            return []
        watched = self.namespaces or ([self.own_namespace] if self.own_namespace else [])
        if not watched:
            raise ValueError(
                "no namespace to watch: set DOCPIPE_OPERATOR_NAMESPACES (or "
                "DOCPIPE_OPERATOR_CLUSTER_WIDE=true to watch every namespace)"
            )
        return watched


def load() -> OperatorConfig:
    return OperatorConfig()
