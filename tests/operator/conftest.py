"""Fixtures for the operator tests: an emulated Kubernetes API (kmock), the
real kopf operator running in-process against it, and a real Temporal dev
server for the backlog.

The operator reads its settings at import, so they are set here, before any
test module imports the handlers: a short timer tick and Temporal deadline
keep the suite fast, and every wait below polls with a deadline instead of
sleeping a fixed time (the machine may be slow).
"""

from __future__ import annotations

import os

os.environ.setdefault("DOCPIPE_OPERATOR_TICK_SECONDS", "0.5")
os.environ.setdefault("DOCPIPE_OPERATOR_TEMPORAL_TIMEOUT_SECONDS", "2")
os.environ.setdefault("DOCPIPE_OPERATOR_RETRY_BACKOFF_SECONDS", "0.5")
# The images the examples and tests run; any other is refused (docs/operator.md, trust model).
os.environ.setdefault("DOCPIPE_OPERATOR_ALLOWED_IMAGES", "ghcr.io/example/docpipe-*,ghcr.io/x/*")
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from kmock import Server
from kube_emulator import ApiServer
from operator_harness import (
    NAMESPACE,
    Cluster,
    add_example_secrets,
    running_operator,
    start_temporal,
    stop_temporal,
    write_kubeconfig,
)

from docpipe.local.devstack import TemporalServer


@pytest_asyncio.fixture
async def cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[Cluster]:
    """An empty cluster with our namespace; $KUBECONFIG points at it."""
    async with ApiServer() as api, Server(api):
        url = str(api.url).rstrip("/")
        api.add_namespace(NAMESPACE)
        add_example_secrets(api)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield Cluster(api, url)


@pytest_asyncio.fixture
async def operator(cluster: Cluster) -> AsyncIterator[None]:
    async with running_operator():
        yield


@pytest.fixture(scope="session")
def temporal() -> Iterator[TemporalServer]:
    """One dev server shared by the tests that never stop it."""
    server = start_temporal()
    yield server
    stop_temporal(server)
