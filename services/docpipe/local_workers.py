"""Start the four worker processes on this machine (`docpipe run`, tests, benches).

Each worker is the same entry point a container runs (``python -m
docpipe.workers.<kind>``), started with the environment that points it at the
local stack, so what runs here is what runs in a pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client

from docpipe.config import Settings
from docpipe.devstack import free_port
from docpipe.queue_stats import describe_queue

WORKER_KINDS = ("workflow", "cpu", "gpu", "io")


READY_LINE = "polling task queue"
"""What a worker logs once it polls (models loaded, clients connected)."""


@dataclass
class WorkerProcess:
    kind: str
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int
    sdk_metrics_port: int
    log_offset: int = 0
    """Size of the (shared, appended) log file when this process started."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        """What this process wrote to its log (not earlier workers of the same kind)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (its pool processes too), as a
        node or container loss would: nothing gets to finish or hand tasks back."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def _reap_group(self) -> None:
        # Children (the CPU worker's process pool) must not outlive a stopped worker.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    async def wait_polling(self, timeout_s: float = 120.0) -> float:
        """Wait until this process polls its queue; returns the seconds it took.

        Temporal's poller list remembers an exited worker for minutes, so a
        replacement's readiness is read from its own log instead.
        """
        began = time.monotonic()
        while READY_LINE not in self.log_text():
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"the {self.kind} worker exited with code {code}:\n{self.log_tail()}"
                )
            if time.monotonic() - began > timeout_s:
                raise TimeoutError(f"the {self.kind} worker did not poll within {timeout_s:g} s")
            await asyncio.sleep(0.1)
        return time.monotonic() - began


@dataclass
class LocalWorkers:
    log_dir: Path
    env: Mapping[str, str]
    processes: dict[str, WorkerProcess] = field(default_factory=dict)

    def start(
        self, kinds: tuple[str, ...] = WORKER_KINDS, extra_env: Mapping[str, str] | None = None
    ) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for kind in kinds:
            self.start_one(kind, extra_env)

    def start_one(self, kind: str, extra_env: Mapping[str, str] | None = None) -> WorkerProcess:
        """Start one worker of ``kind``; one of that kind must not be running
        (stop or kill it first: a second would be untracked and outlive stop())."""
        running = self.processes.get(kind)
        if running is not None and running.process.poll() is None:
            raise RuntimeError(f"a {kind} worker is already running (pid {running.pid})")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        metrics_port, sdk_port = free_port(), free_port()
        env = {
            **os.environ,
            **self.env,
            **(extra_env or {}),
            "METRICS_PORT": str(metrics_port),
            "SDK_METRICS_PORT": str(sdk_port),
            "PYTHONUNBUFFERED": "1",
        }
        log_path = self.log_dir / f"{kind}-worker.log"
        with log_path.open("ab") as log:
            offset = log.tell()
            process = subprocess.Popen(
                [sys.executable, "-m", f"docpipe.workers.{kind}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(kind, process, log_path, metrics_port, sdk_port, offset)
        self.processes[kind] = worker
        return worker

    def check_alive(self) -> None:
        for worker in self.processes.values():
            code = worker.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"the {worker.kind} worker exited with code {code}:\n{worker.log_tail()}"
                )

    def stop_one(self, kind: str, *, timeout_s: float = 40.0, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the worker and wait for it (SIGKILL after ``timeout_s``)."""
        worker = self.processes.pop(kind)
        if worker.process.poll() is None:
            worker.process.send_signal(sig)
            try:
                worker.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        worker._reap_group()

    def kill_one(self, kind: str) -> WorkerProcess:
        """kill -9 the worker of ``kind`` and its children, at once; returns it."""
        worker = self.processes.pop(kind)
        worker.kill()
        return worker

    def stop(self) -> None:
        for worker in self.processes.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 40
        for kind in list(self.processes):
            worker = self.processes[kind]
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker._reap_group()
        self.processes.clear()

    def __enter__(self) -> LocalWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def all_task_queues(settings: Settings) -> dict[str, bool]:
    """Every queue a full set of workers polls: name -> is it the workflow queue."""
    return {
        settings.workflow_task_queue: True,
        settings.cpu_task_queue: False,
        settings.gpu_task_queue: False,
        settings.io_task_queue: False,
    }


async def wait_for_pollers(
    client: Client, queues: Mapping[str, bool], workers: LocalWorkers, timeout_s: float = 120
) -> None:
    """Wait until each queue has a live poller (workers load models before polling)."""

    deadline = time.monotonic() + timeout_s
    pending = dict(queues)
    while pending:
        workers.check_alive()
        for queue, is_workflow in list(pending.items()):
            stats = await describe_queue(client, queue, workflow=is_workflow)
            if stats.live_pollers > 0:
                pending.pop(queue)
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no worker is polling {', '.join(pending)} after {timeout_s:.0f} s"
                )
            await asyncio.sleep(0.5)
