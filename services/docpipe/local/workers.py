"""Start the four worker processes on this machine (`docpipe run`, tests, benches).

Each worker is the same entry point a container runs (``python -m
docpipe.workers.<kind>``), started with the environment that points it at the
local stack, so what runs here is what runs in a pod. A kind may run as
several replicas (``start(replicas={"cpu": 2})``), each with its own log file
and metrics ports, as a Deployment scaled up would; ``supervise()`` restarts a
worker that exits without being asked to, as Kubernetes would restart its pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.client import Client

from docpipe.config import Settings
from docpipe.local.devstack import free_port
from docpipe.queue_stats import describe_queue

if TYPE_CHECKING:
    from docpipe.local.supervisor import RestartPolicy

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
    name: str = ""
    """Its name among the replicas: the kind for the first ("gpu"), then "gpu-2", ..."""
    extra_env: Mapping[str, str] = field(default_factory=dict)
    """What it was started with on top of the group's env (a restart reuses it)."""
    started_at: float = field(default_factory=time.monotonic)
    stop_requested: bool = False
    """Set before a requested stop: its exit is not a crash (the supervisor leaves it)."""

    def __post_init__(self) -> None:
        self.name = self.name or self.kind

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_at

    def log_text(self) -> str:
        """What this process wrote to its log (not earlier workers of the same name)."""
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
        node or container loss would: nothing gets to finish or hand tasks back.

        It stays in its LocalWorkers: to a supervisor this is a crash to recover
        from (``LocalWorkers.kill_one`` removes it instead)."""
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
                    f"the {self.name} worker exited with code {code}:\n{self.log_tail()}"
                )
            if time.monotonic() - began > timeout_s:
                raise TimeoutError(f"the {self.name} worker did not poll within {timeout_s:g} s")
            await asyncio.sleep(0.1)
        return time.monotonic() - began


def replica_name(kind: str, index: int) -> str:
    """The name of a kind's replica ``index`` (0-based): "cpu", "cpu-2", "cpu-3", ..."""
    return kind if index == 0 else f"{kind}-{index + 1}"


def _replica_order(worker: WorkerProcess) -> tuple[int, bool, int, str]:
    # Kinds in WORKER_KINDS order; within one, the replica named after it first,
    # then "cpu-2" before "cpu-10".
    kind = WORKER_KINDS.index(worker.kind)
    return (kind, worker.name != worker.kind, len(worker.name), worker.name)


@dataclass
class LocalWorkers:
    """Worker processes on this machine, by name; one or more replicas per kind.

    ``processes[kind]`` is a kind's first replica (its only one, unless
    ``start(replicas=...)`` or ``start_one(name=...)`` started more);
    ``replicas(kind)`` lists them all. ``stop()`` (or leaving the ``with``)
    stops every one. A :class:`~docpipe.local.supervisor.WorkerSupervisor` (see
    :meth:`supervise`) restarts those that exit without being asked to.
    """

    log_dir: Path
    env: Mapping[str, str]
    by_name: dict[str, WorkerProcess] = field(default_factory=dict)

    @property
    def processes(self) -> dict[str, WorkerProcess]:
        """kind -> its first replica (a snapshot: change the group through its methods)."""
        first: dict[str, WorkerProcess] = {}
        for worker in sorted(self.by_name.values(), key=_replica_order):
            first.setdefault(worker.kind, worker)
        return first

    def replicas(self, kind: str) -> list[WorkerProcess]:
        """Every process of ``kind`` this group holds, the first replica first."""
        return sorted((w for w in self.by_name.values() if w.kind == kind), key=_replica_order)

    def start(
        self,
        kinds: tuple[str, ...] = WORKER_KINDS,
        extra_env: Mapping[str, str] | None = None,
        *,
        replicas: Mapping[str, int] | None = None,
    ) -> None:
        """Start ``kinds``, one process each, or ``replicas[kind]`` of them."""
        replicas = dict(replicas or {})
        unknown = set(replicas) - set(kinds)
        if unknown:
            raise ValueError(f"replicas for kinds not started: {', '.join(sorted(unknown))}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for kind in kinds:
            count = replicas.get(kind, 1)
            if count < 1:
                raise ValueError(f"{kind}: replicas must be at least 1, not {count}")
            for index in range(count):
                self.start_one(kind, extra_env, name=replica_name(kind, index))

    def start_one(
        self, kind: str, extra_env: Mapping[str, str] | None = None, *, name: str | None = None
    ) -> WorkerProcess:
        """Start one worker of ``kind`` named ``name`` (default: the kind, i.e. its
        first replica); its log is ``<name>-worker.log``, its metrics ports its own.

        One of that name must not be running (stop or kill it first: a second
        would be untracked and outlive stop())."""
        if kind not in WORKER_KINDS:
            raise ValueError(f"unknown worker kind {kind!r}; one of {', '.join(WORKER_KINDS)}")
        name = name or kind
        running = self.by_name.get(name)
        if running is not None and running.process.poll() is None:
            raise RuntimeError(f"a {name} worker is already running (pid {running.pid})")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        metrics_port, sdk_port = free_port(), free_port()
        extra = dict(extra_env or {})
        env = {
            **os.environ,
            **self.env,
            **extra,
            "METRICS_PORT": str(metrics_port),
            "SDK_METRICS_PORT": str(sdk_port),
            "PYTHONUNBUFFERED": "1",
        }
        log_path = self.log_dir / f"{name}-worker.log"
        with log_path.open("ab") as log:
            offset = log.tell()
            process = subprocess.Popen(
                [sys.executable, "-m", f"docpipe.workers.{kind}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(
            kind, process, log_path, metrics_port, sdk_port, offset, name=name, extra_env=extra
        )
        self.by_name[name] = worker
        return worker

    def check_alive(self) -> None:
        """Raise if any worker has exited (with its log tail)."""
        for worker in self.by_name.values():
            code = worker.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"the {worker.name} worker exited with code {code}:\n{worker.log_tail()}"
                )

    def stop_one(self, name: str, *, timeout_s: float = 40.0, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the worker ``name`` (a kind: its first replica) and wait
        for it (SIGKILL after ``timeout_s``)."""
        worker = self.by_name.pop(name)
        worker.stop_requested = True
        if worker.process.poll() is None:
            worker.process.send_signal(sig)
            try:
                worker.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        worker._reap_group()

    def kill_one(self, name: str) -> WorkerProcess:
        """kill -9 the worker ``name`` (a kind: its first replica) and its children,
        at once, and forget it (no supervisor restarts it); returns it."""
        worker = self.by_name.pop(name)
        worker.stop_requested = True
        worker.kill()
        return worker

    def stop(self) -> None:
        workers = list(self.by_name.values())
        for worker in workers:
            worker.stop_requested = True
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 40
        for worker in workers:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker._reap_group()
        self.by_name.clear()

    async def supervise(
        self,
        on_event: Callable[[str], None],
        stop: asyncio.Event,
        *,
        policy: RestartPolicy | None = None,
    ) -> None:
        """Restart workers that exit unasked until ``stop`` is set; each event is a
        line for ``on_event``. See :class:`docpipe.local.supervisor.WorkerSupervisor`."""
        from docpipe.local.supervisor import RestartPolicy, WorkerSupervisor

        await WorkerSupervisor(self, on_event, policy=policy or RestartPolicy()).run(stop)

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
