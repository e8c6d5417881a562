"""Settings come from the environment; bad values fail at start, naming the variable."""

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
