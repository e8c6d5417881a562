"""A worker process built like docpipe's own (``run_worker``, settings from the
environment, ``shutdown_grace``, ``drain_switch``, ``run_until_stopped``) that
serves one slow activity: what tests/integration/test_worker_shutdown.py stops
with SIGTERM, and tests/integration/test_worker_drain.py starts cordoned.

Run as ``python slow_activity_worker.py QUEUE MARKER_DIR``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from functools import partial
from pathlib import Path

from temporalio import activity
from temporalio.worker import Worker

from docpipe.config import Settings
from docpipe.workers.common import (
    connect,
    drain_switch,
    run_until_stopped,
    run_worker,
    shutdown_grace,
)

QUEUE, MARKERS = sys.argv[1], Path(sys.argv[2])


@activity.defn
async def slow_step(seconds: float) -> dict[str, int]:
    """Says it started (a file named after its workflow), then works for ``seconds``."""
    info = activity.info()
    (MARKERS / f"{info.workflow_id}.started").write_text(str(info.attempt))
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        activity.heartbeat()
        await asyncio.sleep(0.2)
    return {"attempt": info.attempt, "pid": os.getpid()}


async def serve(settings: Settings) -> None:
    client = await connect(settings)
    make_worker = partial(
        Worker,
        client,
        task_queue=QUEUE,
        activities=[slow_step],
        graceful_shutdown_timeout=shutdown_grace(settings),
    )
    await run_until_stopped(make_worker, drain_switch(settings))


if __name__ == "__main__":
    run_worker("test", serve)
