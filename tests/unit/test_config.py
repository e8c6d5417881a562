"""Settings come from the environment; bad values fail at start, naming the variable."""

from pathlib import Path

import pytest

from docpipe.config import ConfigError, load_settings


def test_defaults_match_the_documented_table(monkeypatch):
    for name in ("TEMPORAL_HOST", "S3_ENDPOINT", "METADATA_DB_PORT", "GPU_COUNT"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert s.temporal_host == "localhost:7233"
    assert s.s3_endpoint == "http://localhost:9000"
    assert s.s3_access_key.get_secret_value() == "minioadmin"
    assert s.s3_bucket == "documents"
    assert s.vector_db_url == "http://localhost:8000"
    assert (s.metadata_db_host, s.metadata_db_port) == ("localhost", 5433)
    assert (s.metadata_db_name, s.metadata_db_user) == ("document_metadata", "docuser")
    assert s.gpu_count == 2
    assert s.cpu_task_queue == "cpu-bound-queue"
    assert s.max_concurrent_io_activities == 200


def test_env_vars_override_defaults(monkeypatch):
    monkeypatch.setenv("WORKER_CPU_THREADS", "3")
    monkeypatch.setenv("GPU_TASK_QUEUE", "gpus")
    s = load_settings()
    assert s.worker_cpu_threads == 3
    assert s.gpu_task_queue == "gpus"
    assert s.task_queue("gpu") == "gpus"  # what the gpu worker polls
    assert s.task_queue("workflow") == "document-pipeline-queue"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("METADATA_DB_PORT", "not-a-port"),
        ("TEMPORAL_HOST", "no-port-here"),
        ("S3_ENDPOINT", "ftp://x"),
        ("WORKER_CPU_THREADS", "0"),
    ],
)
def test_a_bad_value_fails_with_a_message_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_chunk_overlap_must_be_smaller_than_the_chunk(monkeypatch):
    monkeypatch.setenv("CHUNK_OVERLAP_TOKENS", "999")
    with pytest.raises(ConfigError, match="CHUNK_OVERLAP_TOKENS must be smaller"):
        load_settings()


def test_a_unix_socket_directory_works_as_database_host(monkeypatch, tmp_path):
    monkeypatch.setenv("METADATA_DB_HOST", str(tmp_path))
    assert f"host={tmp_path}" in load_settings().metadata_db_conninfo


# --- Temporal TLS, mTLS and API key: one mapping for every client ------------------

TLS_VARS = (
    "TEMPORAL_TLS",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS_CA_PATH",
    "TEMPORAL_TLS_CERT_PATH",
    "TEMPORAL_TLS_KEY_PATH",
    "TEMPORAL_TLS_SERVER_NAME",
)


@pytest.fixture
def pem_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Three PEM-looking files (the mapping only reads bytes) and a clean TLS environment."""
    for name in TLS_VARS:
        monkeypatch.delenv(name, raising=False)
    files = {}
    for name in ("ca.crt", "tls.crt", "tls.key"):
        files[name] = tmp_path / name
        files[name].write_bytes(f"-----{name}-----".encode())
    return files


def test_without_tls_settings_the_connection_is_plain(pem_files: dict[str, Path]) -> None:
    connection = load_settings().temporal_connection()
    assert connection.tls_config() is False
    assert connection.api_key is None


def test_temporal_tls_alone_uses_the_system_cas(
    pem_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_TLS", "true")
    assert load_settings().temporal_connection().tls_config() is True


def test_an_api_key_implies_tls(
    pem_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Temporal Cloud API keys are only ever sent over TLS."""
    monkeypatch.setenv("TEMPORAL_API_KEY", "key-123")
    connection = load_settings().temporal_connection()
    assert connection.tls_config() is True
    assert connection.api_key == "key-123"


