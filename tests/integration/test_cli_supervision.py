"""The CLI says what happens to the workers while documents run.

``docpipe run`` supervises the workers it starts: the GPU worker is killed
for real here (SIGKILL, found among the CLI's descendants as a user would
find it with ``ps``) once the run is under way; the run must say so, restart
it and still finish every document with exit code 0.

``docpipe start`` runs against workers elsewhere: with none at all, it must
warn, after ``--stalled-after`` seconds, which queue has work and no one
polling it, instead of waiting in silence.

A worker the supervisor gives up on (it keeps crashing) must end the run
rather than leave it waiting forever: the race between the two is checked
here without servers.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from corpus import write_text_documents

from docpipe.client.cli.running import WorkerGaveUp, _unless_given_up
from docpipe.local.devstack import DevStack
from docpipe.local.workers import READY_LINE
from docpipe.workers.common import connect

pytestmark = pytest.mark.integration

DOCPIPE = str(Path(sys.executable).parent / "docpipe")
RUN_STARTED = "workers polling; running"
"""What ``docpipe run`` prints once the workers poll and the supervisor watches them."""


@contextmanager
def docpipe(args: list[str], output: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """``docpipe ARGS`` in the background, stdout and stderr into ``output``; it
    and whatever it started are killed on the way out if still running."""
    env = {**os.environ, **env, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    with output.open("wb") as out:
        process = subprocess.Popen([DOCPIPE, *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            tree = psutil.Process(process.pid).children(recursive=True)
            process.kill()
            process.wait()
            for child in tree:
                kill_with_its_group(child)


def kill_with_its_group(process: psutil.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # workers lead their own process group
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.kill()
    except psutil.NoSuchProcess:
        pass


def wait_until(condition: Callable[[], object], timeout_s: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what()}")
        time.sleep(0.1)


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def summary_count(output: str, row: str) -> int:
    """A count from the summary table's row ``row`` ("succeeded", "failed")."""
    counts = re.findall(rf"^\W*{row}\W+(\d+)\W*$", output, re.MULTILINE)
    assert len(counts) == 1, f"one {row!r} row in the summary:\n{output}"
    return int(counts[0])


def test_docpipe_run_restarts_a_killed_gpu_worker_and_finishes(tmp_path: Path) -> None:
    names = write_text_documents(tmp_path / "docs", 6)
    csv = tmp_path / "documents.csv"
    csv.write_text("url\n" + "".join(f"docs/{name}\n" for name in names))
    data_dir = tmp_path / "data"
    output = tmp_path / "docpipe-run.out"
    gpu_log = data_dir / "logs" / "gpu-worker.log"
    args = ["run", str(csv), "--data-dir", str(data_dir), "--no-strict", "--batch-size", "2"]
    try:
        with docpipe(args, output, {"WORKER_CPU_THREADS": "1"}) as cli:
            # Killed before the supervisor watches, the worker would fail the start-up
            # instead: wait for the line that says the run (and supervision) began.
            wait_until(
                lambda: RUN_STARTED in read(output) or cli.poll() is not None,
                timeout_s=75,
                what=lambda: f"docpipe run did not start its documents:\n{read(output)}",
            )
            assert cli.poll() is None, read(output)
            assert READY_LINE in read(gpu_log), "the GPU worker polls"
            gpu = [
                p
                for p in psutil.Process(cli.pid).children(recursive=True)
                if "docpipe.workers.gpu" in " ".join(p.cmdline())
            ]
            assert len(gpu) == 1, gpu
            gpu[0].send_signal(signal.SIGKILL)

            try:
                cli.wait(timeout=120)
            except subprocess.TimeoutExpired:
                pytest.fail(f"docpipe run did not finish:\n{read(output)}")
        text = read(output)
        assert cli.returncode == 0, text
        assert re.search(
            r"gpu worker exited \(killed by SIGKILL\) after [\d.]+ s up; "
            r"restarting in 1 s \(restart 1\)",
            text,
        ), text
        assert summary_count(text, "succeeded") == 6 and summary_count(text, "failed") == 0, text
        leftover = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
        assert leftover.stdout.strip() == "", "every server and worker was stopped"
    finally:
        # As root, PostgreSQL's data lives outside tmp_path.
        DevStack(data_dir, persistent=True).remove_data()


async def test_docpipe_start_warns_about_a_queue_no_worker_polls(
    devstack: DevStack, tmp_path: Path
) -> None:
    # Queues of this test's own: no worker of another test polls them, and none
    # of this test's workflows is left where another test's workers would run it.
    tag = uuid.uuid4().hex[:8]
    queues = {
        f"{kind.upper()}_TASK_QUEUE": f"stalled-{kind}-{tag}"
        for kind in ("workflow", "cpu", "gpu", "io")
    }
    names = write_text_documents(tmp_path / "docs", 2)
    csv = tmp_path / "documents.csv"
    csv.write_text("url\n" + "".join(f"docs/{name}\n" for name in names))
    output = tmp_path / "docpipe-start.out"
    workflow_queue = queues["WORKFLOW_TASK_QUEUE"]
    args = ["start", "--csv-file", str(csv), "--stalled-after", "2"]
    try:
        with docpipe(args, output, {**devstack.env, **queues}) as cli:
            # The server refreshes its backlog figures about every 6 s.
            wait_until(
                lambda: "no live poller" in read(output) or cli.poll() is not None,
                timeout_s=45,
                what=lambda: f"no stalled-queue warning:\n{read(output)}",
            )
            assert cli.poll() is None, "docpipe start waits for the workers\n" + read(output)
    finally:
        client = await connect(devstack.settings())
        async for execution in client.list_workflows(
            f'TaskQueue = "{workflow_queue}" AND ExecutionStatus = "Running"'
        ):
            await client.get_workflow_handle(execution.id).terminate("test over")
    warning = rf"{workflow_queue}: 1 task waiting for \d+ s and no live poller"
    assert re.search(rf"{warning} — is the workflow worker running\?", read(output)), read(output)


class ListingClient:
    """Enough of a Temporal client for _unless_given_up: no workflow is running."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def list_workflows(self, query: str):
        self.queries.append(query)

        async def nothing():
            return
            yield

        return nothing()


async def test_the_run_ends_when_the_supervisor_gives_up_on_a_worker(tmp_path: Path) -> None:
    log = tmp_path / "gpu-worker.log"
    supervisor = SimpleNamespace(
        gave_up=[], workers=SimpleNamespace(by_name={"gpu": SimpleNamespace(log_path=log)})
    )
    client = ListingClient()
    assert await _unless_given_up(asyncio.sleep(0.3, "summary"), supervisor, client, "r") == (
        "summary"
    )
    assert client.queries == [], "a run that finishes is left alone"

    cancelled = asyncio.Event()

    async def endless_run() -> None:
        try:
            await asyncio.sleep(3600)  # its work waits for a worker that will never come
        except asyncio.CancelledError:
            cancelled.set()
            raise

    racing = asyncio.create_task(_unless_given_up(endless_run(), supervisor, client, "run-1"))
    await asyncio.sleep(0.5)
    assert not racing.done()
    supervisor.gave_up = ["gpu"]
    with pytest.raises(WorkerGaveUp) as stopped:
        await asyncio.wait_for(racing, 5)
    assert stopped.value.logs == {"gpu": log}
    assert cancelled.is_set(), "the run was cancelled, not abandoned"
    assert client.queries == [
        'WorkflowId STARTS_WITH "run-1-batch-" AND ExecutionStatus = "Running"'
    ]
