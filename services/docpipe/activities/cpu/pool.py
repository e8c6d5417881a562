"""A process pool in which one document can only ever fail itself.

Every document's text work runs in a pool process under :mod:`.limits`
(address space, CPU time per document). A document past a limit kills the
process working on it. In a :class:`concurrent.futures.ProcessPoolExecutor`
that breaks the whole pool: every document running or queued fails with
``BrokenProcessPool``, and nothing says which one was guilty. Here each pool
process is a *lane* that runs one task at a time, so a process that dies names
its task: that document fails with the reason (:func:`.limits.death_reason`),
the lane starts a fresh process, and the other documents never notice.

The pool is a :class:`concurrent.futures.Executor`, so ``run_in_executor``
and :class:`~docpipe.metrics.cpu.MeteredPool` use it as they would the
standard one. Processes are spawned (forking a process that runs the Temporal
core's threads is unsafe), each runs ``initializer`` once, and a process that
dies before it is ready is a broken setup (a limit too small to load the
models), reported as such rather than blamed on a document.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, Future
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from docpipe.activities.cpu.limits import (
    ProcessLimits,
    apply_memory_limit,
    death_reason,
    memory_error_reason,
    start_cpu_budget,
)
from docpipe.errors import DocumentError
from docpipe.models import Stage

__all__ = ["IsolatingProcessPool", "PoolProcessDied", "PoolProcessFailedToStart"]

log = logging.getLogger(__name__)

_READY = "ready"
_STOP = None


class PoolProcessDied(DocumentError):
    """The document's pool process died under it: past a limit, or crashed."""

    def __init__(self, reason: str) -> None:
        super().__init__(Stage.EXTRACT, reason)

    def __reduce__(self) -> tuple[type[PoolProcessDied], tuple[str]]:  # type: ignore[override]
        return (type(self), (self.reason,))


class PoolProcessFailedToStart(RuntimeError):
    """A fresh pool process died before it was ready: the setup, not a document,
    is at fault, so this is not a DocumentError and the activity is retried."""


