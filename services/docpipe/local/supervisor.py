"""Restart local workers that die, as Kubernetes restarts a crashed pod.

Without supervision, ``kill -9`` of a worker (or the kernel's OOM killer)
during ``docpipe run`` leaves the run waiting forever: its tasks sit in a
queue that no one polls, and nothing says why. The supervisor notices a
worker process that exited without being asked to (``LocalWorkers.stop()``,
``stop_one()`` and ``kill_one()`` ask; ``WorkerProcess.kill()`` and anything
outside us do not), restarts it under the same name with exponential
backoff, and reports every event as one line for a human::

    gpu worker exited (killed by SIGKILL) after 41 s up; restarting in 1 s (restart 1)
    gpu worker is back, polling after 6.2 s

The policy (how long to wait, when to give up) is the pure function
:func:`next_restart`; a worker that keeps crashing soon after it starts
(a bad setting, a model that does not load) is given up on after
``RestartPolicy.give_up_after`` crashes in a row, with its log tail, rather
than restarted forever. Tasks the dead worker held are retried by Temporal
after their heartbeat timeout, on whichever worker polls; the supervisor only
makes sure one does.

Use::

    stop = asyncio.Event()
    task = asyncio.create_task(workers.supervise(console.print, stop))
    ...  # the run
    stop.set()
    await task

or ``async with WorkerSupervisor(workers, console.print) as supervisor: ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docpipe.local.workers import LocalWorkers, WorkerProcess


# ------------------------------------------------------------------- policy


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 1.0
    """The wait before the first restart; each crash in a row doubles it."""
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0
    """A worker that stayed up this long was healthy: its crash starts a new streak."""
    give_up_after: int = 5
    """Crashes in a row, each within ``stable_after_s`` of starting, before giving up."""


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    """False: give up on this worker (it keeps crashing right after it starts)."""
    delay_s: float
    """How long to wait before starting it again (0 when giving up)."""
    crashes_in_a_row: int
    """This crash included; carried into the next decision."""


def next_restart(
    crashes_in_a_row: int, uptime_s: float, policy: RestartPolicy = RestartPolicy()
) -> RestartDecision:
    """What to do about a worker that just crashed after ``uptime_s`` seconds up,
    ``crashes_in_a_row`` being the crashes of its streak before this one.

    A crash after ``stable_after_s`` up starts a new streak (1 s again); one
    sooner extends the streak: 1 s, 2 s, 4 s ... capped at ``max_delay_s``,
    and the ``give_up_after``-th crash of a streak gives up.
    """
    streak = 1 if uptime_s >= policy.stable_after_s else crashes_in_a_row + 1
    if streak >= policy.give_up_after:
        return RestartDecision(False, 0.0, streak)
    delay = min(policy.max_delay_s, policy.first_delay_s * 2 ** (streak - 1))
    return RestartDecision(True, delay, streak)


def describe_exit(returncode: int) -> str:
    """How a process ended, for a human: 'killed by SIGKILL', 'exit code 1'."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def exit_line(name: str, returncode: int, uptime_s: float, delay_s: float, restart: int) -> str:
    return (
        f"{name} worker exited ({describe_exit(returncode)}) after {_seconds(uptime_s)} up; "
        f"restarting in {delay_s:g} s (restart {restart})"
    )


def back_line(name: str, polling_after_s: float) -> str:
    return f"{name} worker is back, polling after {polling_after_s:.1f} s"


def give_up_line(
    name: str, returncode: int, crashes: int, policy: RestartPolicy, log_tail: str
) -> str:
    tail = "\n".join(f"    {line}" for line in log_tail.splitlines()) or "    (its log is empty)"
    return (
        f"{name} worker exited ({describe_exit(returncode)}) {crashes} times in a row, each "
        f"within {policy.stable_after_s:g} s of starting; not restarting it again. "
        f"The end of its log:\n{tail}"
    )


# --------------------------------------------------------------- supervisor


