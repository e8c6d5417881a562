"""A supervised local worker that dies is restarted, and the run goes on.

``docpipe run`` starts its four workers with ``LocalWorkers``; before
supervision, ``kill -9`` of one (or the OOM killer) left the run waiting
forever with no message. Here the GPU worker is killed for real (SIGKILL to
its process group), and the supervisor must say so, restart it, see it poll
again, and say that too; documents started after the kill still complete,
each exactly once. A worker that cannot start at all is given up on, with
its log, instead of being restarted forever.

External workers (``docpipe start``) cannot be restarted from here; the
queue watcher says instead which queue has work and no one polling it.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from corpus import text_documents
from faults.harness import Run, check_stores

from docpipe.client.queue_health import watch_queues
from docpipe.client.starter import run_documents
from docpipe.config import Settings, load_settings
from docpipe.local.supervisor import RestartPolicy, SupervisorEvent, WorkerSupervisor
from docpipe.local.workers import LocalWorkers, all_task_queues, wait_for_pollers
from docpipe.workers.common import connect

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(devstack) -> dict[str, str]:
    """The shared servers, with a bucket and collection of this module's own."""
    return {
        **devstack.env,
        "S3_BUCKET": "supervision-documents",
        "VECTOR_COLLECTION": "supervision_chunks",
        "WORKER_CPU_THREADS": "1",
    }


@pytest.fixture(scope="module")
def module_settings(env: dict[str, str]) -> Settings:
    return load_settings(**{k.lower(): v for k, v in env.items()})


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[LocalWorkers]:
    with LocalWorkers(tmp_path / "logs", env) as group:
        yield group


async def wait_for_event(
    supervisor: WorkerSupervisor, kind: str, worker: str, timeout_s: float
) -> SupervisorEvent:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in supervisor.events:
            if event.kind == kind and event.worker == worker:
                return event
        await asyncio.sleep(0.1)
    raise TimeoutError(
        f"no {kind!r} event for the {worker} worker in {timeout_s:g} s; "
        f"events so far: {[e.message for e in supervisor.events]}"
    )


async def test_a_killed_gpu_worker_is_restarted_and_the_run_completes(
    workers: LocalWorkers, module_settings: Settings, tmp_path: Path
) -> None:
    workers.start()
    client = await connect(module_settings)
    await wait_for_pollers(client, all_task_queues(module_settings), workers, timeout_s=180)
    lines: list[str] = []
    documents = text_documents(tmp_path / "docs", 6, origin="supervision")

    async with WorkerSupervisor(workers, lines.append) as supervisor:
        victim = workers.processes["gpu"]
        victim.kill()  # kill -9 of its process group, behind LocalWorkers' back
        killed_at = time.monotonic()
        # Started while no GPU worker is up: the embeddings wait in the queue.
        run = asyncio.create_task(
            run_documents(client, module_settings, documents, batch_size=2, timeout_s=180)
        )

        exited = await wait_for_event(supervisor, "exited", "gpu", timeout_s=10)
        back = await wait_for_event(supervisor, "back", "gpu", timeout_s=180)
        summary = await asyncio.wait_for(run, 240)

    assert re.fullmatch(
        r"gpu worker exited \(killed by SIGKILL\) after [\d.]+ s up; "
        r"restarting in 1 s \(restart 1\)",
        exited.message,
    ), exited.message
    assert re.fullmatch(r"gpu worker is back, polling after [\d.]+ s", back.message)
    assert lines == [e.message for e in supervisor.events] == [exited.message, back.message]
    assert exited.at - killed_at < 2.0, "noticed within a few checks"

    replacement = workers.processes["gpu"]
    assert replacement.pid != victim.pid and replacement.process.poll() is None
    assert replacement.name == "gpu" and replacement.log_path == victim.log_path
    assert "polling task queue" in replacement.log_text()
    workers.check_alive()

    assert [o.status for o in summary.outcomes] == ["succeeded"] * len(documents), [
        o.failure_reason for o in summary.outcomes
    ]
    check = await check_stores(
        module_settings, Run(summary.run_id, documents, []), summary.outcomes
    )
    assert check.completed == len(documents), check.problems()
    assert not check.duplicated, check.problems()


async def test_a_worker_that_cannot_start_is_given_up_on_with_its_log(
    workers: LocalWorkers,
) -> None:
    # An invalid setting: the worker exits with code 2 before it polls, every time.
    broken = workers.start_one("io", {"MAX_CONCURRENT_IO_ACTIVITIES": "0"})
    policy = RestartPolicy(first_delay_s=0.1, give_up_after=3)
    lines: list[str] = []
    gave_up = asyncio.Event()

    def on_event(line: str) -> None:
        lines.append(line)
        if "not restarting it again" in line:
            gave_up.set()

    stop = asyncio.Event()
    supervising = asyncio.create_task(workers.supervise(on_event, stop, policy=policy))
    try:
        await asyncio.wait_for(gave_up.wait(), 60)
    finally:
        stop.set()
        await asyncio.wait_for(supervising, 10)

    assert len(lines) == 3, lines
    assert re.fullmatch(
        r"io worker exited \(exit code 2\) after [\d.]+ s up; restarting in 0.1 s \(restart 1\)",
        lines[0],
    )
    assert lines[1].endswith("restarting in 0.2 s (restart 2)")
    assert lines[2].startswith(
        "io worker exited (exit code 2) 3 times in a row, each within 60 s of starting; "
        "not restarting it again. The end of its log:\n"
    )
    assert "MAX_CONCURRENT_IO_ACTIVITIES" in lines[2], "the log tail says why"
    # Restarts kept its name and settings; the dead one stays for check_alive to report.
    assert workers.processes["io"].pid != broken.pid
    assert workers.processes["io"].extra_env == {"MAX_CONCURRENT_IO_ACTIVITIES": "0"}
    with pytest.raises(RuntimeError, match="the io worker exited with code 2"):
        workers.check_alive()


async def test_the_queue_watcher_names_a_queue_with_work_and_no_worker(
    module_settings: Settings,
) -> None:
    # A workflow queue no worker polls, as when the workflow worker was never started.
    queue = f"unpolled-{uuid.uuid4().hex[:8]}"
    settings = module_settings.model_copy(update={"workflow_task_queue": queue})
    client = await connect(settings)
    handle = await client.start_workflow(
        "DocumentPipelineWorkflow", id=f"{queue}-wf", task_queue=queue
    )
    warned = asyncio.Event()
    lines: list[str] = []

    def on_warning(line: str) -> None:
        lines.append(line)
        warned.set()

    stop = asyncio.Event()
    watcher = asyncio.create_task(
        watch_queues(client, settings, on_warning, interval_s=0.5, grace_s=1.0, stop=stop)
    )
    try:
        # The server refreshes backlog figures every few seconds.
        await asyncio.wait_for(warned.wait(), 30)
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 10)
        await handle.terminate("test over")
    assert len(lines) == 1 and re.fullmatch(
        rf"{queue}: 1 task waiting for \d+ s and no live poller"
        r" — is the workflow worker running\?",
        lines[0],
    ), lines
