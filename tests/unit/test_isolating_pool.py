"""The CPU worker's process pool: a document past a limit fails alone.

Each test spawns real processes (the limits are the kernel's), with no
initializer so they start in well under a second.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from docpipe.activities.cpu.limits import CPU_REASON, MEMORY_REASON, ProcessLimits, death_reason
from docpipe.activities.cpu.pool import (
    IsolatingProcessPool,
    PoolProcessDied,
    PoolProcessFailedToStart,
)
from docpipe.errors import DocumentError
from docpipe.models import Stage

WAIT_S = 120  # generous: a loaded 2-core machine spawns slowly


@pytest.fixture
def pool():
    pools: list[IsolatingProcessPool] = []

    def make(size: int = 2, initializer=None, initargs=(), **limits: int) -> IsolatingProcessPool:
        limited = ProcessLimits(**limits)
        pools.append(
            IsolatingProcessPool(size, limits=limited, initializer=initializer, initargs=initargs)
        )
        return pools[-1]

    yield make
    for made in pools:
        made.shutdown(wait=True, cancel_futures=True)


def test_results_and_document_errors_come_back_from_the_process(pool):
    workers = pool()
    assert workers.submit(pow, 2, 10).result(WAIT_S) == 1024
    assert workers.submit(os.getpid).result(WAIT_S) != os.getpid()
    with pytest.raises(ValueError, match="invalid literal"):
        workers.submit(int, "not a number").result(WAIT_S)


def test_a_document_past_the_memory_limit_fails_alone_and_its_process_is_replaced(pool):
    workers = pool(size=1, memory_mb=512)
    before = workers.submit(os.getpid).result(WAIT_S)
    with pytest.raises(PoolProcessDied) as err:
        workers.submit(bytearray, 2 * 1024**3).result(WAIT_S)  # 2 GB in a 512 MB process
    assert err.value.stage == Stage.EXTRACT
    assert err.value.reason.startswith(MEMORY_REASON)
    assert workers.submit(pow, 3, 3).result(WAIT_S) == 27
    assert workers.submit(os.getpid).result(WAIT_S) != before, "a fresh process"


def test_a_process_killed_by_native_code_fails_only_the_task_it_was_running(pool):
    """What PDFium does when an allocation fails under the limit: abort()."""
    workers = pool(size=2, memory_mb=1024)
    others = [workers.submit(time.sleep, 0.2) for _ in range(6)]
    doomed = workers.submit(os.abort)
    more = [workers.submit(pow, 2, n) for n in range(6)]
    with pytest.raises(PoolProcessDied, match=f"^extract: {MEMORY_REASON}.*SIGABRT"):
        doomed.result(WAIT_S)
    assert [f.result(WAIT_S) for f in others] == [None] * 6
    assert [f.result(WAIT_S) for f in more] == [2**n for n in range(6)]


def test_a_document_past_its_cpu_time_fails_with_the_cpu_reason(pool):
    workers = pool(size=1, cpu_seconds=1)
    # Catastrophic backtracking: a C loop no Python-level check could interrupt.
    runaway = workers.submit(re.fullmatch, "(a+)+b", "a" * 64)
    with pytest.raises(PoolProcessDied, match=f"^extract: {CPU_REASON} \\(1 s"):
        runaway.result(WAIT_S)
    # The budget is per task, not per process life: later tasks get a full second.
    for _ in range(3):
        assert workers.submit(sum, range(2_000_000)).result(WAIT_S) == 1999999000000


def test_a_process_that_cannot_even_start_is_a_setup_error_not_a_bad_document(pool):
    # An initializer that needs more than the limit: a model larger than the limit allows.
    workers = pool(size=1, memory_mb=64, initializer=bytearray, initargs=(256 * 1024**2,))
    with pytest.raises(PoolProcessFailedToStart, match="CPU_EXTRACT_MEMORY_LIMIT_MB"):
        workers.submit(pow, 2, 2).result(WAIT_S)
    assert not isinstance(PoolProcessFailedToStart("x"), DocumentError)  # retried, not failed


def test_wait_started_returns_once_every_process_is_up(pool):
    workers = pool(size=2)
    workers.wait_started()
    pids = {workers.submit(os.getpid).result(WAIT_S) for _ in range(8)}
    assert 1 <= len(pids) <= 2


def test_after_shutdown_nothing_new_is_accepted_and_queued_work_is_cancelled(pool):
    workers = pool(size=1)
    workers.wait_started()
    running = workers.submit(time.sleep, 0.5)
    queued = [workers.submit(time.sleep, 0.5) for _ in range(5)]
    while not running.running() and not running.done():
        time.sleep(0.01)
    workers.shutdown(wait=True, cancel_futures=True)
    assert running.result(WAIT_S) is None
    assert any(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="after shutdown"):
        workers.submit(pow, 2, 2)


@pytest.mark.parametrize(
    ("exitcode", "reason"),
    [
        (-24, "exceeds CPU time limit while extracting (300 s of CPU time)"),
        (
            -6,
            "exceeds memory limit while extracting (the process extracting it was ended by"
            " SIGABRT at its 1024 MB limit)",
        ),
        (-9, "exceeds memory limit while extracting"),
        (-15, "the process extracting it died (SIGTERM)"),
        (3, "the process extracting it exited unexpectedly (exit code 3)"),
    ],
)
def test_a_dead_process_is_explained_by_how_it_died(exitcode, reason):
    assert death_reason(exitcode, ProcessLimits(memory_mb=1024, cpu_seconds=300)).startswith(reason)
