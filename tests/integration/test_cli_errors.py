"""A backend that is down is one line and a quick exit, not a traceback.

Each case runs the real CLI as a subprocess with one service pointed at an
address where nothing answers: a closed port (refused at once) or a socket
that accepts connections and never speaks (the client must give up by itself).
Bounds are generous -- the promise is "seconds, not a minute" -- so a slow CI
machine does not make them flaky.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from docpipe.client.reachability import EXIT_UNREACHABLE

pytestmark = pytest.mark.integration

QUICK_S = 20.0
"""Generous: the CLI gives up after 5 s; interpreter start-up and imports come on top."""


def docpipe(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "docpipe", *args],
        env={**os.environ, "COLUMNS": "80", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, time.monotonic() - started


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def assert_one_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == EXIT_UNREACHABLE, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], lines[0]


def test_start_with_temporal_refusing_names_the_address(closed_port: int) -> None:
    port = closed_port
    result, took = docpipe(
        "start", "--csv-file", "testdata/documents.csv", TEMPORAL_HOST=f"127.0.0.1:{port}"
    )
    assert_one_line(result, "Temporal", f"127.0.0.1:{port}", "refused")
    assert took < QUICK_S


def test_status_with_temporal_silent_gives_up_by_itself(silent_port: int) -> None:
    result, took = docpipe("status", TEMPORAL_HOST=f"127.0.0.1:{silent_port}")
    assert_one_line(result, "Temporal", f"127.0.0.1:{silent_port}")
    assert took < QUICK_S


@pytest.mark.parametrize(
    "command", [["failures"], ["show", "doc-x"], ["search", "x", "--mode", "text"]]
)
def test_commands_reading_postgresql_say_when_it_is_down(
    command: list[str], closed_port: int
) -> None:
    port = closed_port
    result, took = docpipe(*command, METADATA_DB_HOST="127.0.0.1", METADATA_DB_PORT=str(port))
    assert_one_line(result, "PostgreSQL", f"127.0.0.1:{port}", "refused")
    assert took < QUICK_S


def test_a_silent_postgresql_is_given_up_on_too(silent_port: int) -> None:
    result, took = docpipe(
        "failures", METADATA_DB_HOST="127.0.0.1", METADATA_DB_PORT=str(silent_port)
    )
    assert_one_line(result, "PostgreSQL")
    assert took < QUICK_S


def test_vector_search_says_when_chroma_is_down(devstack, closed_port: int) -> None:
    port = closed_port
    env = {**devstack.env, "VECTOR_DB_URL": f"http://127.0.0.1:{port}"}
    result, took = docpipe("search", "anything", "--mode", "vector", **env)
    assert_one_line(result, "Chroma", f"127.0.0.1:{port}")
    assert took < QUICK_S
