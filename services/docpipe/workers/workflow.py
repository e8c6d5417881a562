"""Workflow worker: runs workflow code only, on the workflow task queue.

Workflow tasks are tiny (they decide what to schedule next), so one process
keeps up to MAX_CONCURRENT_WORKFLOWS workflows cached and hands all real work
to the resource queues.
"""

from __future__ import annotations

from functools import partial

from temporalio.worker import Worker

from docpipe.config import Settings
from docpipe.workers.common import (
    connect,
    deployment_config,
    drain_switch,
    make_runtime,
    run_until_stopped,
    run_worker,
    shutdown_grace,
)
from docpipe.workflows import WORKFLOWS, versioning_behavior


async def serve(settings: Settings) -> None:
    client = await connect(settings, make_runtime(settings))
    # A new Worker (and workflow cache) each time the pod's drain is lifted.
    make_worker = partial(
        Worker,
        client,
        task_queue=settings.workflow_task_queue,
        workflows=WORKFLOWS,
        max_cached_workflows=settings.max_concurrent_workflows,
        graceful_shutdown_timeout=shutdown_grace(settings),
        deployment_config=deployment_config(settings, "workflow", versioning_behavior()),
    )
    await run_until_stopped(make_worker, drain_switch(settings))


def main() -> None:
    run_worker("workflow", serve)


if __name__ == "__main__":
    main()
