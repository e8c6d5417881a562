"""Workflow worker: runs workflow code only, on the workflow task queue.

Workflow tasks are tiny (they decide what to schedule next), so one process
keeps up to MAX_CONCURRENT_WORKFLOWS workflows cached and hands all real work
to the resource queues.
"""

from __future__ import annotations

from docpipe.config import Settings
from docpipe.workers.common import connect, make_runtime, poll, run_worker
from docpipe.workflows import WORKFLOWS, versioning_behavior


async def serve(settings: Settings) -> None:
    client = await connect(settings, make_runtime(settings))
    # A new Worker (and workflow cache) each time the pod's drain is lifted.
    await poll(
        settings,
        client,
        "workflow",
        behavior=versioning_behavior(),
        workflows=WORKFLOWS,
        max_cached_workflows=settings.max_concurrent_workflows,
    )


def main() -> None:
    run_worker("workflow", serve)


if __name__ == "__main__":
    main()