@dataclass(frozen=True)
class SupervisorEvent:
    kind: str
    """'exited' (restart coming), 'back' (polling again), 'not_polling' (restarted,
    not polling within ready_timeout_s), 'gave_up'."""
    worker: str
    """The worker's name: its kind, or 'cpu-2' for a second replica."""
    message: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Streak:
    crashes_in_a_row: int = 0
    restarts: int = 0


@dataclass(eq=False)
class WorkerSupervisor:
    """Watches every worker of a :class:`LocalWorkers` (replicas and workers
    started later included) and restarts those that exit unasked.

    ``on_event`` gets each event's line; ``events`` keeps them all, and
    ``gave_up`` names the workers it stopped restarting (their dead process
    stays in the group, so ``check_alive()`` still raises about them).
    """

    workers: LocalWorkers
    on_event: Callable[[str], None] | None = None
    _: KW_ONLY
    policy: RestartPolicy = RestartPolicy()
    check_interval_s: float = 0.2
    ready_timeout_s: float = 180.0
    events: list[SupervisorEvent] = field(init=False, default_factory=list)
    _streaks: dict[str, _Streak] = field(init=False, default_factory=dict)
    _recovering: dict[str, asyncio.Task[None]] = field(init=False, default_factory=dict)
    _given_up: dict[str, WorkerProcess] = field(init=False, default_factory=dict)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = field(init=False, default=None)

    @property
    def gave_up(self) -> list[str]:
        return sorted(self._given_up)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Supervise until ``stop`` is set (or this task is cancelled); restarts
        under way are abandoned then (a process already started stays in the
        group, and its ``stop()`` stops it)."""
        stop = stop or self._stop
        try:
            while not stop.is_set():
                self._check()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.check_interval_s)
        finally:
            tasks = list(self._recovering.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> WorkerSupervisor:
        self._stop.clear()
        self._task = asyncio.create_task(self.run(self._stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    def _emit(self, kind: str, worker: str, message: str) -> None:
        self.events.append(SupervisorEvent(kind, worker, message))
        if self.on_event is not None:
            self.on_event(message)

    def _check(self) -> None:
        for name, worker in list(self.workers.by_name.items()):
            if name in self._recovering or worker.stop_requested:
                continue
            if self._given_up.get(name) is worker:
                continue
            self._given_up.pop(name, None)  # someone started a new one: watch it
            code = worker.process.poll()
            if code is not None:
                task = asyncio.create_task(self._recover(worker, code))
                self._recovering[name] = task
                task.add_done_callback(lambda _t, name=name: self._recovering.pop(name, None))

    async def _recover(self, dead: WorkerProcess, code: int) -> None:
        name = dead.name
        uptime = dead.uptime_s
        streak = self._streaks.setdefault(name, _Streak())
        decision = next_restart(streak.crashes_in_a_row, uptime, self.policy)
        streak.crashes_in_a_row = decision.crashes_in_a_row
        dead._reap_group()  # its pool processes, if it left any
        if not decision.restart:
            self._given_up[name] = dead
            self._emit(
                "gave_up",
                name,
                give_up_line(name, code, decision.crashes_in_a_row, self.policy, dead.log_tail(20)),
            )
            return
        streak.restarts += 1
        self._emit("exited", name, exit_line(name, code, uptime, decision.delay_s, streak.restarts))
        await asyncio.sleep(decision.delay_s)
        if self.workers.by_name.get(name) is not dead:
            return  # stopped, or replaced by someone else meanwhile
        worker = self.workers.start_one(dead.kind, dead.extra_env, name=name)
        try:
            polling_after = await worker.wait_polling(self.ready_timeout_s)
        except RuntimeError:
            return  # it died again before polling: the next check handles that crash
        except TimeoutError:
            self._emit(
                "not_polling",
                name,
                f"{name} worker was restarted but is not polling after "
                f"{self.ready_timeout_s:g} s; its log: {worker.log_path}",
            )
            return
        self._emit("back", name, back_line(name, polling_after))
