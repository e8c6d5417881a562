"""Fixtures shared by every test directory.

``devstack`` starts the real local servers (Temporal, PostgreSQL, ChromaDB,
moto's S3) once per test session, in parallel (a few seconds), and stops them
at the end. Tests that need a server take ``devstack`` or ``settings``; tests
that run workers in subprocesses pass ``devstack.env`` to them. Nothing is
skipped when a server cannot start: the error carries the server's log tail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from local_sources import TEST_SOURCE_ROOTS

from docpipe.config import Settings
from docpipe.local.devstack import DevStack

# Property tests explore the same examples on every run: a suite that passed stays
# passing, and CI never fails on an example found by chance. Explore new ones on
# purpose with HYPOTHESIS_PROFILE=explore (then pin what it finds as @example).
hypothesis_settings.register_profile("default", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, max_examples=2000)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def devstack() -> Iterator[DevStack]:
    """The running local stack; its logs are under ``<data_dir>/logs``."""
    with (
        _stack_data_dir() as data_dir,
        DevStack(data_dir, object_store="s3", local_source_roots=TEST_SOURCE_ROOTS) as stack,
    ):
        yield stack


@pytest.fixture(scope="session")
def settings(devstack: DevStack) -> Settings:
    """docpipe settings pointing at ``devstack``'s servers."""
    return devstack.settings()


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    """A data directory for a test that starts a DevStack of its own."""
    with _stack_data_dir() as data_dir:
        yield data_dir


@contextmanager
def _stack_data_dir() -> Iterator[Path]:
    """A fresh directory in the system temp dir, removed afterwards.

    Not under pytest's ``tmp_path``: when we are root, PostgreSQL runs as an
    unprivileged user that must traverse the path to its data, and every
    pytest session (concurrent ones included) resets ``/tmp/pytest-of-<user>``
    to mode 0700.
    """
    path = Path(tempfile.mkdtemp(prefix="docpipe-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def embedder():
    """The packaged MiniLM on this machine's device, loaded once for the whole session."""
    from docpipe.activities.gpu.embedder import Embedder
    from docpipe.config import load_settings

    model = Embedder(
        load_settings().resolved_embedding_model_path, ["cpu"], name="all-MiniLM-L6-v2"
    )
    yield model
    model.close()
