"""A test module's own four worker processes on the session's shared servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from docpipe.config import Settings, load_settings
from docpipe.local.workers import LocalWorkers, all_task_queues, wait_for_pollers
from docpipe.workers.common import connect


def own_worker_fixtures(name: str) -> tuple[Any, Any, Any]:
    """The module-scoped fixtures ``env``, ``settings`` and ``workers`` of a test
    module that runs the four workers as processes, as their containers do, on the
    shared servers (``devstack``) with an S3 bucket and a vector collection of its
    own, both named after ``name``. At module level::

        env, settings, workers = own_worker_fixtures("ingest-cli")
    """

    @pytest.fixture(scope="module", name="env")
    def env_fixture(devstack) -> dict[str, str]:
        """What the workers see: the shared servers, this module's bucket and collection."""
        collection = name.replace("-", "_") + "_chunks"
        return {**devstack.env, "S3_BUCKET": name, "VECTOR_COLLECTION": collection}

    @pytest.fixture(scope="module", name="settings")
    def settings_fixture(env: dict[str, str]) -> Settings:
        return load_settings(**{k.lower(): v for k, v in env.items()})

    @pytest.fixture(scope="module", name="workers")
    async def workers_fixture(
        env: dict[str, str], settings: Settings, tmp_path_factory: pytest.TempPathFactory
    ) -> AsyncIterator[LocalWorkers]:
        """All four workers, each polling its queue."""
        with LocalWorkers(tmp_path_factory.mktemp(f"{name}-worker-logs"), env) as group:
            group.start(extra_env={"WORKER_CPU_THREADS": "2"})
            await wait_for_pollers(await connect(settings), all_task_queues(settings), group)
            yield group

    return env_fixture, settings_fixture, workers_fixture
