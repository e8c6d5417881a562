"""A Temporal dev server of a test module's own, for tests that should not share one."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docpipe.local.devstack import DevStack, TemporalServer


def own_temporal_fixture(name: str) -> Any:
    """The module-scoped fixture ``temporal``: a dev server in memory, started for the
    module alone and stopped after it, its files in a temporary folder named after
    ``name`` and removed with it. At module level::

        temporal = own_temporal_fixture("drain")
    """

    @pytest.fixture(scope="module", name="temporal")
    def temporal_fixture() -> Iterator[TemporalServer]:
        data_dir = Path(tempfile.mkdtemp(prefix=f"docpipe-{name}-test-"))
        server = TemporalServer(DevStack(data_dir), None, ())
        server.start()
        yield server
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    return temporal_fixture
