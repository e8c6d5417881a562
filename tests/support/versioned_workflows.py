"""Two releases of one workflow type, a way to start one, and a dev server that reports
drainage quickly: what the Worker Versioning tests (tests/integration, tests/operator) roll out.

v2 runs another command sequence than v1, so replaying v1's history on v2's code
would fail: a test passes only if each workflow stays on the version it started on.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import VersioningBehavior

# Drainage is recomputed every second, one second after a version stops being
# Current, instead of every few minutes.
FAST_DRAINAGE = (
    "--dynamic-config-value",
    'matching.wv.VersionDrainageStatusRefreshInterval="1s"',
    "--dynamic-config-value",
    'matching.wv.VersionDrainageStatusVisibilityGracePeriod="1s"',
)


class _WaitForSignal:
    """What both releases share: they wait for ``go`` and answer ``version``."""

    RELEASE = ""

    def __init__(self) -> None:
        self._go = False

    @workflow.signal
    def go(self) -> None:
        self._go = True

    @workflow.query
    def version(self) -> str:
        return self.RELEASE


@workflow.defn(name="WaitForSignal", versioning_behavior=VersioningBehavior.PINNED)
class WaitForSignalV1(_WaitForSignal):
    RELEASE = "v1"

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self._go)
        return "finished on v1"


@workflow.defn(name="WaitForSignal", versioning_behavior=VersioningBehavior.PINNED)
class WaitForSignalV2(_WaitForSignal):
    """The incompatible new release: same workflow type, different code."""

    RELEASE = "v2"

    @workflow.run
    async def run(self) -> str:
        await asyncio.sleep(0)  # a different command sequence than v1's
        await workflow.wait_condition(lambda: self._go)
        return "finished on v2"


async def start_waiting(client: Client, queue: str) -> WorkflowHandle[Any, str]:
    """Start a WaitForSignal on ``queue``: Temporal routes it (and pins it) to a version."""
    return await client.start_workflow(
        "WaitForSignal",
        id=f"wait-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
        result_type=str,
        execution_timeout=timedelta(minutes=5),
    )