def test_ca_client_certificate_and_server_name_become_a_tls_config(
    pem_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from temporalio.service import TLSConfig

    monkeypatch.setenv("TEMPORAL_TLS_CA_PATH", str(pem_files["ca.crt"]))
    monkeypatch.setenv("TEMPORAL_TLS_CERT_PATH", str(pem_files["tls.crt"]))
    monkeypatch.setenv("TEMPORAL_TLS_KEY_PATH", str(pem_files["tls.key"]))
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.internal")
    tls = load_settings().temporal_connection().tls_config()
    assert tls == TLSConfig(
        server_root_ca_cert=b"-----ca.crt-----",
        client_cert=b"-----tls.crt-----",
        client_private_key=b"-----tls.key-----",
        domain="temporal.internal",
    )


def test_a_private_ca_alone_is_server_tls_without_a_client_certificate(
    pem_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_TLS_CA_PATH", str(pem_files["ca.crt"]))
    tls = load_settings().temporal_connection().tls_config()
    assert tls.server_root_ca_cert == b"-----ca.crt-----"
    assert (tls.client_cert, tls.client_private_key, tls.domain) == (None, None, None)


@pytest.mark.parametrize("given", ["TEMPORAL_TLS_CERT_PATH", "TEMPORAL_TLS_KEY_PATH"])
def test_a_client_certificate_without_its_key_is_a_startup_error(
    pem_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.setenv(given, str(pem_files["tls.crt"]))
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH go together" in str(error.value)


def test_a_missing_tls_file_is_a_startup_error_naming_the_variable(
    pem_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TEMPORAL_TLS_CA_PATH", str(tmp_path / "nope.crt"))
    with pytest.raises(ConfigError, match="TEMPORAL_TLS_CA_PATH: no such file"):
        load_settings()


def test_secrets_stay_out_of_reprs_and_errors(
    pem_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings and connections get logged and shown in tracebacks: never their secrets."""
    monkeypatch.setenv("TEMPORAL_API_KEY", "api-key-SHOULD-NOT-SHOW")
    monkeypatch.setenv("METADATA_DB_PASSWORD", "db-pass-SHOULD-NOT-SHOW")
    monkeypatch.setenv("S3_SECRET_KEY", "s3-secret-SHOULD-NOT-SHOW")
    monkeypatch.setenv("WEBHOOK_SECRET", "hook-SHOULD-NOT-SHOW")
    monkeypatch.setenv("LLM_API_KEY", "llm-SHOULD-NOT-SHOW")
    monkeypatch.setenv("VECTOR_DB_TOKEN", "chroma-token-SHOULD-NOT-SHOW")
    monkeypatch.setenv("TEMPORAL_TLS_CERT_PATH", str(pem_files["tls.crt"]))
    monkeypatch.setenv("TEMPORAL_TLS_KEY_PATH", str(pem_files["tls.key"]))
    settings = load_settings()
    shown = repr(settings) + str(settings) + repr(settings.temporal_connection())
    assert "SHOULD-NOT-SHOW" not in shown
    assert "tls.key-----" not in shown
    # A secret's bad value is named, never echoed.
    with pytest.raises(ConfigError) as error:
        load_settings(metadata_db_password=["SHOULD-NOT-SHOW"])
    assert "METADATA_DB_PASSWORD" in str(error.value)
    assert "SHOULD-NOT-SHOW" not in str(error.value)
    with pytest.raises(ConfigError) as error:
        load_settings(vector_db_token="SHOULD-NOT-SHOW with a space")
    assert "VECTOR_DB_TOKEN" in str(error.value)
    assert "SHOULD-NOT-SHOW" not in str(error.value)


def test_every_temporal_client_is_made_by_the_one_connect_function() -> None:
    """Workers, CLI, queue statistics and the operator share TLS/mTLS/API-key handling
    only if none of them calls Client.connect itself (devstack's readiness probe of the
    local dev server is the one exception)."""
    root = Path(__file__).resolve().parents[2]
    sources = [
        *root.glob("services/docpipe/**/*.py"),
        *root.glob("operator/docpipe_operator/**/*.py"),
    ]
    callers = sorted(
        str(path.relative_to(root))
        for path in sources
        if "Client.connect(" in path.read_text(encoding="utf-8")
    )
    assert callers == ["services/docpipe/config.py", "services/docpipe/local/devstack/servers.py"]


def test_log_level_is_checked_and_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"
    monkeypatch.setenv("LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        load_settings()


def test_the_vector_db_token_travels_in_the_header_chroma_expects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from docpipe.storage.vectors import auth_headers

    monkeypatch.delenv("VECTOR_DB_TOKEN", raising=False)
    monkeypatch.delenv("VECTOR_DB_AUTH_HEADER", raising=False)
    assert load_settings().vector_db_token is None
    assert auth_headers(load_settings()) == {}
    # A Secret written with `echo` ends in a newline; a blank one is no token at all.
    monkeypatch.setenv("VECTOR_DB_TOKEN", "s3cr3t-token\n")
    assert auth_headers(load_settings()) == {"Authorization": "Bearer s3cr3t-token"}
    monkeypatch.setenv("VECTOR_DB_AUTH_HEADER", "x-chroma-token")
    assert load_settings().vector_db_auth_header == "X-Chroma-Token"
    assert auth_headers(load_settings()) == {"X-Chroma-Token": "s3cr3t-token"}
    monkeypatch.setenv("VECTOR_DB_TOKEN", "  ")
    assert auth_headers(load_settings()) == {}
    monkeypatch.setenv("VECTOR_DB_AUTH_HEADER", "Cookie")
    with pytest.raises(ConfigError, match="VECTOR_DB_AUTH_HEADER"):
        load_settings()
