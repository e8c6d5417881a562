"""The operator process's own settings (environment variables, prefix DOCPIPE_OPERATOR_).

Everything about a pipeline is in its DocumentPipeline; these only say how the
operator runs: which namespaces it watches, how it coordinates with other
replicas, how often its timer ticks, where it serves metrics and health.
"""

from __future__ import annotations

import random
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OperatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCPIPE_OPERATOR_", case_sensitive=False)

    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Namespaces to watch (comma-separated); empty: the whole cluster."""
    peering: str = "docpipe"
    """kopf peering object shared by the replicas (a KopfPeering per namespace, or a
    ClusterKopfPeering when cluster-wide)."""
    standalone: bool = False
    """No peering: for a single replica, or development."""
    priority: int = Field(default_factory=lambda: random.randint(1, 1_000_000))
    """Peering priority: the highest live replica works, the others wait. kopf freezes
    every replica when two share a priority, so each replica draws its own."""
    tick_seconds: float = Field(5.0, gt=0)
    """Timer interval per DocumentPipeline; a pool is polled when its pollIntervalSeconds is due."""
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

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING"):
            raise ValueError("must be DEBUG, INFO or WARNING")
        return level

    @field_validator("namespaces", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value


def load() -> OperatorConfig:
    return OperatorConfig()
