"""A Chroma server with token authentication: the right VECTOR_DB_TOKEN stores and
finds vectors; a missing or wrong one is one clear error naming VECTOR_DB_URL.

The server is chromadb's own (``uvicorn chromadb.app:app`` with its
TokenAuthenticationServerProvider), started by the devstack's ChromaServer:
``chroma run``, Chroma 1.x's Rust server, has no token authentication at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from docpipe.config import Settings, load_settings
from docpipe.local.devstack import ChromaServer, DevStack
from docpipe.storage.vectors import VectorDbCredentialsRefused, VectorStore

pytestmark = pytest.mark.integration

TOKEN = "docpipe-test-token-8b1f"


def _token_server(data_dir: Path, header: str) -> Iterator[ChromaServer]:
    server = ChromaServer(DevStack(data_dir), None, token=TOKEN, token_header=header)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bearer_chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """Demands ``Authorization: Bearer <TOKEN>``."""
    yield from _token_server(tmp_path_factory.mktemp("chroma-bearer"), "Authorization")


@pytest.fixture(scope="module")
def x_token_chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """Demands ``X-Chroma-Token: <TOKEN>``."""
    yield from _token_server(tmp_path_factory.mktemp("chroma-x-token"), "X-Chroma-Token")


def settings_for(server: ChromaServer, **overrides: object) -> Settings:
    return load_settings(
        vector_db_url=server.url, vector_collection=f"auth_{uuid.uuid4().hex[:8]}", **overrides
    )


async def test_the_right_token_stores_and_finds_vectors(bearer_chroma: ChromaServer) -> None:
    vectors = np.eye(3, 8, dtype=np.float32)
    async with VectorStore.open(settings_for(bearer_chroma, vector_db_token=TOKEN)) as store:
        await store.upsert_document("doc-a", ["one", "two", "three"], vectors, {"lang": "en"})
        assert await store.count_for("doc-a") == 3
        hits = await store.nearest(vectors[1], 1)
    assert [(h.document_id, h.chunk_index, h.text) for h in hits] == [("doc-a", 1, "two")]
    assert hits[0].similarity == pytest.approx(1.0)


async def test_the_token_can_travel_in_x_chroma_token(x_token_chroma: ChromaServer) -> None:
    settings = settings_for(
        x_token_chroma, vector_db_token=TOKEN, vector_db_auth_header="X-Chroma-Token"
    )
    async with VectorStore.open(settings) as store:
        await store.upsert_document("doc-b", ["only"], np.ones((1, 4), dtype=np.float32))
        assert await store.count() == 1


async def test_no_token_is_refused_with_a_clear_error(bearer_chroma: ChromaServer) -> None:
    with pytest.raises(VectorDbCredentialsRefused) as refused:
        async with VectorStore.open(settings_for(bearer_chroma)):
            pass
    message = str(refused.value)
    assert f"VECTOR_DB_URL={bearer_chroma.url}" in message
    assert "refused the credentials" in message
    assert "VECTOR_DB_TOKEN is not set" in message


@pytest.mark.parametrize(
    ("token", "header"),
    [("not-the-token", "Authorization"), (TOKEN, "X-Chroma-Token")],
    ids=["wrong token", "right token, wrong header"],
)
async def test_a_wrong_token_is_refused_and_never_shown(
    bearer_chroma: ChromaServer, token: str, header: str
) -> None:
    settings = settings_for(bearer_chroma, vector_db_token=token, vector_db_auth_header=header)
    with pytest.raises(VectorDbCredentialsRefused) as refused:
        async with VectorStore.open(settings):
            pass
    message = str(refused.value)
    assert f"VECTOR_DB_URL={bearer_chroma.url}" in message
    assert f"refused the credentials (the VECTOR_DB_TOKEN sent in {header}" in message
    assert token not in message


def run_docpipe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docpipe", *args],
        env={**os.environ, "COLUMNS": "250", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_refused_in_one_line(result: subprocess.CompletedProcess[str], url: str) -> None:
    """Status 2 (configuration: waiting will not help), one line, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert f"VECTOR_DB_URL={url}" in lines[0] and "refused the credentials" in lines[0]
    assert "not-the-token" not in result.stderr


def test_vector_search_with_a_wrong_token_says_so(
    devstack: DevStack, bearer_chroma: ChromaServer
) -> None:
    env = {**devstack.env, "VECTOR_DB_URL": bearer_chroma.url, "VECTOR_DB_TOKEN": "not-the-token"}
    result = run_docpipe("search", "anything", "--mode", "vector", env=env)
    assert_refused_in_one_line(result, bearer_chroma.url)


def test_the_io_worker_with_a_wrong_token_stops_at_start(
    devstack: DevStack, bearer_chroma: ChromaServer
) -> None:
    env = {**devstack.env, "VECTOR_DB_URL": bearer_chroma.url, "VECTOR_DB_TOKEN": "not-the-token"}
    env |= {"METRICS_PORT": "0", "SDK_METRICS_PORT": "0"}
    result = run_docpipe("worker", "io", env=env)
    assert_refused_in_one_line(result, bearer_chroma.url)