class IsolatingProcessPool(Executor):
    """``size`` single-task processes behind one queue; see the module docstring."""

    def __init__(
        self,
        size: int,
        *,
        limits: ProcessLimits,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        mp_context: BaseContext | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one process")
        context = mp_context or multiprocessing.get_context("spawn")
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._lanes = [_Lane(context, limits, initializer, initargs) for _ in range(size)]
        self._started = threading.Semaphore(0)  # one release per lane's first start
        self._threads = [
            threading.Thread(target=self._serve, args=(lane,), name=f"pool-lane-{i}", daemon=True)
            for i, lane in enumerate(self._lanes)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: Future[Any] = Future()
            self._tasks.put(_Task(future, fn, args, kwargs))
        return future

    def wait_started(self) -> None:
        """Block until every process has started and run the initializer (or failed to)."""
        for _ in self._lanes:
            self._started.acquire()
        for _ in self._lanes:
            self._started.release()  # a second caller does not wait forever

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                if cancel_futures:
                    self._cancel_queued()
                for _ in self._threads:
                    self._tasks.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _cancel_queued(self) -> None:
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                return
            if task is not None:
                task.future.cancel()

    def _serve(self, lane: _Lane) -> None:
        """One lane's thread: start the process now (warm before the first task),
        then run tasks from the shared queue one at a time."""
        try:
            lane.ensure_started()
        except Exception:
            log.exception("a pool process failed to start; retrying with the next task")
        finally:
            self._started.release()
        try:
            while (task := self._tasks.get()) is not None:
                if not task.future.set_running_or_notify_cancel():
                    continue
                try:
                    result = lane.run(task.fn, task.args, task.kwargs)
                except BaseException as exc:
                    task.future.set_exception(exc)
                else:
                    task.future.set_result(result)
        finally:
            lane.stop()


class _Task:
    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(
        self,
        future: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.future, self.fn, self.args, self.kwargs = future, fn, args, kwargs


class _Lane:
    """One pool process and the pipe to it; used by one thread only."""

    def __init__(
        self,
        context: BaseContext,
        limits: ProcessLimits,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
    ) -> None:
        self.context = context
        self.limits = limits
        self.initializer = initializer
        self.initargs = initargs
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None

    def ensure_started(self) -> None:
        if self.process is not None and self.process.is_alive():
            return
        self.stop()
        parent, child = self.context.Pipe()
        process = self.context.Process(  # type: ignore[attr-defined]
            target=_child_main,
            args=(child, self.limits, self.initializer, self.initargs),
            name="docpipe-cpu-pool",
            daemon=True,
        )
        process.start()
        child.close()
        self.process, self.conn = process, parent
        reply = self._receive()
        if reply != _READY:
            exitcode = self._reap()
            raise PoolProcessFailedToStart(
                f"a pool process died while starting (exit code {exitcode}); "
                f"is the memory limit of {self.limits.memory_mb} MB "
                "(CPU_EXTRACT_MEMORY_LIMIT_MB) too small to load the models?"
            )

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self._send((fn, args, kwargs))
        reply = self._receive()
        if reply is _DIED:
            raise PoolProcessDied(death_reason(self._reap(), self.limits))
        ok, value, retire, remote_traceback = reply
        if retire:  # it ran out of memory in Python code: start afresh, unfragmented
            self.stop()
        if ok:
            return value
        if remote_traceback:
            value.__cause__ = _RemoteTraceback(remote_traceback)
        raise value

    def _send(self, task: tuple[Any, ...]) -> None:
        """Hand ``task`` to a live process; one that died while idle is replaced.
        A pickling error is the caller's: nothing was sent, and it is raised."""
        for attempt in (1, 2):
            self.ensure_started()
            assert self.conn is not None
            try:
                self.conn.send(task)
                return
            except (BrokenPipeError, ConnectionResetError):
                if attempt == 2:
                    raise
                self._reap()

    def _receive(self) -> Any:
        """The process's next message, or ``_DIED`` if it died first."""
        assert self.conn is not None and self.process is not None
        wait([self.conn, self.process.sentinel])
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        return _DIED

    def _reap(self) -> int | None:
        process = self.process
        self.close_pipe()
        self.process = None
        if process is None:
            return None
        process.join(timeout=5)
        if process.exitcode is None:  # alive but mute: a broken pipe
            process.kill()
            process.join()
        return process.exitcode

    def close_pipe(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def stop(self) -> None:
        """Ask the process to exit, and make sure it did."""
        if self.process is None:
            return
        try:
            if self.conn is not None:
                self.conn.send(_STOP)
        except (OSError, ValueError):
            pass
        self.close_pipe()
        self.process.join(timeout=5)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
        self.process = None


_DIED = object()


class _RemoteTraceback(Exception):
    """The pool process's traceback, shown as the cause of the exception it raised."""

    def __str__(self) -> str:
        (text,) = self.args
        return f'\n"""\n{text}"""'


def _child_main(
    conn: Connection,
    limits: ProcessLimits,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
) -> None:
    """A pool process: limits first (the initializer's memory counts too), then tasks."""
    apply_memory_limit(limits)
    if initializer is not None:
        initializer(*initargs)
    conn.send(_READY)
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the worker is gone
            return
        if task is _STOP:
            return
        fn, args, kwargs = task
        start_cpu_budget(limits)
        retire = False
        try:
            reply = (True, fn(*args, **kwargs), False, "")
        except MemoryError:
            retire = True
            reply = (False, PoolProcessDied(memory_error_reason(limits)), True, "")
        except DocumentError as exc:  # the document's fault: its reason says it all
            reply = (False, exc, False, "")
        except BaseException as exc:
            reply = (False, exc, False, traceback.format_exc())
        try:
            conn.send(reply)
        except Exception as exc:
            failure = RuntimeError(f"pool task result could not be sent back: {exc!r}")
            conn.send((False, failure, retire, ""))
        if retire:
            return
