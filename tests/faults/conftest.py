"""One local stack and one set of workers for all fault tests, of their own.

These tests kill workers and stop servers, so they never touch the session's
shared ``devstack``: the package gets a persistent DevStack (Temporal on
SQLite, PostgreSQL and Chroma on disk) on fixed ports, so a server stopped
and started again comes back where its clients expect it, with its data.
Workers reach S3 through a :class:`LatencyProxy` (see its docstring for why),
and download documents from a local HTTP server.

Every test leaves a full, healthy set of servers and workers behind, and
appends its figures to ``harness.FIGURES``, printed at the end of the run.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from local_sources import TEST_SOURCE_ROOTS
from temporalio.client import Client

from docpipe.config import Settings, load_settings
from docpipe.local.devstack import DevStack, free_port
from docpipe.local.workers import WORKER_KINDS, LocalWorkers

from .harness import FIGURES, DocServer, figures_table
from .latency_proxy import LatencyProxy


@pytest.fixture(scope="package")
def fault_stack() -> Iterator[DevStack]:
    """Persistent servers on fixed ports: restartable without losing data."""
    # Not under pytest's tmp_path: see tests/conftest.py (PostgreSQL's user must reach it).
    data_dir = Path(tempfile.mkdtemp(prefix="docpipe-faults-"))
    stack = DevStack(
        data_dir,
        persistent=True,
        temporal_port=free_port(),
        postgres_port=free_port(),
        chroma_port=free_port(),
        s3_port=free_port(),
        local_source_roots=TEST_SOURCE_ROOTS,
    )
    try:
        with stack:
            yield stack
    finally:
        stack.remove_data()  # persistent only for the restarts, not past the tests
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="package")
def s3_proxy(fault_stack: DevStack) -> Iterator[LatencyProxy]:
    assert fault_stack.s3 is not None
    with LatencyProxy(fault_stack.s3.port) as proxy:
        yield proxy


@pytest.fixture(scope="package")
def doc_server() -> Iterator[DocServer]:
    server = DocServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def fault_env(fault_stack: DevStack, s3_proxy: LatencyProxy) -> dict[str, str]:
    """What the workers see: S3 through the proxy, downloads from 127.0.0.1 allowed."""
    return {
        **fault_stack.env,
        "S3_ENDPOINT": s3_proxy.url,
        "DOWNLOAD_ALLOW_PRIVATE_NETWORKS": "true",
        "WORKER_CPU_THREADS": "2",
    }


@pytest.fixture(scope="package")
def fault_settings(fault_env: dict[str, str]) -> Settings:
    return load_settings(**{k.lower(): v for k, v in fault_env.items()})


@pytest.fixture(scope="package")
def check_settings(fault_stack: DevStack) -> Settings:
    """The test's own view of the stores: straight to S3, never through the proxy."""
    return fault_stack.settings()


@pytest.fixture(scope="package")
async def workers(
    fault_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LocalWorkers]:
    """All four workers, polling; tests that kill one start its replacement."""
    group = LocalWorkers(tmp_path_factory.mktemp("fault-worker-logs"), fault_env)
    try:
        group.start(WORKER_KINDS)
        for worker in list(group.processes.values()):
            await worker.wait_polling()
        yield group
    finally:
        group.stop()


@pytest.fixture(scope="package")
async def client(fault_stack: DevStack) -> Client:
    assert fault_stack.temporal is not None
    return await Client.connect(fault_stack.temporal.address)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures for docs/reliability.md: faults, documents, recovery times."""
    if not FIGURES:
        return
    terminalreporter.section("fault injection figures")
    for line in figures_table():
        terminalreporter.write_line(line)
