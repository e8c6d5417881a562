"""Fixtures shared by every test directory.

``devstack`` starts the real local servers (Temporal, PostgreSQL, ChromaDB,
moto's S3) once per test session, in parallel (a few seconds), and stops them
at the end. Tests that need a server take ``devstack`` or ``settings``; tests
that run workers in subprocesses pass ``devstack.env`` to them. Nothing is
skipped when a server cannot start: the error carries the server's log tail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from docpipe.config import Settings
from docpipe.devstack import DevStack


@pytest.fixture(scope="session")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """The running local stack; its logs are under ``<data_dir>/logs``."""
    with DevStack(tmp_path_factory.mktemp("devstack"), object_store="s3") as stack:
        yield stack


@pytest.fixture(scope="session")
def settings(devstack: DevStack) -> Settings:
    """docpipe settings pointing at ``devstack``'s servers."""
    return devstack.settings()
